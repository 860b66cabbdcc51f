"""All shape arithmetic of convgen: the output-size formula and padding rules.

Every spatial axis of every convolution and pooling window goes through
`window_output_size`:

    out = floor((in + pad_begin + pad_end - dilation*(k-1) - 1) / stride) + 1

(`ceil` under ceil_mode, with the rule that the last window must start inside
the input or the left padding).  "same", "valid" and ONNX's auto_pad resolve
to explicit (begin, end) pads here, once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence, Union

import numpy as np

from .errors import ShapeError

Padding = Union[int, str, Sequence]


def _axis(spatial_axis: int) -> str:
    return f"spatial axis {spatial_axis} (tensor axis {spatial_axis + 2})"


def as_tuple(value, ndim: int, what: str, layer: str) -> tuple[int, ...]:
    """An int or a length-`ndim` sequence of ints, as a tuple of ints."""
    if isinstance(value, bool):
        raise ShapeError(f"{layer}: {what} must be an int or a tuple of {ndim} ints, got {value!r}")
    if isinstance(value, int) or hasattr(value, "__index__") and not hasattr(value, "__len__"):
        return (int(value),) * ndim
    try:
        items = tuple(value)
    except TypeError:
        raise ShapeError(f"{layer}: {what} must be an int or a tuple of {ndim} ints, got {value!r}") from None
    if len(items) == 1 and ndim > 1:
        items = items * ndim
    if len(items) != ndim or not all(_is_integer(v) for v in items):
        raise ShapeError(f"{layer}: {what} must be an int or a tuple of {ndim} ints, got {value!r}")
    return tuple(int(v) for v in items)


def _is_integer(value) -> bool:
    """An int or an integer-like scalar (numpy ints); never a bool, which `True == 1` would let pass."""
    return not isinstance(value, bool) and (isinstance(value, int) or hasattr(value, "__index__"))


def effective_kernel(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel: d*(k-1) + 1."""
    return dilation * (kernel - 1) + 1


def same_pads(in_size: int, kernel: int, stride: int, dilation: int, upper: bool = True) -> tuple[int, int]:
    """ONNX SAME_UPPER / SAME_LOWER: out = ceil(in/stride), the odd pad at the end (upper) or begin."""
    out = -(-in_size // stride)
    total = max(0, (out - 1) * stride + effective_kernel(kernel, dilation) - in_size)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def resolve_padding(padding: Padding, in_spatial: Sequence[int], kernel: Sequence[int],
                    stride: Sequence[int], dilation: Sequence[int], layer: str) -> tuple[tuple[int, int], ...]:
    """Any accepted padding form -> one (begin, end) pair per spatial axis.

    Forms: int; tuple of ints (one per axis, both sides); tuple of (begin, end)
    pairs; "valid"; "same" (= SAME_UPPER); "same_upper"; "same_lower".
    """
    ndim = len(in_spatial)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * ndim
        if mode in ("same", "same_upper", "same_lower"):
            return tuple(same_pads(i, k, s, d, upper=mode != "same_lower")
                         for i, k, s, d in zip(in_spatial, kernel, stride, dilation))
        raise ShapeError(f"{layer}: unknown padding mode {padding!r} "
                         "(expected an int, a tuple, 'valid', 'same', 'same_upper' or 'same_lower')")
    if not isinstance(padding, (int, bool)) and hasattr(padding, "__len__") and len(padding) == ndim \
            and all(hasattr(p, "__len__") for p in padding):
        pairs = tuple(as_tuple(p, 2, "padding pair", layer) for p in padding)
    else:
        pairs = tuple((p, p) for p in as_tuple(padding, ndim, "padding", layer))
    for axis, (begin, end) in enumerate(pairs):
        if begin < 0 or end < 0:
            raise ShapeError(f"{layer}: {_axis(axis)}: padding must be >= 0, got ({begin}, {end})")
    return pairs


def window_output_size(in_size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                       dilation: int, layer: str, axis: int, ceil_mode: bool = False) -> int:
    """The output-size formula for one spatial axis of a sliding window."""
    if kernel < 1 or stride < 1 or dilation < 1:
        raise ShapeError(f"{layer}: {_axis(axis)}: kernel ({kernel}), stride ({stride}) and dilation "
                         f"({dilation}) must all be >= 1")
    span = in_size + pad_begin + pad_end - effective_kernel(kernel, dilation)
    if ceil_mode:
        # A window may hang past the end (by up to stride - 1), but the last one must start
        # inside the input or the left padding.
        out = -(-span // stride) + 1
        if (out - 1) * stride >= in_size + pad_begin:
            out -= 1
    else:
        out = span // stride + 1
    if out < 1:
        raise ShapeError(
            f"{layer}: {_axis(axis)}: input size {in_size} with padding ({pad_begin}, {pad_end}) is "
            f"smaller than the dilated kernel {effective_kernel(kernel, dilation)} "
            f"(kernel {kernel}, dilation {dilation}); output would be < 1")
    return out


def window_output_shape(layer: str, in_spatial: Sequence[int], kernel: Sequence[int],
                        stride: Sequence[int], pads: Sequence[tuple[int, int]],
                        dilation: Sequence[int], ceil_mode: bool = False) -> tuple[int, ...]:
    return tuple(window_output_size(i, k, s, pb, pe, d, layer, axis, ceil_mode)
                 for axis, (i, k, s, (pb, pe), d) in enumerate(zip(in_spatial, kernel, stride, pads, dilation)))


def check_pool_padding(layer: str, kernel: Sequence[int], dilation: Sequence[int],
                       pads: Sequence[tuple[int, int]], limit: str = "half") -> None:
    """A pooling pad may be at most half the dilated window (limit "half": torch's rule), or, for
    ONNX (limit "window"), less than the whole window, so that every window overlaps the input."""
    for axis, (k, d, (pb, pe)) in enumerate(zip(kernel, dilation, pads)):
        window = effective_kernel(k, d)
        most = window // 2 if limit == "half" else window - 1
        if max(pb, pe) > most:
            allowed = (f"at most half the window, {most}" if limit == "half"
                       else f"less than the window, at most {most}")
            raise ShapeError(f"{layer}: {_axis(axis)}: padding ({pb}, {pe}) is larger than the kernel "
                             f"allows: {allowed} (kernel {k}, dilation {d})")


def check_channels(layer: str, in_channels: int, expected: int) -> None:
    if in_channels != expected:
        raise ShapeError(f"{layer}: axis 1 (channels): input has {in_channels} channels, "
                         f"the layer expects {expected}")


def check_groups(layer: str, in_channels: int, out_channels: int, groups: int) -> None:
    if groups < 1:
        raise ShapeError(f"{layer}: groups must be >= 1, got {groups}")
    for what, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if n % groups:
            raise ShapeError(f"{layer}: axis 1 (channels): {what}={n} is not divisible by groups={groups}")


def check_rank(layer: str, shape: Sequence[int], rank: int, what: str = "input") -> None:
    if len(shape) != rank:
        raise ShapeError(f"{layer}: {what} must have rank {rank} (N, C, spatial...), got shape {tuple(shape)}")


def flatten_shape(shape: Sequence[int], start_dim: int, layer: str) -> tuple[int, ...]:
    start = start_dim + len(shape) if start_dim < 0 else start_dim
    if not 0 <= start < len(shape):
        raise ShapeError(f"{layer}: start_dim {start_dim} is out of range for shape {tuple(shape)}")
    return tuple(shape[:start]) + (math.prod(shape[start:]),)


def concat_shape(shapes: Sequence[Sequence[int]], axis: int, layer: str) -> tuple[int, ...]:
    first = tuple(shapes[0])
    ax = axis + len(first) if axis < 0 else axis
    if not 0 <= ax < len(first):
        raise ShapeError(f"{layer}: concat axis {axis} is out of range for rank {len(first)}")
    for shape in shapes[1:]:
        if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != ax):
            raise ShapeError(f"{layer}: cannot concatenate shapes {first} and {tuple(shape)} along axis {ax}: "
                             "every other axis must match")
    return first[:ax] + (sum(s[ax] for s in shapes),) + first[ax + 1:]


def broadcast_shape(layer: str, *operands: Sequence[int]) -> tuple[int, ...]:
    """numpy / ONNX multidirectional broadcasting: shapes align at the last axis; each axis has
    one size, or 1 (stretched)."""
    rank = max(len(s) for s in operands)
    out = []
    for axis in range(rank):
        sizes = {s[axis - rank + len(s)] for s in operands if axis - rank + len(s) >= 0}
        if len(sizes - {1}) > 1:
            raise ShapeError(f"{layer}: axis {axis} (axis {axis - rank} from the end): cannot broadcast sizes "
                             f"{sorted(sizes - {1})} together (operand shapes {', '.join(str(tuple(s)) for s in operands)})")
        out.append(max(sizes))
    return tuple(out)


def broadcast_strides(shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides that read a C-contiguous `shape` at every index of `out_shape` (0 where stretched)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step if size != 1 else 0)
        step *= size
    strides += [0] * (len(out_shape) - len(shape))
    return tuple(reversed(strides))


def collapse_axes(dims: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Merge neighbouring axes that every operand walks as one (stride[a] == stride[a+1] * dims[a+1]),
    and drop size-1 axes: the fewest loops that visit the same elements.  Always at least one axis."""
    kept = [a for a, d in enumerate(dims) if d != 1]
    out_dims: list[int] = []
    out_strides: list[list[int]] = [[] for _ in strides]
    for a in kept:
        mergeable = out_dims and all(s[-1] == st[a] * dims[a] for s, st in zip(out_strides, strides))
        if mergeable:
            out_dims[-1] *= dims[a]
            for s, st in zip(out_strides, strides):
                s[-1] = st[a]
        else:
            out_dims.append(dims[a])
            for s, st in zip(out_strides, strides):
                s.append(st[a])
    if not out_dims:
        return (1,), tuple((0,) for _ in strides)
    return tuple(out_dims), tuple(tuple(s) for s in out_strides)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of `shape`."""
    return tuple(math.prod(shape[a + 1:]) for a in range(len(shape)))


def reshape_shape(layer: str, shape: Sequence[int], target: Sequence[int], allowzero: bool = False) -> tuple[int, ...]:
    """ONNX Reshape: -1 takes the remaining size (at most one -1); 0 copies the input's size on that
    axis (unless allowzero).  The element count must not change."""
    resolved = list(target)
    for a, d in enumerate(target):
        if d == 0 and not allowzero:
            if a >= len(shape):
                raise ShapeError(f"{layer}: reshape target {tuple(target)}: axis {a} is 0 (copy the input's "
                                 f"size) but the input {tuple(shape)} has no axis {a}")
            resolved[a] = shape[a]
    unknown = [a for a, d in enumerate(resolved) if d == -1]
    if len(unknown) > 1 or any(d < -1 or d == 0 for d in resolved):
        raise ShapeError(f"{layer}: reshape target {tuple(target)} must have sizes >= 1 and at most one -1")
    known = math.prod(d for d in resolved if d != -1)
    total = math.prod(shape)
    if unknown:
        if total % known:
            raise ShapeError(f"{layer}: cannot reshape {tuple(shape)} ({total} elements) to {tuple(target)}: "
                             f"{total} is not divisible by {known}")
        resolved[unknown[0]] = total // known
    if math.prod(resolved) != total:
        raise ShapeError(f"{layer}: cannot reshape {tuple(shape)} ({total} elements) to {tuple(target)} "
                         f"({math.prod(resolved)} elements)")
    return tuple(resolved)


def transpose_perm(layer: str, rank: int, perm: Sequence[int] | None) -> tuple[int, ...]:
    """ONNX Transpose: perm is a permutation of the axes (negative axes allowed); None reverses them."""
    if perm is None:
        return tuple(range(rank - 1, -1, -1))
    normalized = tuple(p + rank if p < 0 else p for p in perm)
    if sorted(normalized) != list(range(rank)):
        raise ShapeError(f"{layer}: perm {tuple(perm)} is not a permutation of the {rank} axes of the input")
    return normalized


def transpose_shape(layer: str, shape: Sequence[int], perm: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(shape[p] for p in transpose_perm(layer, len(shape), perm))


def gemm_shape(layer: str, a: Sequence[int], b: Sequence[int], c: Sequence[int] | None,
               trans_a: bool, trans_b: bool) -> tuple[int, int]:
    """ONNX Gemm: A (M, K) (or (K, M) transposed) times B (K, N) (or (N, K)); C broadcasts to (M, N)."""
    for what, shape in (("A", a), ("B", b)):
        if len(shape) != 2:
            raise ShapeError(f"{layer}: {what} must be a matrix, got shape {tuple(shape)}")
    (m, k), (k_b, n) = (a[::-1] if trans_a else a), (b[::-1] if trans_b else b)
    if k != k_b:
        raise ShapeError(f"{layer}: inner sizes differ: A{'^T' if trans_a else ''} {tuple(a)} has K={k}, "
                         f"B{'^T' if trans_b else ''} {tuple(b)} has K={k_b}")
    if c is not None and (len(c) > 2 or any(d not in (1, t) for d, t in zip(reversed(c), (n, m)))):
        raise ShapeError(f"{layer}: C of shape {tuple(c)} does not broadcast to ({m}, {n})")
    return m, n


def matmul_shape(layer: str, a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy matmul / ONNX MatMul: a 1-D operand is a row (A) or a column (B) whose axis is dropped;
    leading (batch) axes broadcast."""
    if not a or not b:
        raise ShapeError(f"{layer}: MatMul operands need at least one axis, got {tuple(a)} and {tuple(b)}")
    a2, b2 = (tuple(a) if len(a) > 1 else (1,) + tuple(a)), (tuple(b) if len(b) > 1 else tuple(b) + (1,))
    if a2[-1] != b2[-2]:
        raise ShapeError(f"{layer}: inner sizes differ: A {tuple(a)} has K={a2[-1]}, B {tuple(b)} has K={b2[-2]}")
    batch = broadcast_shape(layer, a2[:-2], b2[:-2])
    return batch + (a2[-2],) * (len(a) > 1) + (b2[-1],) * (len(b) > 1)


PAD_MODES = ("constant", "reflect", "edge", "wrap")


def pad_shape(layer: str, shape: Sequence[int], pads: Sequence[tuple[int, int]], mode: str) -> tuple[int, ...]:
    """ONNX Pad: (begin, end) per axis; a negative pad crops.  Crops apply first, then reflect, edge
    and wrap pads read the cropped axis, which must be long enough: reflect pads at most size - 1,
    wrap pads at most size."""
    if mode not in PAD_MODES:
        raise ShapeError(f"{layer}: unknown pad mode {mode!r}; known: {PAD_MODES}")
    if len(pads) != len(shape):
        raise ShapeError(f"{layer}: {len(pads)} (begin, end) pad pairs for an input of rank {len(shape)} "
                         f"(shape {tuple(shape)})")
    out = []
    for axis, (size, (begin, end)) in enumerate(zip(shape, pads)):
        kept = size + min(begin, 0) + min(end, 0)
        if kept < 1:
            raise ShapeError(f"{layer}: axis {axis}: crops ({begin}, {end}) remove all {size} elements")
        limit = {"constant": None, "reflect": kept - 1, "edge": None, "wrap": kept}[mode]
        if limit is not None and max(begin, end) > limit:
            raise ShapeError(f"{layer}: axis {axis}: {mode} pads ({begin}, {end}) exceed {limit}, the most an "
                             f"axis of {kept} elements allows")
        out.append(size + begin + end)
    return tuple(out)


def pad_loops(shape: Sequence[int], pads: Sequence[tuple[int, int]]) -> list[dict]:
    """A pad as the fewest loop axes (neighbouring axes without pads merged), each described by its
    input size I, output size O, begin pad B, begin crop LO and kept (cropped) size N."""
    axes: list[dict] = []
    for size, (begin, end) in zip(shape, pads):
        if axes and begin == end == 0 and axes[-1]["plain"]:
            for key in ("I", "O", "N"):
                axes[-1][key] *= size
            continue
        axes.append(dict(I=size, O=size + begin + end, B=max(begin, 0), LO=max(-begin, 0),
                         N=size + min(begin, 0) + min(end, 0), plain=begin == end == 0))
    for axis in axes:
        del axis["plain"]
    return axes


def windows_inside(in_size: int, out_size: int, kernel: int, stride: int, dilation: int,
                   pad_begin: int) -> tuple[int, int]:
    """The outputs [first, end) along one axis whose whole window lies inside the unpadded input:
    output o reads o * stride - pad_begin + k * dilation for k < kernel (first == end: none)."""
    first = min(out_size, -(-pad_begin // stride))
    last_start = in_size - 1 - (kernel - 1) * dilation + pad_begin   # the last window start inside, padded
    end = max(first, min(out_size, last_start // stride + 1 if last_start >= 0 else 0))
    return first, end


def receptive_field_step(size: int, jump: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Receptive field (size, jump) after a window layer, from the one before it."""
    return size + (effective_kernel(kernel, dilation) - 1) * jump, jump * stride


# -- transposed windows (ConvTranspose) --------------------------------------------------------
#
# A transposed convolution scatters input i, tap k to padded output coordinate q = i*stride + k*dilation;
# the pads crop the full result: output o = q - pad_begin.  One axis:
#
#     out = (in - 1)*stride - pad_begin - pad_end + dilation*(k-1) + 1 + output_padding

def transposed_output_size(in_size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                           dilation: int, output_padding: int, layer: str, axis: int) -> int:
    if kernel < 1 or stride < 1 or dilation < 1:
        raise ShapeError(f"{layer}: {_axis(axis)}: kernel ({kernel}), stride ({stride}) and dilation "
                         f"({dilation}) must all be >= 1")
    if pad_begin < 0 or pad_end < 0 or output_padding < 0:
        raise ShapeError(f"{layer}: {_axis(axis)}: padding ({pad_begin}, {pad_end}) and output_padding "
                         f"({output_padding}) must be >= 0")
    full = (in_size - 1) * stride + effective_kernel(kernel, dilation) + output_padding
    out = full - pad_begin - pad_end
    if out < 1:
        raise ShapeError(
            f"{layer}: {_axis(axis)}: transposed output size (input {in_size} - 1) * stride {stride} + dilated "
            f"kernel {effective_kernel(kernel, dilation)} + output_padding {output_padding} - padding "
            f"({pad_begin}, {pad_end}) = {out}; it must be >= 1")
    return out


def transposed_output_shape(layer: str, in_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                            pads: Sequence[tuple[int, int]], dilation: Sequence[int],
                            output_padding: Sequence[int]) -> tuple[int, ...]:
    return tuple(transposed_output_size(i, k, s, pb, pe, d, op, layer, axis)
                 for axis, (i, k, s, (pb, pe), d, op)
                 in enumerate(zip(in_spatial, kernel, stride, pads, dilation, output_padding)))


def check_output_padding(layer: str, output_padding: Sequence[int], stride: Sequence[int],
                         dilation: Sequence[int]) -> None:
    """torch's rule: output_padding must be smaller than either the stride or the dilation."""
    for axis, (op, s, d) in enumerate(zip(output_padding, stride, dilation)):
        if op < 0 or (op >= s and op >= d):
            raise ShapeError(f"{layer}: {_axis(axis)}: output_padding {op} must be >= 0 and smaller than "
                             f"either stride {s} or dilation {d}")


def transposed_output_padding_for(layer: str, in_spatial: Sequence[int], output_size: Sequence[int],
                                  kernel: Sequence[int], stride: Sequence[int], pads: Sequence[tuple[int, int]],
                                  dilation: Sequence[int]) -> tuple[int, ...]:
    """torch's ConvTranspose forward(x, output_size): the output_padding giving that size, which must
    lie within [smallest, smallest + stride - 1] (smallest: output_padding 0)."""
    result = []
    for axis, (i, o, k, s, (pb, pe), d) in enumerate(zip(in_spatial, output_size, kernel, stride, pads, dilation)):
        smallest = (i - 1) * s - pb - pe + effective_kernel(k, d)
        if not smallest <= o <= smallest + s - 1:
            raise ShapeError(f"{layer}: {_axis(axis)}: requested output size {o} is outside the range "
                             f"[{smallest}, {smallest + s - 1}] this layer can produce from input size {i}")
        result.append(o - smallest)
    return tuple(result)


def transposed_pads_for_output(layer: str, in_spatial: Sequence[int], output_shape: Sequence[int],
                               kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                               output_padding: Sequence[int], auto_pad: str = "NOTSET"
                               ) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """ONNX ConvTranspose with output_shape (or auto_pad SAME_*): (pads, output_padding).

    total_padding = stride*(in-1) + output_padding + dilation*(k-1) + 1 - out_shape; SAME_UPPER puts
    the odd unit at the end (begin = total // 2), SAME_LOWER and NOTSET at the begin.  An output larger
    than the full result by less than the stride (0 < -total < stride) grows at the end with zeros
    (+ bias), as onnxruntime does: no pads, output_padding grown by -total; onnxruntime refuses more.
    """
    mode = auto_pad.upper()
    if mode not in ("NOTSET", "SAME_UPPER", "SAME_LOWER"):
        raise ShapeError(f"{layer}: auto_pad {auto_pad!r} cannot place pads for an output shape "
                         "(expected NOTSET, SAME_UPPER or SAME_LOWER)")
    if len(output_shape) != len(in_spatial):
        raise ShapeError(f"{layer}: output_shape {tuple(output_shape)} must give one size per spatial axis "
                         f"({len(in_spatial)})")
    pads, paddings = [], []
    for axis, (i, o, k, s, d, op) in enumerate(zip(in_spatial, output_shape, kernel, stride, dilation,
                                                   output_padding)):
        if o < 1:
            raise ShapeError(f"{layer}: {_axis(axis)}: output_shape {o} must be >= 1")
        total = s * (i - 1) + op + effective_kernel(k, d) - o
        if total <= -s:
            raise ShapeError(f"{layer}: {_axis(axis)}: output_shape {o} is larger than the {o + total + s - 1} "
                             f"this layer can produce from input size {i} (kernel {k}, stride {s}, dilation {d}, "
                             f"output_padding {op})")
        if total < 0:
            pads.append((0, 0))
            paddings.append(op - total)
            continue
        small, large = total // 2, total - total // 2
        pads.append((small, large) if mode == "SAME_UPPER" else (large, small))
        paddings.append(op)
    return tuple(pads), tuple(paddings)


def transposed_auto_pads(layer: str, in_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                         dilation: Sequence[int], output_padding: Sequence[int], auto_pad: str
                         ) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """ONNX ConvTranspose auto_pad without output_shape: VALID/NOTSET pad nothing; SAME_UPPER/SAME_LOWER
    aim at out = in * stride, but never beyond the full result (onnxruntime: the pads are at least 0)."""
    mode = auto_pad.upper()
    if mode in ("VALID", "NOTSET"):
        return ((0, 0),) * len(in_spatial), tuple(output_padding)
    target = [min(i * s, (i - 1) * s + op + effective_kernel(k, d))
              for i, k, s, d, op in zip(in_spatial, kernel, stride, dilation, output_padding)]
    return transposed_pads_for_output(layer, in_spatial, target, kernel, stride, dilation, output_padding, mode)


@dataclass(frozen=True)
class TransposedAxis:
    """One axis of a transposed window split into its stride phases, for the gather kernels.

    Output o lies at padded coordinate q = o + crop; its phase is r = q % stride, and j = q // stride.
    The taps reaching phase r are k = last[r], last[r] - tap_step, ... (taps[r] of them), reading input
    j - offset[r], j - offset[r] + input_step, ... .  Phase r's outputs along this axis are
    out_first[r], out_first[r] + stride, ... (out_count[r] of them) with j starting at in_first[r].
    The kernel reads a copy of the input with pad_begin / pad_end zeros so every read is inside it.
    """
    tap_step: int
    input_step: int
    last: tuple[int, ...]
    taps: tuple[int, ...]
    offset: tuple[int, ...]
    out_first: tuple[int, ...]
    out_count: tuple[int, ...]
    in_first: tuple[int, ...]
    pad_begin: int
    pad_end: int

    @property
    def span(self) -> int:
        """The most consecutive input positions one output reads (its receptive field along the axis)."""
        return max(1, max((t - 1) * self.input_step + 1 for t in self.taps))


def transposed_phases(in_size: int, out_size: int, kernel: int, stride: int, dilation: int,
                      crop: int) -> TransposedAxis:
    g = math.gcd(stride, dilation)
    tap_step, input_step = stride // g, dilation // g
    last, taps, offset, out_first, out_count, in_first = [], [], [], [], [], []
    for r in range(stride):
        ks = [k for k in range(kernel) if (k * dilation - r) % stride == 0]
        last.append(ks[-1] if ks else 0)
        taps.append(len(ks))
        offset.append((ks[-1] * dilation - r) // stride if ks else 0)
        first = (r - crop) % stride
        out_first.append(first)
        out_count.append(max(0, -(-(out_size - first) // stride)))
        in_first.append((first + crop) // stride)
    lowest = min(j - m for j, m, t, n in zip(in_first, offset, taps, out_count) if t and n) \
        if any(t and n for t, n in zip(taps, out_count)) else 0
    highest = max((j + n - 1 - m + (t - 1) * input_step
                   for j, m, t, n in zip(in_first, offset, taps, out_count) if t and n), default=0)
    return TransposedAxis(tap_step, input_step, tuple(last), tuple(taps), tuple(offset), tuple(out_first),
                          tuple(out_count), tuple(in_first), max(0, -lowest), max(0, highest + 1 - in_size))


def transposed_receptive_field_step(size, jump, kernel: int, stride: int, dilation: int):
    """Receptive field (size, jump) after a transposed window: an output reads `span` consecutive
    inputs, and outputs lie jump / stride apart (a Fraction when the stride does not divide it)."""
    span = transposed_phases(1, stride, kernel, stride, dilation, 0).span
    out_jump = Fraction(jump) / stride
    return size + (span - 1) * jump, out_jump.numerator if out_jump.denominator == 1 else out_jump


def slice_axis(start: int, end: int, step: int, size: int) -> tuple[int, int]:
    """ONNX Slice on one axis of `size`: (first index, count), after its clamping (negative start and
    end count from the back; a negative step walks backwards)."""
    if step == 0:
        raise ShapeError(f"slice step 0 on an axis of size {size}")
    start, end = (v + size if v < 0 else v for v in (start, end))
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
    else:
        start, end = min(max(start, -1), size - 1), min(max(end, -1), size - 1)
    count = max(0, -(-(end - start) // step))
    return start, count


def slice_shape(layer: str, shape: Sequence[int], first: Sequence[int], steps: Sequence[int],
                counts: Sequence[int]) -> tuple[int, ...]:
    """The output shape of a slice given per axis (first index, step, count); every read must lie inside."""
    if not len(shape) == len(first) == len(steps) == len(counts):
        raise ShapeError(f"{layer}: slice of rank {len(first)} for an input of rank {len(shape)}")
    for axis, (size, f, s, c) in enumerate(zip(shape, first, steps, counts)):
        if c < 1 or s == 0 or not (0 <= f < size and 0 <= f + (c - 1) * s < size):
            raise ShapeError(f"{layer}: axis {axis}: slice from {f} by {s}, {c} elements, of an axis of size {size} "
                             "(convgen's tensors have no empty axes)")
    return tuple(counts)


def nearest_repeat_factor(in_size: int, out_size: int, sources: Sequence[int]) -> int | None:
    """The factor k when nearest-neighbour source indices are i // k (a whole-factor upsampling), else None."""
    if out_size % in_size:
        return None
    k = out_size // in_size
    return k if list(sources) == [i // k for i in range(out_size)] else None


RESIZE_COORDINATES = ("asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "align_corners",
                      "half_pixel_symmetric", "tf_crop_and_resize")
Roi = tuple[float, float]
"""tf_crop_and_resize's region of one axis: its start and end as fractions of the axis."""


def resize_coordinates(in_size: int, out_size: int, scale: float, coordinates: str,
                       roi: Roi = (0.0, 1.0)) -> list[np.float32]:
    """ONNX Resize on one axis: the input coordinate of every output index, in onnxruntime's float32
    arithmetic (its get_original_coordinate), before any rounding or clamping."""
    f32 = np.float32
    start, end = f32(roi[0]), f32(roi[1])
    scale = f32(scale)
    out = []
    for i in range(out_size):
        x = f32(i)
        if coordinates == "asymmetric":
            original = x / scale
        elif coordinates == "half_pixel":
            original = (x + f32(0.5)) / scale - f32(0.5)
        elif coordinates == "pytorch_half_pixel":
            original = (x + f32(0.5)) / scale - f32(0.5) if out_size > 1 else f32(0.0)
        elif coordinates == "tf_half_pixel_for_nn":
            original = (x + f32(0.5)) / scale
        elif coordinates == "align_corners":
            original = f32(0.0) if out_size == 1 else x * f32(in_size - 1) / f32(out_size - 1)
        elif coordinates == "half_pixel_symmetric":
            adjustment = f32(out_size) / (scale * f32(in_size))
            offset = f32(in_size) / f32(2) * (f32(1) - adjustment)
            # onnxruntime adds its double literals 0.5 here: this sum is double, rounded to float once
            original = float(offset) + (float(x) + 0.5) / float(scale) - 0.5
        elif coordinates == "tf_crop_and_resize":   # one output: onnxruntime's 0.5 is a double
            original = start * f32(in_size - 1) + (x * (end - start) * f32(in_size - 1)) / f32(out_size - 1) \
                if out_size > 1 else 0.5 * (float(start) + float(end)) * (in_size - 1)
        else:
            raise ShapeError(f"Resize coordinate_transformation_mode {coordinates!r} is not one of {RESIZE_COORDINATES}")
        out.append(f32(original))
    return out


NEAREST_TIE_TOLERANCE = 1e-6


def extrapolated(in_size: int, out_size: int, scale: float, roi: Roi) -> set[int]:
    """tf_crop_and_resize: the output indices whose coordinate lies outside the axis, which take
    extrapolation_value."""
    return {o for o, c in enumerate(resize_coordinates(in_size, out_size, scale, "tf_crop_and_resize", roi))
            if not 0 <= c <= in_size - 1}


def nearest_sources(in_size: int, out_size: int, scale: float, coordinates: str, rounding: str,
                    roi: Roi = (0.0, 1.0)) -> list[int]:
    """ONNX Resize, mode nearest, on one axis: the input index each output index reads (onnxruntime's
    float32 arithmetic: the coordinate transform, then nearest_mode, clamped to the axis)."""
    out = []
    for original in resize_coordinates(in_size, out_size, scale, coordinates, roi):
        # onnxruntime takes a coordinate within 1e-6 of a half as the tie (7 -> 2 asymmetric reads 3.4999998
        # for 3.5): measured over 36k drawn axes, both round modes, every coordinate mode
        tie = abs(float(original) - math.floor(original) - 0.5) <= NEAREST_TIE_TOLERANCE
        if rounding == "round_prefer_floor":
            index = math.floor(original) if tie else math.floor(float(original) + 0.5)
        elif rounding == "round_prefer_ceil":
            index = math.floor(original) + 1 if tie else math.floor(float(original) + 0.5)
        elif rounding == "floor":
            index = math.floor(original)
        elif rounding == "ceil":
            index = math.ceil(original)
        elif rounding == "convgen_opset10":   # Upsample and Resize-10 in onnxruntime
            index = math.ceil(original) if out_size < in_size else math.floor(original)
        else:
            raise ShapeError(f"Resize nearest_mode {rounding!r} is not one of round_prefer_floor, round_prefer_ceil, "
                             "floor, ceil")
        out.append(min(max(int(index), 0), in_size - 1))
    return out


Taps = tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]
"""Per output index of one axis: the input indices it reads and their weights."""


def linear_taps(in_size: int, out_size: int, scale: float, coordinates: str, roi: Roi = (0.0, 1.0)) -> Taps:
    """ONNX Resize, mode linear, on one axis: per output index its two inputs and weights as
    onnxruntime computes them in float32 (the coordinate clamped to the axis; two equal inputs weigh
    0.5 each)."""
    f32 = np.float32
    taps = []
    for original in resize_coordinates(in_size, out_size, scale, coordinates, roi):
        x = min(max(original, f32(0.0)), f32(in_size - 1))
        low = min(int(x), in_size - 1)
        high = min(low + 1, in_size - 1)
        w_low, w_high = (f32(0.5), f32(0.5)) if low == high else (abs(x - f32(high)), abs(x - f32(low)))
        taps.append(((low, high), (float(w_low), float(w_high))))
    return tuple(taps)


def _float32_sum(values: Sequence[np.float32]) -> np.float32:
    """A float32 running sum in order, as onnxruntime adds a tap table's weights."""
    total = np.float32(0)
    for v in values:
        total = np.float32(total + v)
    return total


def _cubic_near(d: np.float32, a: np.float32) -> np.float32:
    """Keys' cubic convolution at a distance d < 1, float32 (onnxruntime's and torch's grouping)."""
    return ((a + np.float32(2)) * d - (a + np.float32(3))) * d * d + np.float32(1)


def _cubic_far(d: np.float32, a: np.float32) -> np.float32:
    """Keys' cubic convolution at a distance 1 <= d < 2, float32 (onnxruntime's GetCubicCoeffs and torch's
    cubic_convolution2; Pillow's grouping differs in the last bit at a = -0.6)."""
    return ((a * d - np.float32(5) * a) * d + np.float32(8) * a) * d - np.float32(4) * a


def cubic_coefficients(s: np.float32, a: float) -> list[np.float32]:
    """The weights of the taps at distances 1 + s, s, 1 - s, 2 - s, as onnxruntime's GetCubicCoeffs."""
    f32 = np.float32
    a, s = f32(a), abs(f32(s))
    return [_cubic_far(s + f32(1), a), _cubic_near(s, a), _cubic_near(f32(1) - s, a), _cubic_far(f32(2) - s, a)]


def cubic_taps(in_size: int, out_size: int, scale: float, coordinates: str, a: float, exclude_outside: bool,
               roi: Roi = (0.0, 1.0)) -> Taps:
    """ONNX Resize, mode cubic, on one axis: per output index the four inputs around its coordinate (clamped
    to the axis) and their weights, coefficient / sum as onnxruntime divides them in float32; exclude_outside
    gives inputs outside the axis weight 0 and the rest sums to 1.  Measured bit-exact against onnxruntime's
    weights over 1460 drawn axes (every coordinate mode, a in -0.75 / -0.6 / -0.5, both exclude_outside)."""
    f32 = np.float32
    taps = []
    for original in resize_coordinates(in_size, out_size, scale, coordinates, roi):
        low = math.floor(original)
        coefficients = cubic_coefficients(f32(original - f32(low)), a)
        indices = [low - 1 + t for t in range(4)]
        total = f32(1)
        if exclude_outside:
            coefficients = [c if 0 <= i < in_size else f32(0) for c, i in zip(coefficients, indices)]
            total = _float32_sum(coefficients)
        taps.append((tuple(min(max(i, 0), in_size - 1) for i in indices),
                     tuple(float(f32(c / total)) for c in coefficients)))
    return tuple(taps)


def _antialias_filter(mode: str, a: float) -> Callable[[np.float32], np.float32]:
    """onnxruntime's (Pillow's) filters for antialiased resizing, in float32."""
    f32 = np.float32
    a = f32(a)

    def linear(x):
        x = abs(x)
        return f32(1) - x if x < f32(1) else f32(0)

    def cubic(x):
        x = abs(x)
        if x < f32(1):
            return _cubic_near(x, a)
        return (((x - f32(5)) * x + f32(8)) * x - f32(4)) * a if x < f32(2) else f32(0)
    return linear if mode == "linear" else cubic


def antialias_taps(in_size: int, out_size: int, scale: float, coordinates: str, mode: str, a: float,
                   exclude_outside: bool, roi: Roi = (0.0, 1.0)) -> Taps:
    """ONNX Resize with antialias=1 (modes linear and cubic) on one axis, as onnxruntime's
    SetupUpsampleFilterAA computes it in float32: a shrinking axis widens the filter by in/out, every
    input within its support around the coordinate weighs filter(distance) normalized by the weights'
    sum; weights of inputs outside the axis fold into the first / last input inside (exclude_outside:
    they are dropped)."""
    f32 = np.float32
    filt = _antialias_filter(mode, a)
    inverse = f32(1) / f32(scale)
    support = (f32(2 if mode == "linear" else 4) * f32(0.5)) * (inverse if inverse >= f32(1) else f32(1))
    step = f32(1) / inverse if inverse >= f32(1) else f32(1)
    coordinates_of = [f32(i) for i in range(out_size)] if inverse == f32(1) else \
        resize_coordinates(in_size, out_size, scale, coordinates, roi)
    taps = []
    for original in coordinates_of:
        center = f32(0.5) + original
        low, high = math.floor(center - support + f32(0.5)), math.floor(center + support + f32(0.5))
        low_cut, high_cut = max(low, 0), min(high, in_size)
        if low_cut >= high_cut:   # a window wholly outside the axis (tf_crop_and_resize): extrapolated
            taps.append(((), ()))
            continue
        first, last = (low_cut, high_cut) if exclude_outside else (low, high)
        weights = [filt((f32(x) - center + f32(0.5)) * step) for x in range(first, last)]
        total = _float32_sum(weights)
        if not exclude_outside:   # fold the weights outside the axis into its first / last input, in order
            below, above = max(-first, 0), max(last - in_size, 0)
            for x in range(below):
                weights[below] = f32(weights[below] + weights[x])
            for x in range(len(weights) - above, len(weights)):
                weights[len(weights) - above - 1] = f32(weights[len(weights) - above - 1] + weights[x])
            weights = weights[below:below + high_cut - low_cut]
        inverse_total = f32(1) if total == f32(0) else f32(1) / total   # onnxruntime multiplies by it
        weights = [f32(w * inverse_total) for w in weights]
        taps.append((tuple(range(low_cut, high_cut)), tuple(float(w) for w in weights[:high_cut - low_cut])))
    return tuple(taps)


def interpolate_scale(in_size: int, out_size: int, scale_factor: float | None, align_corners: bool) -> np.float32:
    """torch's area_pixel_compute_scale in float32: input steps per output step."""
    if align_corners:
        return np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0.0)
    return np.float32(1.0 / scale_factor) if scale_factor else np.float32(in_size) / np.float32(out_size)


def interpolate_nearest_sources(in_size: int, out_size: int, scale_factor: float | None, exact: bool) -> list[int]:
    """torch's interpolate, mode nearest (floor(o * scale)) or nearest-exact (floor((o + 0.5) * scale)), float32."""
    scale = interpolate_scale(in_size, out_size, scale_factor, False)
    shift = np.float32(0.5) if exact else np.float32(0.0)
    return [min(int(math.floor((np.float32(o) + shift) * scale)), in_size - 1) for o in range(out_size)]


def interpolate_linear_taps(in_size: int, out_size: int, scale_factor: float | None, align_corners: bool) -> Taps:
    """torch's interpolate, modes linear / bilinear / trilinear, on one axis (its
    compute_source_index_and_lambda in float32): per output index (i0, i1) and (1 - l, l)."""
    f32 = np.float32
    if in_size == out_size:
        return tuple(((o,), (1.0,)) for o in range(out_size))
    scale = interpolate_scale(in_size, out_size, scale_factor, align_corners)
    taps = []
    for o in range(out_size):
        if align_corners:
            real = scale * f32(o)
        else:
            real = max(scale * (f32(o) + f32(0.5)) - f32(0.5), f32(0.0))
        low = int(real)
        high = low + (1 if low < in_size - 1 else 0)
        lam = min(max(real - f32(low), f32(0.0)), f32(1.0))
        taps.append(((low, high), (float(f32(1.0) - lam), float(lam))))
    return tuple(taps)


def interpolate_cubic_taps(in_size: int, out_size: int, scale_factor: float | None, align_corners: bool) -> Taps:
    """torch's interpolate, mode bicubic, on one axis (its compute_indices_weights_cubic in float32, A = -0.75):
    the four inputs around the unclamped source coordinate, clamped to the axis, and Keys' weights."""
    f32 = np.float32
    scale = interpolate_scale(in_size, out_size, scale_factor, align_corners)
    a = f32(-0.75)
    taps = []
    for o in range(out_size):
        real = scale * f32(o) if align_corners else scale * (f32(o) + f32(0.5)) - f32(0.5)
        low = min(math.floor(real), in_size - 1)
        t = min(max(real - f32(low), f32(0)), f32(1))
        weights = (_cubic_far(t + f32(1), a), _cubic_near(t, a), _cubic_near(f32(1) - t, a),
                   _cubic_far((f32(1) - t) + f32(1), a))
        taps.append((tuple(min(max(low - 1 + j, 0), in_size - 1) for j in range(4)), tuple(float(w) for w in weights)))
    return tuple(taps)


def adaptive_bins(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling on one axis: output o pools inputs [floor(o * in / out), ceil((o + 1) * in / out))."""
    if in_size < 1 or out_size < 1:
        raise ShapeError(f"adaptive pooling of an axis of size {in_size} to {out_size}: both must be >= 1")
    return [(o * in_size // out_size, -(-(o + 1) * in_size // out_size)) for o in range(out_size)]


def strided_sources(in_size: int, sources: Sequence[int]) -> tuple[int, int] | None:
    """(first, step) when the source indices are first + i * step (a downsampling slice), else None."""
    if len(sources) == 1:
        return sources[0], 1
    step = sources[1] - sources[0]
    if step < 1 or any(b - a != step for a, b in zip(sources, sources[1:])):
        return None
    return sources[0], step


def reduced_shape(layer: str, shape: Sequence[int], axes: Sequence[int], keepdims: bool) -> tuple[int, ...]:
    """The shape after reducing `axes` (sorted, non-negative): each a 1 with keepdims, else dropped."""
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < len(shape) for a in axes):
        raise ShapeError(f"{layer}: reduced axes {list(axes)} must be distinct, sorted and within rank {len(shape)}")
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def reduction_loops(shape: Sequence[int], axes: Sequence[int]) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """The fewest loops (C order) a reduction of `axes` walks: size-1 axes dropped, neighbouring axes both
    reduced or both kept merged; per loop, its extent and whether it is reduced.  Always at least one."""
    dims: list[int] = []
    reduced: list[bool] = []
    for a, d in enumerate(shape):
        if d == 1:
            continue
        if dims and reduced[-1] == (a in axes):
            dims[-1] *= d
        else:
            dims.append(d)
            reduced.append(a in axes)
    return (tuple(dims), tuple(reduced)) if dims else ((1,), (False,))


def normalize_axes(layer: str, dims, rank: int) -> tuple[int, ...]:
    """torch's `dim` of a reduction (an int, a sequence, or None / () for every axis) as sorted,
    non-negative axes; an axis out of range or given twice raises ShapeError."""
    if dims is None or (isinstance(dims, (tuple, list)) and not dims):
        return tuple(range(rank))
    items = [dims] if isinstance(dims, int) or hasattr(dims, "__index__") else list(dims)
    axes = []
    for d in items:
        a = int(d) + rank if int(d) < 0 else int(d)
        if not 0 <= a < rank:
            raise ShapeError(f"{layer}: dim {int(d)} is out of range for rank {rank}")
        axes.append(a)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"{layer}: dim {list(items)} names an axis twice")
    return tuple(sorted(axes))


# -- normalizations ----------------------------------------------------------------------

def normalized_axes(layer: str, rank: int, axis: int, end_axis: int | None = None) -> tuple[int, int]:
    """The axes [begin, end) a layer normalization takes its statistics over: from `axis` (negative: from
    the end) to `end_axis` (None: the rank, as ONNX LayerNormalization)."""
    begin = axis + rank if axis < 0 else axis
    end = rank if end_axis is None else (end_axis + rank if end_axis < 0 else end_axis)
    if not 0 <= begin < end <= rank:
        raise ShapeError(f"{layer}: normalized axes {axis}..{end_axis} (axes [{begin}, {end})) are out of range "
                         f"for rank {rank}")
    return begin, end


def normalization_view(shape: Sequence[int], begin: int, end: int) -> tuple[int, int, int]:
    """A tensor seen as [outer][reduced][inner] for statistics over axes [begin, end): mean and variance
    per (outer, inner) pair over the reduced elements, which lie `inner` apart."""
    return math.prod(shape[:begin]), math.prod(shape[begin:end]), math.prod(shape[end:])


def check_norm_groups(layer: str, channels: int, groups: int) -> None:
    if groups < 1 or channels % groups:
        raise ShapeError(f"{layer}: axis 1 (channels): {channels} channels are not divisible into "
                         f"num_groups={groups} groups")


@dataclass(frozen=True)
class PhaseAxis:
    """One axis of a strided window's input split into `stride` phases (phase b holds the padded input's
    positions j * stride + b), the layout of the depthwise kernel (templates/conv.c.j2): an output at o
    reads, for its tap k, phase (k * dilation) % stride at o + (k * dilation) // stride, so consecutive
    outputs read consecutive floats of one phase for every stride.  Per phase: the positions before the
    input (padding), the positions copied from it, and the first input position copied."""
    extent: int                 # positions per phase: ceil(padded extent / stride)
    before: tuple[int, ...]
    copied: tuple[int, ...]
    first: tuple[int, ...]

    def tap(self, k: int, stride: int, dilation: int) -> tuple[int, int]:
        """(phase, offset in the phase) of tap k."""
        return k * dilation % stride, k * dilation // stride


def phase_axis(padded_extent: int, stride: int, pad_begin: int, in_size: int) -> PhaseAxis:
    extent = -(-padded_extent // stride)
    before, copied, first = [], [], []
    for b in range(stride):
        # phase positions j with j * stride + b - pad_begin in [0, in_size)
        lo = min(extent, max(0, -(-(pad_begin - b) // stride)))
        hi = min(extent, max(lo, -(-(in_size + pad_begin - b) // stride)))
        before.append(lo)
        copied.append(hi - lo)
        first.append(lo * stride + b - pad_begin)
    return PhaseAxis(extent, tuple(before), tuple(copied), tuple(first))

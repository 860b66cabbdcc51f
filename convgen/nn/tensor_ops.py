"""Arithmetic and data movement on Tensors (add ... matmul, pad, reshape, permute, cat, flatten,
channel shuffle) and their layer forms (Flatten, the padding layers, ChannelShuffle, Identity, Dropout)."""
from __future__ import annotations

from typing import Sequence

from .. import ops, shapes
from ..errors import ConvgenError, ShapeError
from ..trace import Tensor
from .module import Module, _emit
from .params import _int


def add(a: Tensor, b) -> Tensor:
    """a + b (torch.add): b a Tensor, an array (a constant) or a number; numpy broadcasting."""
    return a + b


def sub(a: Tensor, b) -> Tensor:
    """a - b (torch.sub), broadcasting as add."""
    return a - b


def mul(a: Tensor, b) -> Tensor:
    """a * b (torch.mul), broadcasting as add."""
    return a * b


def div(a: Tensor, b) -> Tensor:
    """a / b (torch.div), broadcasting as add."""
    return a / b


def matmul(a: Tensor, b) -> Tensor:
    """a @ b (torch.matmul); a constant b (an array) is packed at compile time.

    >>> (nn.Input((1, 16)) @ np.ones((16, 4), np.float32)).shape
    (1, 4)
    """
    return a @ b


def add_n(*tensors: Tensor) -> Tensor:
    """x0 + x1 + ... in one kernel (ONNX Sum, tf.math.add_n), broadcasting like numpy."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise ConvgenError("nn.add_n takes one or more Tensors")
    return tensors[0].tracer.emit(None, "sum", ops.BinaryAttrs(), list(tensors), default_name="sum")


TORCH_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_pairs(x: Tensor, pad: Sequence[int], label: str) -> tuple[tuple[int, int], ...]:
    """torch's flat pad list (last axis first: left, right, top, bottom, ...) -> (begin, end) per axis."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ShapeError(f"{label}: pad {pad} must be (begin, end) pairs for at most {x.ndim} axes")
    pairs = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return tuple(pairs)


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None,  # noqa: A002
        name: str | None = None) -> Tensor:
    """torch.nn.functional.pad: modes constant, reflect, replicate, circular; negative pads crop."""
    label = f"layer {name!r} (pad)" if name else f"pad of {x.shape}"
    if mode not in TORCH_PAD_MODES:
        raise ConvgenError(f"{label}: unknown mode {mode!r}; known: {sorted(TORCH_PAD_MODES)}")
    attrs = ops.PadAttrs(_pad_pairs(x, pad, label), TORCH_PAD_MODES[mode], value or 0.0)
    return x.tracer.emit(name, "pad", attrs, [x], default_name="pad")


def reshape(x: Tensor, *shape) -> Tensor:
    """torch's reshape (one size may be -1): a view, no copy; Tensor.reshape.

    >>> x = nn.reshape(nn.Input((1, 3, 8, 8)), 1, 3, -1)
    >>> x.shape, nn.transpose(x, 1, 2).shape, nn.flatten(nn.permute(x, 0, 2, 1)).shape
    ((1, 3, 64), (1, 64, 3), (1, 192))
    """
    return x.reshape(*shape)


def permute(x: Tensor, *dims) -> Tensor:
    """torch's permute (axes in their new order), as a copy; Tensor.permute."""
    return x.permute(*dims)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """torch's transpose: axes dim0 and dim1 swapped, as a copy."""
    return x.transpose(dim0, dim1)


def channel_shuffle(x: Tensor, groups: int, name: str | None = None) -> Tensor:
    """ShuffleNet's channel shuffle (torch.nn.functional.channel_shuffle): (N, g*k, ...) viewed as
    (N, g, k, ...), axes 1 and 2 swapped, viewed back as (N, k*g, ...)."""
    label = f"channel_shuffle of {x.shape}" if name is None else f"layer {name!r} (ChannelShuffle)"
    if x.ndim < 2 or groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"{label}: axis 1 (channels): {x.shape[1] if x.ndim > 1 else None} channels "
                         f"are not divisible by groups={groups}")
    c, spatial = x.shape[1], x.shape[2:]
    split = x.reshape(-1, groups, c // groups, *spatial)  # -1: the batch, so the graph takes any batch
    name = name or x.tracer.auto_name("channel_shuffle")
    swapped = x.tracer.emit(name, "transpose", ops.TransposeAttrs((0, 2, 1) + tuple(range(3, x.ndim + 1))),
                            [split], kind="ChannelShuffle")
    return swapped.reshape(-1, c, *spatial)


def cat(tensors: Sequence[Tensor], dim: int = 1) -> Tensor:
    """torch.cat of Tensors of one trace along `dim` (the channels by default); the other axes must
    match (ShapeError), and at least one Tensor is needed (ConvgenError).

    >>> x = nn.Input((1, 3, 8, 8))
    >>> nn.cat([x, nn.relu(x)], dim=1).shape
    (1, 6, 8, 8)
    """
    tensors = list(tensors)
    if not tensors:
        raise ConvgenError("cat needs at least one Tensor")
    return tensors[0].tracer.emit(None, "concat", ops.ConcatAttrs(dim), tensors, default_name="concat")


def flatten(x: Tensor, start_dim: int = 1) -> Tensor:
    """torch's flatten from start_dim to the last axis (a view)."""
    return x.flatten(start_dim)


class Flatten(Module):
    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "flatten", ops.FlattenAttrs(self.start_dim))


class _PadNd(Module):
    """torch's ConstantPadNd / ZeroPadNd / ReflectionPadNd / ReplicationPadNd / CircularPadNd."""
    ndim = 0
    mode = "constant"

    def __init__(self, padding, value: float = 0.0) -> None:
        super().__init__()
        self.padding = shapes.as_tuple(padding, 2 * self.ndim, "padding", type(self).__name__)
        self.value = float(value)

    def forward(self, x: Tensor) -> Tensor:
        return pad(x, self.padding, self.mode, self.value, name=self.layer_name(x.tracer))

    def extra_repr(self) -> str:
        return f"padding={self.padding}" + (f", value={self.value}" if self.mode == "constant" else "")


def _pad_layer(prefix: str, mode: str, ndim: int, zero: bool = False) -> type:
    if mode == "constant" and not zero:
        def init(self, padding, value: float) -> None:
            _PadNd.__init__(self, padding, value)
    else:
        def init(self, padding) -> None:
            _PadNd.__init__(self, padding)
    return type(f"{prefix}Pad{ndim}d", (_PadNd,), {"ndim": ndim, "mode": mode, "__init__": init})


ConstantPad1d, ConstantPad2d, ConstantPad3d = (_pad_layer("Constant", "constant", n) for n in (1, 2, 3))
ZeroPad1d, ZeroPad2d, ZeroPad3d = (_pad_layer("Zero", "constant", n, zero=True) for n in (1, 2, 3))
ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = (_pad_layer("Reflection", "reflect", n) for n in (1, 2, 3))
ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = (_pad_layer("Replication", "replicate", n) for n in (1, 2, 3))
CircularPad1d, CircularPad2d, CircularPad3d = (_pad_layer("Circular", "circular", n) for n in (1, 2, 3))


class ChannelShuffle(Module):
    """torch.nn.ChannelShuffle: a view, a transpose kernel, a view."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = _int(groups)

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups, name=self.layer_name(x.tracer))

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Dropout(Identity):
    """Identity at inference, as in torch's eval mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()

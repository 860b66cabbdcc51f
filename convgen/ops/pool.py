"""Pooling: max and average over windows (1-D/2-D/3-D), and the global pools.

pool attributes follow torch.nn.functional (and ONNX MaxPool/AveragePool):
stride, (begin, end) pads, dilation (max only), ceil_mode, count_include_pad,
divisor_override.  A max pool may have a second output: the int64 index of the
maximum, by index_layout: "plane" (within its (n, c) input plane, as torch's return_indices
gives), or ONNX MaxPool's Indices, flattened over N*C*spatial: "row_major" (storage_order 0) or
"column_major" (storage_order 1: the first spatial axis varies fastest).  pad_limit "half" is
torch's rule (a pad at most half the dilated window); "window" is ONNX's (any pad smaller than
the dilated window, so every window overlaps the input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .conv import window_of, window_slices
from .registry import OpDef, register

POOL_KINDS = ("max", "avg")
INDEX_LAYOUTS = ("plane", "row_major", "column_major")
PAD_LIMITS = ("half", "window")


@dataclass(frozen=True)
class PoolAttrs:
    kind: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    return_indices: bool = False
    index_layout: str = "plane"
    pad_limit: str = "half"

    @property
    def ndim(self) -> int:
        return len(self.kernel)


@dataclass(frozen=True)
class GlobalPoolAttrs:
    kind: str


def _infer_pool(layer: str, attrs: PoolAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    if attrs.kind not in POOL_KINDS:
        raise ShapeError(f"{layer}: unknown pool kind {attrs.kind!r}")
    if attrs.index_layout not in INDEX_LAYOUTS or attrs.pad_limit not in PAD_LIMITS:
        raise ShapeError(f"{layer}: index_layout must be one of {INDEX_LAYOUTS} and pad_limit one of "
                         f"{PAD_LIMITS}, got {attrs.index_layout!r}, {attrs.pad_limit!r}")
    if attrs.divisor_override is not None and attrs.divisor_override < 1:
        raise ShapeError(f"{layer}: divisor_override must be >= 1, got {attrs.divisor_override}")
    x = types[0]
    shapes.check_rank(layer, x.shape, attrs.ndim + 2)
    shapes.check_pool_padding(layer, attrs.kernel, attrs.dilation, attrs.pads, attrs.pad_limit)
    spatial = shapes.window_output_shape(layer, x.shape[2:], attrs.kernel, attrs.stride, attrs.pads,
                                         attrs.dilation, attrs.ceil_mode)
    out = TensorType(x.shape[:2] + spatial)
    if attrs.return_indices:
        return out, TensorType(out.shape, "int64")
    return (out,)


def _padded_windows(attrs: PoolAttrs, x: np.ndarray, fill: float):
    """x padded with `fill` so every window (ceil_mode overhang included) lies inside."""
    out_spatial = shapes.window_output_shape("reference", x.shape[2:], attrs.kernel, attrs.stride, attrs.pads,
                                             attrs.dilation, attrs.ceil_mode)
    widths = [(0, 0), (0, 0)]
    for i, k, s, d, o, (pb, pe) in zip(x.shape[2:], attrs.kernel, attrs.stride, attrs.dilation,
                                       out_spatial, attrs.pads):
        needed = (o - 1) * s + shapes.effective_kernel(k, d)
        widths.append((pb, max(pe, needed - i - pb)))
    return np.pad(x, widths, constant_values=fill), out_spatial


def _windows(attrs: PoolAttrs, xp: np.ndarray, out_spatial):
    for k in np.ndindex(*attrs.kernel):
        start = tuple(ki * d for ki, d in zip(k, attrs.dilation))
        yield k, xp[(slice(None),) * 2 + window_slices(start, out_spatial, attrs.stride)]


def _first_tap_index(attrs: PoolAttrs, in_spatial, out_spatial) -> np.ndarray:
    """torch's initial argmax: per window, the flat index of its first tap past the left padding."""
    index = np.zeros(out_spatial, dtype=np.int64)
    for axis, (i, s, d, o, (pb, _)) in enumerate(zip(in_spatial, attrs.stride, attrs.dilation, out_spatial,
                                                     attrs.pads)):
        start = np.arange(o) * s - pb
        start = np.where(start < 0, start + (-start + d - 1) // d * d, start)
        index = index * i + start.reshape([-1 if a == axis else 1 for a in range(len(out_spatial))])
    return index


def _max_reference(attrs: PoolAttrs, x: np.ndarray):
    xp, out_spatial = _padded_windows(attrs, x.astype(np.float64), -np.inf)
    plane = np.arange(math.prod(x.shape[2:])).reshape(x.shape[2:]).astype(np.int64)
    idx_p, _ = _padded_windows(attrs, plane[None, None].astype(np.float64), -1.0)
    best = np.full(x.shape[:2] + out_spatial, -np.inf)
    best_index = np.broadcast_to(_first_tap_index(attrs, x.shape[2:], out_spatial), best.shape)
    indexed = zip(_windows(attrs, xp, out_spatial), _windows(attrs, idx_p, out_spatial))
    for (_, values), (_, index) in indexed:
        # torch: a later tap wins only if strictly greater, or NaN
        take = (values > best) | np.isnan(values)
        best = np.where(take, values, best)
        best_index = np.where(take, np.broadcast_to(index, best.shape).astype(np.int64), best_index)
    if attrs.return_indices:
        return best.astype(np.float32), onnx_indices(attrs.index_layout, best_index, x.shape)
    return best.astype(np.float32)


def onnx_indices(layout: str, plane_index: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """Row-major indices within each (n, c) plane -> the index_layout's indices."""
    if layout == "plane":
        return plane_index
    spatial = in_shape[2:]
    coords = np.unravel_index(plane_index, spatial)
    order = range(len(spatial)) if layout == "column_major" else reversed(range(len(spatial)))
    index, stride = np.zeros_like(plane_index), 1
    for axis in order:  # the fastest-varying axis first
        index, stride = index + coords[axis] * stride, stride * spatial[axis]
    planes = np.arange(in_shape[0] * in_shape[1]).reshape(in_shape[:2] + (1,) * len(spatial))
    return index + planes * stride


def avg_pool_divisor(attrs: PoolAttrs, in_spatial, out_spatial) -> np.ndarray:
    """Per output position: the taps counted, as torch (and onnxruntime, dilated) count them: those inside
    the padded input (not a ceil_mode window's overhang), or inside the input unless padding counts."""
    if attrs.divisor_override is not None:
        return np.full(out_spatial, float(attrs.divisor_override))
    counts = []
    for i, k, s, d, o, (pb, pe) in zip(in_spatial, attrs.kernel, attrs.stride, attrs.dilation, out_spatial,
                                       attrs.pads):
        taps = (np.arange(o) * s - pb)[:, None] + np.arange(k)[None, :] * d
        low, high = (-pb, i + pe) if attrs.count_include_pad else (0, i)
        # a dilated window's taps may all miss the input (size 1, taps at -1 and 1): onnxruntime's average is 0
        counts.append(np.maximum(((taps >= low) & (taps < high)).sum(axis=1), 1))
    divisor = np.ones(out_spatial)
    for axis, c in enumerate(counts):
        divisor = divisor * c.reshape([-1 if a == axis else 1 for a in range(len(counts))])
    return divisor


def _avg_reference(attrs: PoolAttrs, x: np.ndarray):
    xp, out_spatial = _padded_windows(attrs, x.astype(np.float64), 0.0)
    total = sum(values for _, values in _windows(attrs, xp, out_spatial))
    return (total / avg_pool_divisor(attrs, x.shape[2:], out_spatial)).astype(np.float32)


def pool_reference(attrs: PoolAttrs, x: np.ndarray):
    return _max_reference(attrs, x) if attrs.kind == "max" else _avg_reference(attrs, x)


register(OpDef(
    name="pool",
    infer=_infer_pool,
    flops=lambda a, ins, outs: outs[0].size * math.prod(a.kernel),
    reference=pool_reference,
    window=window_of,
))


def _infer_global(layer: str, attrs: GlobalPoolAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    if attrs.kind not in POOL_KINDS:
        raise ShapeError(f"{layer}: unknown pool kind {attrs.kind!r}")
    x = types[0]
    if x.ndim < 3:
        raise ShapeError(f"{layer}: input must have rank >= 3 (N, C, spatial...), got shape {x.shape}")
    return (TensorType(x.shape[:2] + (1,) * (x.ndim - 2)),)


def global_pool_reference(attrs: GlobalPoolAttrs, x: np.ndarray) -> np.ndarray:
    axes = tuple(range(2, x.ndim))
    reduce = np.max if attrs.kind == "max" else np.mean
    return reduce(x.astype(np.float64), axis=axes, keepdims=True).astype(np.float32)


register(OpDef(
    name="global_pool",
    infer=_infer_global,
    flops=lambda a, ins, outs: ins[0].size,
    reference=global_pool_reference,
    window=lambda a, x: tuple((i, 1, 1) for i in x.shape[2:]),
))

"""Power-average (Lp) pooling: torch's LPPoolNd / F.lp_poolNd and ONNX LpPool / GlobalLpPool.

op "lp_pool", attrs LpPoolAttrs:
    p                              the norm, > 0 (torch norm_type, ONNX p); p = inf is the max of |x| (NaN wins),
                                   as torch's norm_type=inf
    kernel, stride, dilation       one int per spatial axis
    pads                           (begin, end) per axis, zeros (ONNX pads; torch has none)
    ceil_mode                      as the other pools: the last window may hang past the end
    convention                     "torch" or "onnx":
      onnx:  y = (sum over the window of |x|^p) ^ (1/p)                 (onnxruntime's LpPool)
      torch: y = (K/n * sum over the window of x^p) ^ (1/p)             (F.lp_pool: avg_pool(x^p) * K)
             n = taps inside the (padded) input, K = taps of the kernel: K/n = 1 but for ceil_mode windows
             hanging past the end.  No abs: x^p of a negative x is negative for odd integral p and NaN for
             non-integral p, and the root of a negative sum is NaN unless p == 1 -- torch gives the same NaNs.
op "global_lp_pool", attrs GlobalLpPoolAttrs(p=2.0): (sum over all spatial positions of |x|^p) ^ (1/p),
keeping the spatial axes as size 1 (ONNX GlobalLpPool).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .conv import window_of
from .pool import _padded_windows, _windows
from .registry import OpDef, register

CONVENTIONS = ("torch", "onnx")


@dataclass(frozen=True)
class LpPoolAttrs:
    p: float
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False
    convention: str = "torch"
    pad_limit: str = "half"        # "window" for ONNX: any pad below the dilated window (see pool.py)

    @property
    def ndim(self) -> int:
        return len(self.kernel)


@dataclass(frozen=True)
class GlobalLpPoolAttrs:
    p: float = 2.0


def check_norm(layer: str, p: float) -> None:
    """Check an Lp pool's norm p: a number > 0 (inf allowed), else a ShapeError naming `layer`."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ShapeError(f"{layer}: the norm p must be a number, got {p!r}")
    if not p > 0:
        raise ShapeError(f"{layer}: the norm p must be > 0, got {p}")


def _infer(layer: str, attrs: LpPoolAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    check_norm(layer, attrs.p)
    if attrs.convention not in CONVENTIONS:
        raise ShapeError(f"{layer}: unknown Lp pool convention {attrs.convention!r}; expected one of {CONVENTIONS}")
    x = types[0]
    shapes.check_rank(layer, x.shape, attrs.ndim + 2)
    shapes.check_pool_padding(layer, attrs.kernel, attrs.dilation, attrs.pads, attrs.pad_limit)
    spatial = shapes.window_output_shape(layer, x.shape[2:], attrs.kernel, attrs.stride, attrs.pads,
                                         attrs.dilation, attrs.ceil_mode)
    return (TensorType(x.shape[:2] + spatial),)


def taps_inside(attrs: LpPoolAttrs, in_spatial, out_spatial) -> np.ndarray:
    """Per output: the window's taps inside the padded input (torch's avg_pool divisor, with dilation)."""
    counts = np.ones(out_spatial)
    for axis, (i, k, s, d, o, (pb, pe)) in enumerate(zip(in_spatial, attrs.kernel, attrs.stride, attrs.dilation,
                                                         out_spatial, attrs.pads)):
        start = np.arange(o) * s - pb
        inside = np.minimum(k, (i + pe - start + d - 1) // d)
        counts = counts * inside.reshape([-1 if a == axis else 1 for a in range(len(out_spatial))])
    return counts


def lp_pool_reference(attrs: LpPoolAttrs, x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    if math.isinf(attrs.p):  # the windows' max of |x| (np.maximum lets NaN win); pads of 0 never win
        xp, out_spatial = _padded_windows(attrs, np.abs(x64), 0.0)
        return functools.reduce(np.maximum, (values for _, values in _windows(attrs, xp, out_spatial))
                                ).astype(np.float32)
    with np.errstate(invalid="ignore"):
        powered = np.power(np.abs(x64) if attrs.convention == "onnx" else x64, attrs.p)
        xp, out_spatial = _padded_windows(attrs, powered, 0.0)
        total = sum(values for _, values in _windows(attrs, xp, out_spatial))
        if attrs.convention == "torch":
            total = total * (math.prod(attrs.kernel) / taps_inside(attrs, x.shape[2:], out_spatial))
        return np.power(total, 1.0 / attrs.p).astype(np.float32)


register(OpDef(
    name="lp_pool",
    infer=_infer,
    flops=lambda a, ins, outs: outs[0].size * (2 * math.prod(a.kernel) + 1),
    reference=lp_pool_reference,
    window=window_of,
))


def _infer_global(layer: str, attrs: GlobalLpPoolAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    check_norm(layer, attrs.p)
    x = types[0]
    if x.ndim < 3:
        raise ShapeError(f"{layer}: input must have rank >= 3 (N, C, spatial...), got shape {x.shape}")
    return (TensorType(x.shape[:2] + (1,) * (x.ndim - 2)),)


def global_lp_pool_reference(attrs: GlobalLpPoolAttrs, x: np.ndarray) -> np.ndarray:
    axes = tuple(range(2, x.ndim))
    if math.isinf(attrs.p):
        return np.max(np.abs(x.astype(np.float64)), axis=axes, keepdims=True).astype(np.float32)
    total = np.sum(np.power(np.abs(x.astype(np.float64)), attrs.p), axis=axes, keepdims=True)
    return np.power(total, 1.0 / attrs.p).astype(np.float32)


register(OpDef(
    name="global_lp_pool",
    infer=_infer_global,
    flops=lambda a, ins, outs: 2 * ins[0].size + outs[0].size,
    reference=global_lp_pool_reference,
    window=lambda a, x: tuple((i, 1, 1) for i in x.shape[2:]),
))

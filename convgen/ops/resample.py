"""Resampling along one axis by a table of taps: Resize / Upsample (nearest, linear), torch's
interpolate, adaptive average and max pooling to any output size, gathers with constant indices.

    "resample"  ResampleAttrs(axis, kind, sources, weights)
        with x viewed as (outer, in, inner) around `axis`, output index o of that axis is
        kind "gather": x[:, sources[o][0], :]                           (one tap each)
        kind "linear": sum over t of weights[o][t] * x[:, sources[o][t], :], added in tap order
        kind "max":    the largest x[:, sources[o][t], :] over t (NaN if any is NaN, as torch)
        an output index with no sources is `fill` (tf_crop_and_resize's extrapolation_value)

An output index may read any number of taps (adaptive pooling bins differ in length).  Separable
resampling (bilinear, trilinear, adaptive pools over several axes) is a chain of these, one axis
each, in the order `axis_order` finds cheapest; `resample_axes` builds that chain for the front ends.
The kernel is templates/resample.c.j2 (LLVM: backends/llvm/resample.py).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .registry import OpDef, register

KINDS = ("gather", "linear", "max")


@dataclass(frozen=True)
class ResampleAttrs:
    axis: int
    kind: str
    sources: tuple[tuple[int, ...], ...]
    weights: tuple[tuple[float, ...], ...] = ()
    """kind "linear" only: one weight per source (float32 values)."""
    fill: float = 0.0
    """The value of an output index with no sources (outside tf_crop_and_resize's region)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(tuple(int(i) for i in s) for s in self.sources))
        object.__setattr__(self, "weights", tuple(tuple(float(np.float32(w)) for w in ws) for ws in self.weights))
        object.__setattr__(self, "fill", float(np.float32(self.fill)))


def _check(layer: str, a: ResampleAttrs, shape: tuple[int, ...]) -> None:
    if a.kind not in KINDS:
        raise ShapeError(f"{layer}: resample kind {a.kind!r} is not one of {KINDS}")
    if not 0 <= a.axis < len(shape):
        raise ShapeError(f"{layer}: resample axis {a.axis} of an input of rank {len(shape)}")
    if not a.sources:
        raise ShapeError(f"{layer}: a resample needs at least one output index")
    if a.kind == "gather" and any(len(s) > 1 for s in a.sources):
        raise ShapeError(f"{layer}: a gather reads one source per output index")
    if (a.kind == "linear") != bool(a.weights) or (a.weights and [len(w) for w in a.weights] != [len(s) for s in a.sources]):
        raise ShapeError(f"{layer}: kind {a.kind!r} takes {'one weight per source' if a.kind == 'linear' else 'no weights'}")
    bad = [i for s in a.sources for i in s if not 0 <= i < shape[a.axis]]
    if bad:
        raise ShapeError(f"{layer}: axis {a.axis}: sources {sorted(set(bad))[:5]} outside an axis of size {shape[a.axis]}")


def _infer(layer: str, attrs: ResampleAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    shape = types[0].shape
    _check(layer, attrs, shape)
    return (TensorType(shape[:attrs.axis] + (len(attrs.sources),) + shape[attrs.axis + 1:]),)


def resample_reference(attrs: ResampleAttrs, x: np.ndarray) -> np.ndarray:
    """float64 per output index, then float32."""
    moved = np.moveaxis(np.asarray(x, np.float64), attrs.axis, 0)
    rows = []
    for o, sources in enumerate(attrs.sources):
        picked = moved[list(sources)]
        if not sources:
            rows.append(np.full(moved.shape[1:], attrs.fill))
        elif attrs.kind == "linear":
            rows.append(np.tensordot(np.asarray(attrs.weights[o]), picked, axes=1))
        else:
            rows.append(np.max(picked, axis=0))   # np.max propagates NaN
    return np.ascontiguousarray(np.moveaxis(np.stack(rows), 0, attrs.axis).astype(np.float32))


def _flops(a: ResampleAttrs, ins: list[TensorType], outs: tuple[TensorType, ...]) -> int:
    if a.kind == "gather":
        return 0
    per_tap = 2 if a.kind == "linear" else 1
    taps = sum(len(s) for s in a.sources)
    return per_tap * taps * outs[0].size // len(a.sources)


register(OpDef(name="resample", infer=_infer, flops=_flops, reference=resample_reference))


# -- chains of resamples for the front ends ----------------------------------------------------

def _pass_cost(shape: tuple[int, ...], axis: int, out_size: int, taps: int) -> int:
    """Elements written x taps read, four times dearer along the innermost axis (a gather, not a
    vector sweep)."""
    produced = math.prod(shape) // shape[axis] * out_size
    return produced * taps * (4 if math.prod(shape[axis + 1:]) == 1 else 1)


def axis_order(shape: tuple[int, ...], plans: dict[int, ResampleAttrs]) -> list[int]:
    """The order of the one-axis passes that reads and writes the fewest elements."""
    def cost(order) -> int:
        current, total = list(shape), 0
        for axis in order:
            a = plans[axis]
            total += _pass_cost(tuple(current), axis, len(a.sources), max(len(s) for s in a.sources))
            current[axis] = len(a.sources)
        return total
    return list(min(itertools.permutations(sorted(plans)), key=cost))


def is_identity(size: int, attrs: ResampleAttrs) -> bool:
    """The resample copies its axis unchanged."""
    ones = attrs.kind != "linear" or all(w == (1.0,) for w in attrs.weights)
    return ones and list(attrs.sources) == [(i,) for i in range(size)]


def resample_axes(x, plans: dict[int, ResampleAttrs], emit: Callable) -> object:
    """x resampled along every axis in `plans` (axis -> attrs), cheapest order first, identities
    left out; emit(attrs, value, suffix) records one resample layer and returns its output."""
    plans = {axis: a for axis, a in plans.items() if not is_identity(x.shape[axis], a)}
    for axis in axis_order(tuple(x.shape), plans):
        x = emit(plans[axis], x, f"_axis{axis}")
    return x


def nearest_plan(axis: int, sources, fill: float = 0.0) -> ResampleAttrs:
    """Sources of None: outputs of value `fill`."""
    return ResampleAttrs(axis, "gather", tuple(() if i is None else (int(i),) for i in sources), fill=fill)


def linear_plan(axis: int, taps: shapes.Taps, fill: float = 0.0) -> ResampleAttrs:
    """Taps whose weight is 0 are left out (0 * inf would be NaN), a source read twice is read once
    with the weights' sum (0.5 x + 0.5 x is x exactly); one tap of weight 1 is a gather; an output
    without taps is `fill`."""
    kept: list[tuple] = []
    for sources, weights in taps:
        if not sources:
            kept.append(())
            continue
        merged: dict[int, float] = {}
        for i, w in zip(sources, weights):
            merged[i] = float(np.float32(merged.get(i, 0.0) + w))
        kept.append(tuple((i, w) for i, w in merged.items() if w != 0.0) or ((sources[0], 0.0),))
    if all(not k or (len(k) == 1 and k[0][1] == 1.0) for k in kept):
        return nearest_plan(axis, [k[0][0] if k else None for k in kept], fill)
    return ResampleAttrs(axis, "linear", tuple(tuple(i for i, _ in k) for k in kept),
                         tuple(tuple(w for _, w in k) for k in kept), fill)


def adaptive_plan(axis: int, in_size: int, out_size: int, kind: str) -> ResampleAttrs:
    """torch's adaptive average (kind "avg": weights 1/count) or max pooling of one axis."""
    bins = shapes.adaptive_bins(in_size, out_size)
    sources = tuple(tuple(range(lo, hi)) for lo, hi in bins)
    if kind == "max":
        return ResampleAttrs(axis, "max" if any(len(s) > 1 for s in sources) else "gather", sources)
    return linear_plan(axis, tuple((s, (1.0 / len(s),) * len(s)) for s in sources))

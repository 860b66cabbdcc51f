"""Copies that read their input through strides: a strided slice and a broadcast (expand).

    "slice"   SliceAttrs(first, steps, counts)   ONNX Slice / Split / Gather with constant indices:
                                                 per axis, `counts` elements from `first` every `steps`
                                                 (negative steps walk backwards)
    "expand"  ExpandAttrs(shape)                 ONNX Expand, torch expand: numpy broadcasting to `shape`

Both lower to the strided copy kernel (templates/strided.c.j2); Tile, DepthToSpace, SpaceToDepth
and whole-factor nearest upsampling are built from them with reshape and transpose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class SliceAttrs:
    first: tuple[int, ...]
    steps: tuple[int, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("first", "steps", "counts"):
            object.__setattr__(self, name, _ints(getattr(self, name)))


@dataclass(frozen=True)
class ExpandAttrs:
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _ints(self.shape))


def _infer_slice(layer: str, attrs: SliceAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (TensorType(shapes.slice_shape(layer, types[0].shape, attrs.first, attrs.steps, attrs.counts)),)


def slice_reference(attrs: SliceAttrs, x: np.ndarray) -> np.ndarray:
    index = tuple(np.arange(c) * s + f for f, s, c in zip(attrs.first, attrs.steps, attrs.counts))
    return np.ascontiguousarray(x[np.ix_(*index)])


def _infer_expand(layer: str, attrs: ExpandAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (TensorType(shapes.broadcast_shape(layer, types[0].shape, attrs.shape)),)


def expand_reference(attrs: ExpandAttrs, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(x, shapes.broadcast_shape("reference", x.shape, attrs.shape)))


register(OpDef(name="slice", infer=_infer_slice, flops=lambda a, ins, outs: 0, reference=slice_reference))
register(OpDef(name="expand", infer=_infer_expand, flops=lambda a, ins, outs: 0, reference=expand_reference))

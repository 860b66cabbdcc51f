"""Ops that only move data: flatten (a view) and concat."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


@dataclass(frozen=True)
class FlattenAttrs:
    start_dim: int = 1


@dataclass(frozen=True)
class ConcatAttrs:
    axis: int = 1


def _infer_flatten(layer: str, attrs: FlattenAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (TensorType(shapes.flatten_shape(types[0].shape, attrs.start_dim, layer)),)


register(OpDef(
    name="flatten",
    infer=_infer_flatten,
    flops=lambda a, ins, outs: 0,
    reference=lambda a, x: x.reshape(shapes.flatten_shape(x.shape, a.start_dim, "reference")).copy(),
))


def _infer_concat(layer: str, attrs: ConcatAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, (1, 1 << 16))
    return (TensorType(shapes.concat_shape([t.shape for t in types], attrs.axis, layer)),)


register(OpDef(
    name="concat",
    infer=_infer_concat,
    flops=lambda a, ins, outs: 0,
    reference=lambda a, *xs: np.concatenate(xs, axis=a.axis).astype(np.float32),
    data_inputs=1 << 16,
))

"""Ops that only move data.

    "flatten"    FlattenAttrs(start_dim=1)              torch.flatten(x, start_dim); a view
    "concat"     ConcatAttrs(axis=1)                    ONNX Concat, torch.cat
    "reshape"    ReshapeAttrs(shape, allowzero=False)   ONNX Reshape (shape as an attribute: -1 infers one
                                                        axis, 0 copies the input's size unless allowzero);
                                                        torch reshape/view; a view, no kernel
    "transpose"  TransposeAttrs(perm=None)              ONNX Transpose (perm None reverses the axes),
                                                        torch permute; a copy kernel
"""
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


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...]
    allowzero: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))


@dataclass(frozen=True)
class TransposeAttrs:
    perm: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.perm is not None:
            object.__setattr__(self, "perm", tuple(int(p) for p in self.perm))


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


def _infer_reshape(layer: str, attrs: ReshapeAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (TensorType(shapes.reshape_shape(layer, types[0].shape, attrs.shape, attrs.allowzero)),)


register(OpDef(
    name="reshape",
    infer=_infer_reshape,
    flops=lambda a, ins, outs: 0,
    reference=lambda a, x: x.reshape(shapes.reshape_shape("reference", x.shape, a.shape, a.allowzero)).copy(),
))


def _infer_transpose(layer: str, attrs: TransposeAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (TensorType(shapes.transpose_shape(layer, types[0].shape, attrs.perm)),)


register(OpDef(
    name="transpose",
    infer=_infer_transpose,
    flops=lambda a, ins, outs: 0,
    reference=lambda a, x: np.ascontiguousarray(np.transpose(x, shapes.transpose_perm("reference", x.ndim, a.perm))),
))

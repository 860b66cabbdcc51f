"""Linear (y = x W^T + b over the last axis) and softmax."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .activation import Activation, apply_optional
from .registry import OpDef, register


@dataclass(frozen=True)
class LinearAttrs:
    activation: Activation | None = None


@dataclass(frozen=True)
class SoftmaxAttrs:
    axis: int = 1


def _infer_linear(layer: str, attrs: LinearAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, (2, 3))
    x, w = types[0], types[1]
    if w.ndim != 2:
        raise ShapeError(f"{layer}: weight must have shape (out_features, in_features), got {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ShapeError(f"{layer}: axis -1 (features): input has {x.shape[-1] if x.ndim else 0} features, "
                         f"the layer expects in_features={w.shape[1]} (input shape {x.shape})")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise ShapeError(f"{layer}: bias must have shape ({w.shape[0]},), got {types[2].shape}")
    return (TensorType(x.shape[:-1] + (w.shape[0],)),)


def linear_reference(attrs: LinearAttrs, x, w, b=None) -> np.ndarray:
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y = y + b
    return apply_optional(attrs.activation, y).astype(np.float32)


register(OpDef(
    name="linear",
    infer=_infer_linear,
    flops=lambda a, ins, outs: outs[0].size * (2 * ins[1].shape[1] + (len(ins) == 3)),
    reference=linear_reference,
))


def normalize_axis(layer: str, axis: int, ndim: int) -> int:
    ax = axis + ndim if axis < 0 else axis
    if not 0 <= ax < ndim:
        raise ShapeError(f"{layer}: axis {axis} is out of range for rank {ndim}")
    return ax


def _infer_softmax(layer: str, attrs: SoftmaxAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    normalize_axis(layer, attrs.axis, types[0].ndim)
    return (types[0],)


def softmax_reference(attrs: SoftmaxAttrs, x) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - np.max(x, axis=attrs.axis, keepdims=True))
    return (e / np.sum(e, axis=attrs.axis, keepdims=True)).astype(np.float32)


register(OpDef(
    name="softmax",
    infer=_infer_softmax,
    flops=lambda a, ins, outs: 4 * outs[0].size,
    reference=softmax_reference,
))

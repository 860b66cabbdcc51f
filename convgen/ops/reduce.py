"""Reductions over any axes (ONNX ReduceMean/Max/Min/Sum/SumSquare/L1/L2/Prod/LogSum/LogSumExp, torch's mean,
sum, amax, amin, prod, logsumexp): "reduce" with ReduceAttrs(kind, axes, keepdims).

Each kind is an initial value, a map of every element, an accumulation and a final step (templates/reduce.c.j2
and backends/llvm/reduce.py follow the table in KINDS); max and min propagate NaN as torch's amax does, and
log_sum_exp shifts by the maximum first (as onnxruntime does), so large inputs do not overflow.  Spatial
mean and max reductions the ONNX importer sends to the global pools instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


def _log_sum_exp(x: np.ndarray, axes, keepdims: bool = True) -> np.ndarray:
    return np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdims))


# kind -> numpy reduction (keeps the input's dtype: the ONNX importer folds integer shapes with it)
REDUCERS = {
    "mean": lambda x, axes: np.mean(x, axis=axes, keepdims=True),
    "max": lambda x, axes: np.max(x, axis=axes, keepdims=True),
    "min": lambda x, axes: np.min(x, axis=axes, keepdims=True),
    "sum": lambda x, axes: np.sum(x, axis=axes, keepdims=True),
    "prod": lambda x, axes: np.prod(x, axis=axes, keepdims=True),
    "sum_square": lambda x, axes: np.sum(x * x, axis=axes, keepdims=True),
    "l1": lambda x, axes: np.sum(np.abs(x), axis=axes, keepdims=True),
    "l2": lambda x, axes: np.sqrt(np.sum(x * x, axis=axes, keepdims=True)),
    "log_sum": lambda x, axes: np.log(np.sum(x, axis=axes, keepdims=True)),
    "log_sum_exp": lambda x, axes: _log_sum_exp(x, axes),
}
KINDS = tuple(REDUCERS)

# FLOPs per input element (a map and an accumulation), for the summary
_FLOPS_PER_ELEMENT = {"mean": 1, "max": 1, "min": 1, "sum": 1, "prod": 1, "sum_square": 2, "l1": 2, "l2": 2,
                      "log_sum": 1, "log_sum_exp": 4}


@dataclass(frozen=True)
class ReduceAttrs:
    kind: str
    axes: tuple[int, ...]     # sorted, non-negative, distinct
    keepdims: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(int(a) for a in self.axes))


def _infer_reduce(layer: str, attrs: ReduceAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    if attrs.kind not in KINDS:
        raise ShapeError(f"{layer}: unknown reduction {attrs.kind!r}; convgen reduces with {list(KINDS)}")
    if not attrs.axes:
        raise ShapeError(f"{layer}: no axes to reduce (a no-op reduction is its input)")
    return (TensorType(shapes.reduced_shape(layer, types[0].shape, attrs.axes, attrs.keepdims)),)


def reduce_reference(attrs: ReduceAttrs, x: np.ndarray) -> np.ndarray:
    y = REDUCERS[attrs.kind](x.astype(np.float64), attrs.axes)
    return y.reshape(shapes.reduced_shape("reference", x.shape, attrs.axes, attrs.keepdims)).astype(np.float32)


register(OpDef(
    name="reduce",
    infer=_infer_reduce,
    flops=lambda a, ins, outs: _FLOPS_PER_ELEMENT[a.kind] * ins[0].size + outs[0].size,
    reference=reduce_reference,
))

"""Elementwise arithmetic with numpy / ONNX multidirectional broadcasting.

Ops (all take BinaryAttrs(activation=None); any operand may be a graph constant or a runtime value,
of any shape that broadcasts with the others, e.g. a per-channel scale of shape (C, 1, 1)):

    "add"   y = a + b            ONNX Add,  torch a + b
    "sub"   y = a - b            ONNX Sub,  torch a - b
    "mul"   y = a * b            ONNX Mul,  torch a * b
    "div"   y = a / b            ONNX Div,  torch a / b (IEEE: x/0 is +-inf, 0/0 NaN)
    "sum"   y = x0 + x1 + ...    ONNX Sum (1 or more inputs), added left to right
    "prelu" y = a < 0 ? a * b : a   ONNX PRelu (b the slope), torch prelu with its weight as (C, 1, 1)
    "min"   y = min(x0, x1, ...)   ONNX Min, torch minimum (NaN if any operand is NaN)
    "max"   y = max(x0, x1, ...)   ONNX Max, torch maximum (NaN if any operand is NaN)
    "pow"   y = a ** b           ONNX Pow with a run-time or tensor exponent (a scalar constant
                                 exponent is the "pow" activation instead)
    "greater", "less", "equal", "not_equal", "greater_equal", "less_equal"
            y = a OP b ? 1 : 0    ONNX Greater, Less, Equal, GreaterOrEqual, LessOrEqual (false on NaN,
                                 not_equal true); convgen holds booleans as float32 0 and 1
    "where" y = c != 0 ? a : b   ONNX Where (c a comparison's 0/1, or a constant mask), torch.where

`activation` is an epilogue the fusion pass fills in (add -> relu becomes one kernel).  The C
expression of each op is in templates/binary.c.j2, the LLVM one in backends/llvm/binary.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Callable

import numpy as np

from .. import shapes
from ..ir import TensorType, check_input_types
from .activation import Activation, apply_optional
from .registry import OpDef, register


@dataclass(frozen=True)
class BinaryAttrs:
    activation: Activation | None = None


AddAttrs = BinaryAttrs  # the name the first convgen versions used for "add"


@dataclass(frozen=True)
class BinaryKind:
    numpy: Callable[..., np.ndarray]
    inputs: tuple[int, int]   # (fewest, most) operands
    folds: bool = True        # numpy combines two operands at a time, left to right; else all at once


def _truth(compare: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda a, b: compare(a, b).astype(np.float64)


MANY = 1 << 16

KINDS: dict[str, BinaryKind] = {
    "add": BinaryKind(np.add, (2, 2)),
    "sub": BinaryKind(np.subtract, (2, 2)),
    "mul": BinaryKind(np.multiply, (2, 2)),
    "div": BinaryKind(np.divide, (2, 2)),
    "sum": BinaryKind(np.add, (1, MANY)),
    "prelu": BinaryKind(lambda a, b: np.where(a < 0, a * b, a), (2, 2)),
    "min": BinaryKind(np.minimum, (1, MANY)),
    "max": BinaryKind(np.maximum, (1, MANY)),
    "pow": BinaryKind(np.power, (2, 2)),
    "greater": BinaryKind(_truth(np.greater), (2, 2)),
    "less": BinaryKind(_truth(np.less), (2, 2)),
    "equal": BinaryKind(_truth(np.equal), (2, 2)),
    "not_equal": BinaryKind(_truth(np.not_equal), (2, 2)),
    "greater_equal": BinaryKind(_truth(np.greater_equal), (2, 2)),
    "less_equal": BinaryKind(_truth(np.less_equal), (2, 2)),
    "where": BinaryKind(lambda c, a, b: np.where(c != 0, a, b), (3, 3), folds=False),
}


def evaluate(op: str, *xs: np.ndarray) -> np.ndarray:
    """The kind's numpy function over its operands (folded left to right where it folds)."""
    kind = KINDS[op]
    return reduce(kind.numpy, xs) if kind.folds else kind.numpy(*xs)


def _infer(op: str):
    def infer(layer: str, attrs: BinaryAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
        check_input_types(layer, types, KINDS[op].inputs)
        return (TensorType(shapes.broadcast_shape(layer, *(t.shape for t in types))),)
    return infer


def binary_reference(op: str, attrs: BinaryAttrs, *xs: np.ndarray) -> np.ndarray:
    """float64, folded left to right like the kernels; the result has the broadcast shape."""
    out_shape = shapes.broadcast_shape("reference", *(np.shape(x) for x in xs))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y = evaluate(op, *(np.asarray(x, np.float64) for x in xs))
    y = np.broadcast_to(y, out_shape)  # a one-input sum keeps its shape
    return apply_optional(attrs.activation, y).astype(np.float32)


def _flops(a: BinaryAttrs, ins: list[TensorType], outs: tuple[TensorType, ...]) -> int:
    return max(1, len(ins) - 1) * outs[0].size


for _op in KINDS:
    register(OpDef(
        name=_op,
        infer=_infer(_op),
        flops=_flops,
        reference=lambda a, *xs, _op=_op: binary_reference(_op, a, *xs),
        data_inputs=KINDS[_op].inputs[1],
    ))

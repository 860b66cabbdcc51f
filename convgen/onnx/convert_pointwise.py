"""Converters of activations, elementwise arithmetic (numpy broadcasting), normalizations."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import ShapeError
from .context import NodeView
from .converters import converter, data


# -- activations --------------------------------------------------------------------------

def _activation(node: NodeView, kind: str, *params: float) -> list:
    return [node.emit("activation", ops.Activation(kind, params), [data(node)])]


@converter("Relu")
def _relu(node: NodeView) -> list:
    return _activation(node, "relu")


@converter("Sigmoid")
def _sigmoid(node: NodeView) -> list:
    return _activation(node, "sigmoid")


@converter("Tanh")
def _tanh(node: NodeView) -> list:
    return _activation(node, "tanh")


@converter("LeakyRelu")
def _leaky_relu(node: NodeView) -> list:
    return _activation(node, "leaky_relu", float(node.attr("alpha", 0.01)))


def _scalar(node: NodeView, i: int, what: str, default: float) -> float:
    value = node.optional_const(i, what)
    if value is None:
        return default
    if value.size != 1:
        raise ShapeError(f"{node.label}: {what} must be a scalar, got shape {value.shape}")
    return float(value.reshape(()))


@converter("HardSigmoid")
def _hard_sigmoid(node: NodeView) -> list:
    return _activation(node, "hard_sigmoid", float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5)))


@converter("Clip")
def _clip(node: NodeView) -> list:
    low, high = _scalar(node, 1, "min", -math.inf), _scalar(node, 2, "max", math.inf)
    if low == -math.inf and high == math.inf:
        return [data(node)]
    # ONNX computes min(max(x, low), high): with low > high every number becomes high
    return _activation(node, "clip", min(low, high), high)


# -- elementwise and normalization --------------------------------------------------------

@converter("Add", "Sub", "Mul", "Div", "Sum")
def _binary(node: NodeView) -> list:
    """numpy broadcasting on run-time values and constants alike (ops.binary)."""
    operands = [node.operand(i) for i in range(len(node.input_names)) if node.has_input(i)]
    return [node.emit(node.op_type.lower(), ops.BinaryAttrs(), operands)]


COMPARISONS = {"Greater": "greater", "Less": "less", "Equal": "equal", "GreaterOrEqual": "greater_equal",
               "LessOrEqual": "less_equal"}


@converter(*COMPARISONS)
def _compare(node: NodeView) -> list:
    """A boolean result as float32 0 and 1, whatever the inputs' type: Where, Not, And, Or, Xor and Cast read
    it so; as a graph output it is cast to the bool the model declares."""
    operands = [node.operand(0, typed=False), node.operand(1, typed=False)]
    return [node.emit(COMPARISONS[node.op_type], ops.BinaryAttrs(), operands)]


@converter("Not", "And", "Or", "Xor")
def _logic(node: NodeView) -> list:
    """On 0/1 values (bool inputs cast to them): Not is x == 0, And min, Or max, Xor !=."""
    if node.op_type == "Not":
        zero = node.ctx.constant(node.name + "_zero", np.zeros(()))
        return [node.emit("equal", ops.BinaryAttrs(), [node.operand(0, typed=False), zero])]
    op = {"And": "min", "Or": "max", "Xor": "not_equal"}[node.op_type]
    return [node.emit(op, ops.BinaryAttrs(), [node.operand(0, typed=False), node.operand(1, typed=False)])]


@converter("BatchNormalization")
def _batch_norm(node: NodeView) -> list:
    if node.attr("training_mode", 0):
        raise node.unsupported("training_mode=1 (batch statistics) is not supported; export in eval mode")
    if any(node.output_names[1:]):
        raise node.unsupported("the running mean/var outputs (training) are not supported")
    attrs = ops.BatchNormAttrs(float(node.attr("epsilon", 1e-5)))
    return [node.emit("batch_norm", attrs, [data(node)] + [node.operand(i) for i in range(1, 5)])]


@converter("LRN")
def _lrn(node: NodeView) -> list:
    size = node.attr("size")
    if size is None:
        raise ShapeError(f"{node.label}: size is required")
    attrs = ops.LRNAttrs(int(size), float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)),
                         float(node.attr("bias", 1.0)))
    return [node.emit("lrn", attrs, [data(node)])]


@converter("Softmax")
def _softmax(node: NodeView) -> list:
    return [node.emit("softmax", ops.SoftmaxAttrs(int(node.attr("axis", -1))), [data(node)])]

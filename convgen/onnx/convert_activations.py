"""Converters of the unary activations and math functions (ops.activation kinds), and of the
variadic Min / Max / Mean and Pow (ops.binary).  Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid and
Clip are in convert_pointwise.py."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..ops.activation import SELU_ALPHA, SELU_GAMMA
from .context import NodeView
from .converters import converter, data

# ONNX op type -> activation kind, for the ops without attributes
UNARY = {"HardSwish": "hard_swish", "Mish": "mish", "Softsign": "softsign", "Exp": "exp", "Log": "log",
         "Sqrt": "sqrt", "Abs": "abs", "Neg": "neg", "Reciprocal": "reciprocal", "Erf": "erf"}


def _activation(node: NodeView, kind: str, *params: float) -> list:
    return [node.emit("activation", ops.Activation(kind, params), [data(node)])]


@converter(*UNARY)
def _unary(node: NodeView) -> list:
    return _activation(node, UNARY[node.op_type])


@converter("Sign")
def _sign(node: NodeView) -> list:
    return _activation(node, "sign", 1.0)  # NaN stays NaN, as onnxruntime's


@converter("Softplus")
def _softplus(node: NodeView) -> list:
    return _activation(node, "softplus", 1.0, math.inf)  # ONNX's has no threshold


@converter("Gelu")
def _gelu(node: NodeView) -> list:
    approximate = node.attr("approximate", "none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise node.unsupported(f"approximate={approximate!r}; ONNX defines 'none' and 'tanh'")
    return _activation(node, "gelu" if approximate == "none" else "gelu_tanh")


@converter("Elu")
def _elu(node: NodeView) -> list:
    return _activation(node, "elu", float(node.attr("alpha", 1.0)))


@converter("Celu")
def _celu(node: NodeView) -> list:
    alpha = float(node.attr("alpha", 1.0))
    if alpha == 0:
        raise node.unsupported("alpha=0 (CELU divides by alpha)")
    return _activation(node, "celu", alpha)


@converter("Selu")
def _selu(node: NodeView) -> list:
    return _activation(node, "selu", float(node.attr("alpha", SELU_ALPHA)), float(node.attr("gamma", SELU_GAMMA)))


@converter("Pow")
def _pow(node: NodeView) -> list:
    """A constant exponent that is one number (and does not broadcast the base to a larger shape)
    is the pow activation; any other exponent is the elementwise binary pow."""
    exponent = node.input(1)
    base = data(node)
    if (isinstance(exponent, np.ndarray) and exponent.size == 1 and exponent.ndim <= len(base.shape)
            and np.isfinite(exponent).all()):
        return _activation(node, "pow", float(exponent.reshape(-1)[0]))
    return [node.emit("pow", ops.BinaryAttrs(), [base, node.operand(1)])]


@converter("Min", "Max")
def _min_max(node: NodeView) -> list:
    operands = [node.operand(i) for i in range(len(node.input_names)) if node.has_input(i)]
    return [node.emit(node.op_type.lower(), ops.BinaryAttrs(), operands)]


@converter("Mean")
def _mean(node: NodeView) -> list:
    """The sum of the operands times 1/n: one kernel, the scale its epilogue (the fusion pass)."""
    operands = [node.operand(i) for i in range(len(node.input_names)) if node.has_input(i)]
    total = node.emit("sum", ops.BinaryAttrs(), operands, suffix="_sum")
    if len(operands) == 1:
        return [total]
    return [node.emit("activation", ops.Activation("scale", (1.0 / len(operands),)), [total])]

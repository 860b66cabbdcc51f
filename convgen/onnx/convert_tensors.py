"""Converters of matrix products, data movement and values known at import (Constant, Shape)."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import ShapeError
from ..trace import Tensor
from .context import NodeView
from .converters import converter, data
from .folding import FOLDERS, shape_slice


# -- dense ----------------------------------------------------------------------------------

def _linear(node: NodeView, x: Tensor, weight, bias=None, suffix: str = "") -> Tensor:
    """y = x weight^T + bias: weight (out, in) and bias (out,) as numpy arrays (compile-time
    constants) or run-time Tensors."""
    inputs = [x, node.ctx.constant(node.name + ".weight", weight) if isinstance(weight, np.ndarray) else weight]
    if bias is not None:
        inputs.append(node.ctx.constant(node.name + ".bias", bias) if isinstance(bias, np.ndarray) else bias)
    return node.emit("linear", ops.LinearAttrs(), inputs, suffix)


def _transposed(node: NodeView, x: Tensor, suffix: str) -> Tensor:
    return node.emit("transpose", ops.TransposeAttrs(None), [x], suffix)


def _scaled(node: NodeView, y, factor: float, suffix: str):
    if factor == 1.0:
        return y
    return node.emit("mul", ops.BinaryAttrs(), [y, node.ctx.constant(f"{node.name}.{suffix}", np.float32(factor))],
                     suffix)


@converter("Gemm")
def _gemm(node: NodeView) -> list:
    """Y = alpha * A' B' + beta * C as a linear layer; with B and a vector C known at import, alpha and
    beta fold into its weights and bias, else transposes, a scale and an add follow ONNX's formula."""
    a = data(node)
    if a.ndim != 2:
        raise ShapeError(f"{node.label}: A must be a matrix, got shape {a.shape}")
    if node.attr("transA", 0):
        a = _transposed(node, a, ".a_t")
    alpha, beta, trans_b = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0)), node.attr("transB", 0)
    b, c = node.input(1), node.input(2) if node.has_input(2) else None
    if isinstance(b, np.ndarray):
        weight = (b if trans_b else b.T).astype(np.float64) * alpha
        if isinstance(c, np.ndarray) and c.size in (1, weight.shape[0]) and c.ndim <= 2 and c.shape[:-1] in ((), (1,)):
            bias = np.broadcast_to(c.reshape(-1).astype(np.float64) * beta, weight.shape[:1])
            return [_linear(node, a, weight, bias)]
        y = _linear(node, a, weight, suffix=".gemm" if c is not None else "")
    else:
        y = _scaled(node, _linear(node, a, b if trans_b else _transposed(node, b, ".b_t"), suffix=".gemm"),
                    alpha, "alpha")
    if c is None:
        return [y]
    c = _scaled(node, c, beta, "beta") if isinstance(c, Tensor) else node.ctx.constant(node.name + ".c", c * beta)
    return [node.emit("add", ops.BinaryAttrs(), [y, c])]


@converter("MatMul")
def _matmul(node: NodeView) -> list:
    a, b = data(node), node.input(1)
    if len(b.shape) != 2:
        raise node.unsupported(f"B of shape {tuple(b.shape)}: only a matrix B is supported")
    weight = b.T if isinstance(b, np.ndarray) else _transposed(node, b, ".b_t")
    return [_linear(node, a, weight)]


# -- data movement --------------------------------------------------------------------------

@converter("Identity", "Dropout")
def _identity(node: NodeView) -> list:
    if node.op_type == "Dropout":
        training = node.optional_const(2, "training_mode")
        ratio = node.optional_const(1, "ratio")
        if training is not None and bool(training.reshape(())) and (ratio is None or float(ratio.reshape(())) > 0):
            raise node.unsupported("training_mode=1 drops values at random; convgen compiles inference")
        if len(node.output_names) > 1 and node.output_names[1]:
            raise node.unsupported("the boolean mask output is not supported")
    return [data(node)]


@converter("Flatten")
def _flatten(node: NodeView) -> list:
    """ONNX Flatten is always 2-D: (prod(shape[:axis]), prod(shape[axis:]))."""
    x = data(node)
    axis = int(node.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        raise ShapeError(f"{node.label}: axis {node.attr('axis')} is out of range for rank {x.ndim}")
    if axis == 1 and x.ndim >= 2:
        return [node.emit("flatten", ops.FlattenAttrs(1), [x])]
    return [node.emit("reshape", ops.ReshapeAttrs((math.prod(x.shape[:axis]), -1)), [x])]


@converter("Reshape")
def _reshape(node: NodeView) -> list:
    target = tuple(int(d) for d in node.const(1, "shape").reshape(-1))
    return [node.emit("reshape", ops.ReshapeAttrs(target, bool(node.attr("allowzero", 0))), [data(node)])]


@converter("Squeeze", "Unsqueeze")
def _squeeze(node: NodeView) -> list:
    """A reshape to the shape the folder computes (run on a stand-in of x's shape)."""
    x = data(node)
    stand_in = np.broadcast_to(np.float32(0), x.shape)
    arrays = [stand_in] + [node.const(i, "axes") if node.has_input(i) else None
                           for i in range(1, len(node.input_names))]
    shape = FOLDERS[node.op_type](node, arrays)[0].shape
    return [node.emit("reshape", ops.ReshapeAttrs(shape), [x])]


@converter("Transpose")
def _transpose(node: NodeView) -> list:
    perm = node.attr("perm")
    return [node.emit("transpose", ops.TransposeAttrs(None if perm is None else tuple(perm)), [data(node)])]


@converter("Concat")
def _concat(node: NodeView) -> list:
    operands = [node.operand(i) for i in range(len(node.input_names)) if node.has_input(i)]
    return [node.emit("concat", ops.ConcatAttrs(int(node.attr("axis"))), operands)]


@converter("Cast")
def _cast(node: NodeView) -> list:
    from .attributes import numpy_dtype
    if numpy_dtype(node.attr("to"), node.label) != np.float32:
        raise node.unsupported("a cast of a run-time value to a type other than float32")
    return [data(node)]


# -- values known at import ---------------------------------------------------------------------

@converter("Constant")
def _constant(node: NodeView) -> list:
    present = [k for k in node.attrs if k in ("value", "value_float", "value_floats", "value_int", "value_ints")]
    if len(present) != 1:
        raise node.unsupported(f"a Constant needs exactly one of value/value_float(s)/value_int(s), got "
                               f"{sorted(node.attrs)}")
    key = present[0]
    value = node.attrs[key]
    dtype = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
             "value_ints": np.int64}.get(key)
    return [np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)]


@converter("Shape")
def _shape(node: NodeView) -> list:
    return [shape_slice(node, node.shape_of(0))]

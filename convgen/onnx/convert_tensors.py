"""Converters of matrix products, data movement and values known at import (Constant, Shape)."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import ShapeError
from .context import NodeView
from .converters import converter, data
from .folding import FOLDERS, axes_of, shape_slice


# -- dense ----------------------------------------------------------------------------------

@converter("Gemm")
def _gemm(node: NodeView) -> list:
    """Y = alpha * A' B' + beta * C: B and C known at import or computed at run time."""
    attrs = ops.GemmAttrs(float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0)),
                          bool(node.attr("transA", 0)), bool(node.attr("transB", 0)))
    inputs = [data(node), node.operand(1)] + ([node.operand(2)] if node.has_input(2) else [])
    return [node.emit("gemm", attrs, inputs)]


@converter("MatMul")
def _matmul(node: NodeView) -> list:
    """numpy matmul with a matrix or vector B (known at import or computed at run time)."""
    if len(node.shape_of(1)) > 2:
        raise node.unsupported(f"B of shape {tuple(node.shape_of(1))}: convgen has no batched matrix product")
    return [node.emit("matmul", ops.MatMulAttrs(), [data(node), node.operand(1)])]


# -- data movement --------------------------------------------------------------------------

@converter("Identity", "Dropout")
def _identity(node: NodeView) -> list:
    if node.op_type == "Dropout":
        training = node.optional_const(2, "training_mode")
        ratio = node.optional_const(1, "ratio")
        if training is not None and bool(training.reshape(())) and (ratio is None or float(ratio.reshape(())) > 0):
            raise node.unsupported("training_mode=1 drops values at random; convgen compiles inference")
        if len(node.output_names) > 1 and node.output_names[1]:
            # inference keeps every value: the mask is all true, known at import (SqueezeNet, VGG-19 and
            # AlexNet as onnx ships them name it and leave it unread)
            return [data(node), np.ones(node.shape_of(0), dtype=bool)]
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


@converter("Pad")
def _pad(node: NodeView) -> list:
    """pads (all begins, then all ends) over `axes` (default: every axis); a negative pad crops."""
    x = data(node)
    pads = [int(p) for p in node.const(1, "pads").reshape(-1)]
    given = node.optional_const(3, "axes")
    axes = axes_of(node, given, x.ndim) if given is not None else list(range(x.ndim))
    if len(pads) != 2 * len(axes):
        raise ShapeError(f"{node.label}: {len(pads)} pads for {len(axes)} axes; ONNX wants 2 per axis")
    pairs = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        pairs[axis] = (pads[i], pads[i + len(axes)])
    value = node.optional_const(2, "constant_value")
    fill = 0.0 if value is None or value.size == 0 else float(value.reshape(-1)[0])
    attrs = ops.PadAttrs(tuple(pairs), node.attr("mode", "constant"), fill)
    return [node.emit("pad", attrs, [x])]


@converter("Concat")
def _concat(node: NodeView) -> list:
    operands = [node.operand(i) for i in range(len(node.input_names)) if node.has_input(i)]
    return [node.emit("concat", ops.ConcatAttrs(int(node.attr("axis"))), operands)]


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

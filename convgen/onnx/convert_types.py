"""Converters of element-type conversions: Cast, CastLike, QuantizeLinear, DequantizeLinear.

Run-time values become cast / quantize / dequantize layers (convgen/ops/cast.py); the same ops on
values known at import are folded with the ops' numpy references.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes, ops
from ..ops import cast as cast_op
from ..trace import Tensor
from .attributes import element_type, numpy_dtype
from .context import NodeView
from .converters import converter
from .folding import folder


def _run_time(node: NodeView, i: int = 0) -> Tensor:
    value = node.input(i)
    if not isinstance(value, Tensor):
        raise node.unsupported(f"input {i} is known at import but the node is not folded")
    return value


def _target(node: NodeView, arrays=None) -> str:
    if node.op_type == "CastLike":
        like = node.input(1)
        return like.type.dtype if isinstance(like, Tensor) else _array_type(node, like)
    return element_type(node.attr("to"), node.label)


def _array_type(node: NodeView, array: np.ndarray) -> str:
    name = dtypes.name_of(array.dtype)
    if name is None:
        raise node.unsupported(f"element type {array.dtype} is not one of convgen's {list(dtypes.NAMES)}")
    return name


@converter("Cast", "CastLike")
def _cast(node: NodeView) -> list:
    x, to = _run_time(node), _target(node)
    return [x if x.type.dtype == to else node.emit("cast", ops.CastAttrs(to), [x])]


@folder("Cast", "CastLike")
def _fold_cast(node: NodeView, arrays) -> list[np.ndarray]:
    """By the cast kernels' rules between convgen's types; as numpy converts for the others (bool,
    unsigned 16-64 bits: shape arithmetic and masks)."""
    x = arrays[0]
    to = arrays[1].dtype if node.op_type == "CastLike" else numpy_dtype(node.attr("to"), node.label)
    source, target = dtypes.name_of(x.dtype), dtypes.name_of(to)
    if source is None or target is None:
        return [x.astype(to)]
    return [cast_op.cast(x, source, target)]


def _quantized_type(node: NodeView, zero_point: np.ndarray | None) -> str:
    if zero_point is not None:
        dtype = _array_type(node, zero_point)
    else:
        given = node.attr("output_dtype", 0)
        dtype = element_type(given, node.label) if given else "uint8"
    if dtype not in cast_op.QUANTIZED:
        raise node.unsupported(f"quantizing to element type {dtype}; convgen quantizes to {list(cast_op.QUANTIZED)}")
    return dtype


def _check_blocks(node: NodeView) -> None:
    if node.attr("block_size", 0):
        raise node.unsupported("blocked quantization (block_size); convgen takes per-tensor and per-axis scales")


def _scales(node: NodeView, zero_type: str) -> tuple[np.ndarray, np.ndarray]:
    scale = node.const(1, "scale")
    zero = node.optional_const(2, "zero_point")
    return scale, np.zeros(scale.shape, dtypes.numpy_dtype(zero_type)) if zero is None else zero


@converter("QuantizeLinear")
def _quantize(node: NodeView) -> list:
    _check_blocks(node)
    x = node.as_float32(_run_time(node), 0)
    dtype = _quantized_type(node, node.optional_const(2, "y_zero_point"))
    scale, zero = _scales(node, dtype)
    operands = [x, node.ctx.constant(f"{node.name}_scale", scale), node.ctx.constant(f"{node.name}_zero_point", zero)]
    return [node.emit("quantize", ops.QuantizeAttrs(int(node.attr("axis", 1)), dtype), operands)]


@folder("QuantizeLinear")
def _fold_quantize(node: NodeView, arrays) -> list[np.ndarray]:
    _check_blocks(node)
    dtype = _quantized_type(node, arrays[2] if len(arrays) > 2 else None)
    scale, zero = _scales(node, dtype)
    attrs = ops.QuantizeAttrs(int(node.attr("axis", 1)), dtype)
    return [cast_op.quantize(attrs, cast_op.as_float32(arrays[0], _array_type(node, arrays[0])), scale, zero)]


def _output_type(node: NodeView, scale: np.ndarray) -> str:
    """DequantizeLinear's output has the scale's type (float32 unless the model says float16 or bfloat16)."""
    return _array_type(node, scale) if scale.dtype.kind in "fV" else "float32"


@converter("DequantizeLinear")
def _dequantize(node: NodeView) -> list:
    _check_blocks(node)
    x = _run_time(node)
    if x.type.dtype not in cast_op.QUANTIZED + ("int32",):
        raise node.unsupported(f"dequantizing element type {x.type.dtype}; convgen dequantizes "
                               f"{list(cast_op.QUANTIZED + ('int32',))}")
    scale, zero = _scales(node, x.type.dtype)
    operands = [x, node.ctx.constant(f"{node.name}_scale", scale), node.ctx.constant(f"{node.name}_zero_point", zero)]
    y = node.emit("dequantize", ops.DequantizeAttrs(int(node.attr("axis", 1))), operands)
    to = _output_type(node, scale)
    return [y if to == "float32" else node.emit("cast", ops.CastAttrs(to), [y], suffix="_cast")]


@folder("DequantizeLinear")
def _fold_dequantize(node: NodeView, arrays) -> list[np.ndarray]:
    _check_blocks(node)
    scale, zero = _scales(node, _array_type(node, arrays[0]))
    y = cast_op.dequantize(ops.DequantizeAttrs(int(node.attr("axis", 1))), arrays[0], scale, zero)
    return [cast_op.cast(y, "float32", _output_type(node, scale))]

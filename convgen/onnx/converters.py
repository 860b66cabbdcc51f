"""ONNX op type -> converter: one plain dict, filled by @converter, read by the importer.

A converter takes a NodeView and returns one value per ONNX output (a run-time Tensor from
node.emit, or a numpy array known at import); None for an output nobody may read.  Ops whose
inputs are all known at import are folded instead (folding.FOLDERS) when a folder exists.
COMPILE_TIME_INPUTS lists, per op type, the input slots convgen needs at import time.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import ops, shapes
from ..errors import ShapeError
from ..trace import Tensor
from .context import NodeView, registrar
from .folding import FOLDERS, shape_slice
from .windows import ints, window

ConvertFn = Callable[[NodeView], list]
CONVERTERS: dict[str, ConvertFn] = {}
converter = registrar(CONVERTERS, "converter")

COMPILE_TIME_INPUTS: dict[str, tuple[int, ...]] = {
    "Clip": (1, 2), "Dropout": (1, 2), "Reshape": (1,), "Pad": (1, 2, 3), "Slice": (1, 2, 3, 4),
    "Squeeze": (1,), "Unsqueeze": (1,), "Gather": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
}


def data(node: NodeView, i: int = 0) -> Tensor:
    """Input i, the activation an op reads: computed at run time."""
    value = node.input(i)
    if not isinstance(value, Tensor):
        raise node.unsupported(f"input {i} ({node.input_names[i]!r}) is a constant and the op cannot be "
                               "evaluated at import time; convgen expects it computed at run time")
    return value


# -- convolution and pooling ------------------------------------------------------------

@converter("Conv")
def _conv(node: NodeView) -> list:
    x = data(node)
    w_shape = node.shape_of(1)
    kernel = tuple(w_shape[2:])
    declared = node.attr("kernel_shape")
    if declared is not None and tuple(declared) != kernel:
        raise ShapeError(f"{node.label}: kernel_shape {list(declared)} differs from the weight's {list(kernel)}")
    shapes.check_rank(node.label, x.shape, len(kernel) + 2)
    stride, pads, dilation = window(node, x.shape[2:], kernel)
    attrs = ops.ConvAttrs(kernel, stride, pads, dilation, int(node.attr("group", 1)))
    inputs = [x, node.operand(1)] + ([node.operand(2)] if node.has_input(2) else [])
    return [node.emit("conv", attrs, inputs)]


@converter("ConvTranspose")
def _conv_transpose(node: NodeView) -> list:
    """pads, auto_pad and output_shape resolve to (pads, output_padding) in shapes, as ONNX says."""
    x = data(node)
    kernel = tuple(node.shape_of(1)[2:])
    declared = node.attr("kernel_shape")
    if declared is not None and tuple(declared) != kernel:
        raise ShapeError(f"{node.label}: kernel_shape {list(declared)} differs from the weight's {list(kernel)}")
    nd = len(kernel)
    shapes.check_rank(node.label, x.shape, nd + 2)
    stride, dilation = ints(node, "strides", nd, 1), ints(node, "dilations", nd, 1)
    output_padding = ints(node, "output_padding", nd, 0)
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    output_shape = node.attr("output_shape")
    if output_shape:
        pads, output_padding = shapes.transposed_pads_for_output(
            node.label, x.shape[2:], list(output_shape)[-nd:], kernel, stride, dilation, output_padding, auto_pad)
    elif auto_pad != "NOTSET":
        pads, output_padding = shapes.transposed_auto_pads(node.label, x.shape[2:], kernel, stride, dilation,
                                                           output_padding, auto_pad)
    else:
        flat = ints(node, "pads", 2 * nd, 0)
        pads = tuple(zip(flat[:nd], flat[nd:]))
    attrs = ops.ConvTransposeAttrs(kernel, stride, pads, dilation, output_padding, int(node.attr("group", 1)))
    inputs = [x, node.operand(1)] + ([node.operand(2)] if node.has_input(2) else [])
    return [node.emit("conv_transpose", attrs, inputs)]


def _pool_window(node: NodeView, x: Tensor):
    kernel = node.attr("kernel_shape")
    if not kernel:
        raise ShapeError(f"{node.label}: kernel_shape is required")
    kernel = tuple(int(k) for k in kernel)
    shapes.check_rank(node.label, x.shape, len(kernel) + 2)
    return (kernel,) + window(node, x.shape[2:], kernel)


@converter("MaxPool")
def _max_pool(node: NodeView) -> list:
    x = data(node)
    kernel, stride, pads, dilation = _pool_window(node, x)
    wants_indices = len(node.output_names) > 1 and bool(node.output_names[1])
    layout = "column_major" if node.attr("storage_order", 0) else "row_major"
    attrs = ops.PoolAttrs("max", kernel, stride, pads, dilation, ceil_mode=bool(node.attr("ceil_mode", 0)),
                          return_indices=wants_indices, index_layout=layout, pad_limit="window")
    out = node.emit("pool", attrs, [x])
    return list(out) if wants_indices else [out]


@converter("AveragePool")
def _average_pool(node: NodeView) -> list:
    x = data(node)
    kernel, stride, pads, dilation = _pool_window(node, x)
    if any(d != 1 for d in dilation):
        raise node.unsupported(f"dilated average pooling (dilations {list(dilation)}) is not supported")
    attrs = ops.PoolAttrs("avg", kernel, stride, pads, dilation, ceil_mode=bool(node.attr("ceil_mode", 0)),
                          count_include_pad=bool(node.attr("count_include_pad", 0)), pad_limit="window")
    return [node.emit("pool", attrs, [x])]


@converter("LpPool")
def _lp_pool(node: NodeView) -> list:
    x = data(node)
    kernel, stride, pads, dilation = _pool_window(node, x)
    attrs = ops.LpPoolAttrs(float(node.attr("p", 2)), kernel, stride, pads, dilation,
                            ceil_mode=bool(node.attr("ceil_mode", 0)), convention="onnx", pad_limit="window")
    return [node.emit("lp_pool", attrs, [x])]


@converter("GlobalLpPool")
def _global_lp_pool(node: NodeView) -> list:
    return [node.emit("global_lp_pool", ops.GlobalLpPoolAttrs(float(node.attr("p", 2))), [data(node)])]


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: NodeView) -> list:
    kind = "avg" if node.op_type == "GlobalAveragePool" else "max"
    return [node.emit("global_pool", ops.GlobalPoolAttrs(kind), [data(node)])]


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


@converter("BatchNormalization")
def _batch_norm(node: NodeView) -> list:
    if node.attr("training_mode", 0):
        raise node.unsupported("training_mode=1 (batch statistics) is not supported; export in eval mode")
    if any(node.output_names[1:]):
        raise node.unsupported("the running mean/var outputs (training) are not supported")
    attrs = ops.BatchNormAttrs(float(node.attr("epsilon", 1e-5)))
    return [node.emit("batch_norm", attrs, [data(node)] + [node.operand(i) for i in range(1, 5)])]


@converter("Softmax")
def _softmax(node: NodeView) -> list:
    return [node.emit("softmax", ops.SoftmaxAttrs(int(node.attr("axis", -1))), [data(node)])]


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


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
from .context import NodeView, Value, registrar
from .folding import shape_slice
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

def _broadcast_constant(node: NodeView, i: int, shape: tuple[int, ...]):
    value = node.input(i)
    if isinstance(value, Tensor):
        if value.shape != shape:
            raise node.unsupported(f"run-time operands of shapes {value.shape} and {shape} need broadcasting")
        return value
    try:
        full = np.broadcast_to(value, shape)
    except ValueError:
        raise ShapeError(f"{node.label}: a constant of shape {value.shape} does not broadcast to {shape}") from None
    return node.ctx.constant(node.input_names[i], np.ascontiguousarray(full))


@converter("Add")
def _add(node: NodeView) -> list:
    a, b = node.input(0), node.input(1)
    runtime = a if isinstance(a, Tensor) else b
    shape = runtime.shape
    return [node.emit("add", ops.AddAttrs(), [_broadcast_constant(node, 0, shape),
                                             _broadcast_constant(node, 1, shape)])]


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

def _linear(node: NodeView, x: Tensor, weight: np.ndarray, bias: np.ndarray | None) -> Tensor:
    """y = x weight^T + bias with weight (out, in) known at import."""
    inputs = [x, node.ctx.constant(node.name + ".weight", weight)]
    if bias is not None:
        inputs.append(node.ctx.constant(node.name + ".bias", bias))
    return node.emit("linear", ops.LinearAttrs(), inputs)


def _gemm_bias(node: NodeView, m: int, n: int, beta: float) -> np.ndarray | None:
    if not node.has_input(2):
        return None
    c = node.const(2, "C")
    if c.ndim == 2 and c.shape[0] != 1 and m != 1:
        raise node.unsupported(f"a bias C of shape {c.shape} (one per row) is not supported")
    try:
        return np.broadcast_to(c.astype(np.float64).reshape(c.shape[-1:] if c.ndim else ()), (n,)) * beta
    except ValueError:
        raise ShapeError(f"{node.label}: C of shape {c.shape} does not broadcast to ({m}, {n})") from None


@converter("Gemm")
def _gemm(node: NodeView) -> list:
    a = data(node)
    if node.attr("transA", 0):
        raise node.unsupported("transA=1 is not supported")
    if a.ndim != 2:
        raise ShapeError(f"{node.label}: A must be a matrix, got shape {a.shape}")
    b = node.const(1, "B").astype(np.float64)
    weight = (b if node.attr("transB", 0) else b.T) * float(node.attr("alpha", 1.0))
    bias = _gemm_bias(node, a.shape[0], weight.shape[0], float(node.attr("beta", 1.0)))
    return [_linear(node, a, weight, bias)]


@converter("MatMul")
def _matmul(node: NodeView) -> list:
    a = data(node)
    b = node.const(1, "B")
    if b.ndim != 2:
        raise node.unsupported(f"B of shape {b.shape}: only a matrix known at import is supported")
    return [_linear(node, a, b.T, None)]


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
    x = data(node)
    axis = int(node.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    if axis != 1:
        raise node.unsupported(f"axis {node.attr('axis')} (only axis 1 is supported)")
    return [node.emit("flatten", ops.FlattenAttrs(1), [x])]


def reshape_target(node: NodeView, in_shape: tuple[int, ...], requested: list[int]) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input's dim (unless allowzero), -1 is inferred."""
    allowzero = bool(node.attr("allowzero", 0))
    target = [in_shape[i] if d == 0 and not allowzero else d for i, d in enumerate(requested)]
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise ShapeError(f"{node.label}: invalid shape {requested}")
    known = math.prod(d for d in target if d != -1)
    total = math.prod(in_shape)
    if -1 in target:
        if known == 0 or total % known:
            raise ShapeError(f"{node.label}: cannot reshape {in_shape} to {requested}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise ShapeError(f"{node.label}: cannot reshape {in_shape} ({total} values) to {requested}")
    return tuple(target)


@converter("Reshape")
def _reshape(node: NodeView) -> list:
    x = data(node)
    target = reshape_target(node, x.shape, [int(d) for d in node.const(1, "shape").reshape(-1)])
    if target == x.shape:
        return [x]
    if target == shapes.flatten_shape(x.shape, 1, node.label):
        return [node.emit("flatten", ops.FlattenAttrs(1), [x])]
    raise node.unsupported(f"reshape {x.shape} -> {target} is not supported yet")


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


def is_runtime(value: Value) -> bool:
    return isinstance(value, Tensor)

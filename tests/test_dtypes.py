"""Element types at the boundary (convgen/dtypes.py, convgen/ops/cast.py): graph inputs and outputs of
every type convgen knows, Cast between any two, QuantizeLinear / DequantizeLinear, max pooling on
uint8 images, the runtime's dtype checks; against onnxruntime on both backends."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import dtypes
from convgen.ops import cast as cast_op

from conftest import capped_settings

ONNX_TYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "float16": TensorProto.FLOAT16,
              "bfloat16": TensorProto.BFLOAT16, "int64": TensorProto.INT64, "int32": TensorProto.INT32,
              "int16": TensorProto.INT16, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8,
              "bool": TensorProto.BOOL}
TYPES = list(ONNX_TYPES)
INTEGERS = [t for t in TYPES if dtypes.get(t).kind in ("int", "uint")]


def make_model(nodes, inputs, outputs, opset=21):
    graph = helper.make_graph(nodes, "m", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def io(name, dtype, shape=None):
    return helper.make_tensor_value_info(name, ONNX_TYPES[dtype], shape)


def as_comparable(a: np.ndarray) -> np.ndarray:
    """Values for an exact comparison: bfloat16 as float32 (onnxruntime hands bfloat16 over as float)."""
    return a.astype(np.float32) if a.dtype == ml_dtypes.bfloat16 else a


def ort_run(model, feeds: dict) -> list[np.ndarray]:
    """onnxruntime, with no graph rewrites (QDQ pairs evaluated as written); bfloat16 inputs as OrtValues,
    bfloat16 outputs read through an appended Cast to float."""
    model = _bfloat16_outputs_as_float(model)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options)
    values = {k: onnxruntime.OrtValue.ortvalue_from_numpy_with_onnx_type(v.view(np.uint16), TensorProto.BFLOAT16)
              if v.dtype == ml_dtypes.bfloat16 else onnxruntime.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()}
    return [v.numpy() for v in session.run_with_ort_values(None, values)]


def _bfloat16_outputs_as_float(model):
    model = type(model).FromString(model.SerializeToString())
    for out in model.graph.output:
        if out.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            model.graph.node.append(helper.make_node("Cast", [out.name], [out.name + "_f"], to=TensorProto.FLOAT))
            out.name += "_f"
            out.type.tensor_type.elem_type = TensorProto.FLOAT
    return model


def source_values(dtype: str, rng, shape=(2, 3, 5)) -> np.ndarray:
    """Floats with fractions in [-0.9, 127.9] (in range of every integer type once truncated); integers
    over their whole range (narrowing keeps the low bits, as onnxruntime's does)."""
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype in INTEGERS:
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    values = rng.uniform(-0.9, 127.9, shape).astype(np.float32)
    return cast_op.cast(values, "float32", dtype) if dtype != "float64" else rng.uniform(-0.9, 127.9, shape)


@pytest.mark.parametrize("source", TYPES)
def test_cast_to_every_type_matches_onnxruntime(source, backend, rng):
    targets = [t for t in TYPES if t != source]
    nodes = [helper.make_node("Cast", ["x"], [f"y_{t}"], to=ONNX_TYPES[t]) for t in targets]
    x = source_values(source, rng)
    model = make_model(nodes, [io("x", source, x.shape)], [io(f"y_{t}", t) for t in targets])
    expected = ort_run(model, {"x": x})
    compiled = convgen.compile(convgen.from_onnx(model), backend=backend)
    actual = compiled(x)
    for target, a, e in zip(targets, actual, expected):
        assert a.dtype == dtypes.numpy_dtype(target), target
        np.testing.assert_array_equal(as_comparable(a), e, err_msg=f"{source} -> {target}")
        np.testing.assert_array_equal(as_comparable(a), as_comparable(cast_op.cast(x, source, target)))


def test_float_to_integer_saturates(backend):
    """Out of range (undefined in ONNX): saturated to the type's limits, NaN as 0, as the reference says."""
    x = np.array([[np.nan, np.inf, -np.inf, 1e30, -1e30, 300.7, -300.7, 2.0 ** 31, -2.0 ** 63, 5e18, -0.99, 127.99]],
                 np.float32)
    nodes = [helper.make_node("Cast", ["x"], [f"y_{t}"], to=ONNX_TYPES[t]) for t in INTEGERS]
    model = make_model(nodes, [io("x", "float32", x.shape)], [io(f"y_{t}", t) for t in INTEGERS])
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    for target, a in zip(INTEGERS, actual):
        info = np.iinfo(target)
        expected = [0, info.max, info.min, info.max, info.min, min(300, info.max), max(-300, info.min),
                    min(2 ** 31, info.max), info.min, min(int(np.float32(5e18)), info.max), 0, 127]
        np.testing.assert_array_equal(a, np.array([expected], target), err_msg=target)
        np.testing.assert_array_equal(a, cast_op.cast(x, "float32", target))


@pytest.mark.parametrize("source", [t for t in TYPES if t != "bool"])
def test_cast_to_bool_is_not_zero(source, backend):
    """Zero and -0.0 are false; everything else is true: NaN, infinities, the smallest subnormal, 1 and -1."""
    values = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, np.nan, np.inf, -np.inf, np.finfo(np.float32).smallest_subnormal]
    x = np.array([values if source not in INTEGERS else [0, 0, 1, -1 if source != "uint8" else 3, 2, 0, 7, 100, 0, 1]])
    x = cast_op.cast(x.astype(np.float32), "float32", source) if dtypes.get(source).kind == "half" else x.astype(source)
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.BOOL)], [io("x", source, x.shape)],
                       [io("y", "bool")])
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    assert actual.dtype == np.bool_
    np.testing.assert_array_equal(actual, ort_run(model, {"x": x})[0])
    np.testing.assert_array_equal(actual, cast_op.as_float32(x, source) != 0)


def test_16_bit_float_rounding_matches_onnxruntime(backend):
    """Round to nearest even at the halfway points, overflow to inf, NaN stays NaN."""
    one = np.float32(1.0)
    halfway = [one + np.float32(2.0 ** -8), one + np.float32(3 * 2.0 ** -8), one + np.float32(2.0 ** -11),
               one + np.float32(3 * 2.0 ** -11), np.float32(65520.0), np.float32(3.4e38), np.float32(-1e-30)]
    x = np.array([halfway], np.float32)
    nodes = [helper.make_node("Cast", ["x"], [f"y_{t}"], to=ONNX_TYPES[t]) for t in ("float16", "bfloat16")]
    model = make_model(nodes, [io("x", "float32", x.shape)], [io("y_float16", "float16"), io("y_bfloat16", "bfloat16")])
    expected = ort_run(model, {"x": x})
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1].astype(np.float32), expected[1])
    np.testing.assert_array_equal(actual[1], x.astype(ml_dtypes.bfloat16))   # ml_dtypes rounds to nearest even too


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_max_pool_on_integer_image_is_exact(dtype, backend, rng):
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (2, 3, 9, 11), dtype=dtype, endpoint=True)
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    model = make_model(nodes, [io("x", dtype, x.shape)], [io("y", dtype)], opset=13)
    y = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_float_model_computes_in_float32_and_rounds_to_its_type(dtype, backend, rng):
    """A Conv -> Relu -> MaxPool model declared in another float type: each op computes in float32 and
    rounds its result to the model's type, as onnxruntime's float16 kernels do (within their rounding)."""
    w = cast_op.cast(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "float32", dtype)
    x = cast_op.cast(rng.standard_normal((1, 3, 10, 10)).astype(np.float32), "float32", dtype)
    weight = numpy_helper.from_array(w, "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    model = make_model(nodes, [io("x", dtype, x.shape)], [io("y", dtype)], opset=13)
    model.graph.initializer.append(weight)
    y = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    assert y.dtype == dtypes.numpy_dtype(dtype)
    expected = _float32_reference(x, w, dtype)
    tolerance = {"float16": 2e-3, "bfloat16": 1.6e-2, "float64": 1e-6}[dtype]
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=tolerance, atol=tolerance)
    if dtype == "float16":   # onnxruntime's CPU Conv has no bfloat16 or float64 kernel
        np.testing.assert_allclose(y.astype(np.float64), ort_run(model, {"x": x})[0].astype(np.float64),
                                   rtol=tolerance, atol=tolerance)


def _float32_reference(x, w, dtype) -> np.ndarray:
    import torch
    xt, wt = torch.from_numpy(cast_op.as_float32(x, dtype)), torch.from_numpy(cast_op.as_float32(w, dtype))
    y = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(xt, wt, padding=1)), 2)
    return y.numpy().astype(np.float64)


def test_runtime_checks_declared_dtypes(rng):
    """An input declared uint8 takes uint8 arrays only (a TypeError naming it otherwise); a float32 input
    still converts other real dtypes."""
    nodes = [helper.make_node("Cast", ["a"], ["a_f"], to=TensorProto.FLOAT), helper.make_node("Add", ["a_f", "b"], ["y"])]
    model = make_model(nodes, [io("a", "uint8", (2, 3)), io("b", "float32", (2, 3))], [io("y", "float32")])
    compiled = convgen.compile(convgen.from_onnx(model))
    a = rng.integers(0, 255, (2, 3), dtype=np.uint8)
    b = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(compiled(a, b), a.astype(np.float32) + b.astype(np.float32))
    for wrong in (a.astype(np.int8), a.astype(np.float32), a.astype(np.int64)):
        with pytest.raises(TypeError, match="input 'a': expected a uint8 array"):
            compiled(wrong, b)
    with pytest.raises(TypeError, match="input 'a'"):
        compiled(a=a.astype(np.uint16), b=b)
    assert compiled.signature["inputs"][0]["dtype"] == "uint8"


def test_integer_arithmetic_is_refused():
    """Add on uint8 would have to wrap: refused, naming the element type, not rounded silently."""
    model = make_model([helper.make_node("Add", ["a", "a"], ["y"])], [io("a", "uint8", (2, 3))], [io("y", "uint8")])
    with pytest.raises(convgen.UnsupportedError, match="element type uint8"):
        convgen.from_onnx(model)


def _qdq_case(draw_axis, shape, dtype, rng):
    per_axis = draw_axis is not None
    count = shape[draw_axis] if per_axis else 1
    scale = rng.uniform(0.01, 0.2, count).astype(np.float32)
    info = np.iinfo(dtype)
    zero = rng.integers(info.min // 2, info.max // 2, count, endpoint=True).astype(dtype)
    if not per_axis:
        scale, zero = scale.reshape(()), zero.reshape(())
    return scale, zero


@given(rank=st.integers(1, 4), axis_choice=st.integers(-1, 3), dtype=st.sampled_from(["uint8", "int8"]),
       seed=st.integers(0, 2 ** 16))
@capped_settings(12)
def test_quantize_dequantize_match_onnxruntime(rank, axis_choice, dtype, seed, backend):
    """QuantizeLinear then DequantizeLinear, per tensor or per axis, with values that saturate."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(1, 6, rank))
    axis = None if axis_choice < 0 or axis_choice >= rank else axis_choice
    scale, zero = _qdq_case(axis, shape, dtype, rng)
    x = (rng.standard_normal(shape) * 20).astype(np.float32)
    x.reshape(-1)[0] = 1e4   # saturates
    inits = [helper.make_tensor("s", TensorProto.FLOAT, scale.shape, scale.ravel().tolist()),
             helper.make_tensor("z", ONNX_TYPES[dtype], zero.shape, zero.ravel().tolist())]
    axis_attr = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **axis_attr),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **axis_attr)]
    model = make_model(nodes, [io("x", "float32", shape)], [io("q", dtype), io("y", "float32")], opset=13)
    model.graph.initializer.extend(inits)
    q, y = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    q_ref, y_ref = ort_run(model, {"x": x})
    assert q.dtype == dtype
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(y, y_ref)
    attrs_axis = 1 if axis is None else axis
    np.testing.assert_array_equal(q, cast_op.quantize(convgen.ops.QuantizeAttrs(attrs_axis, dtype), x, scale, zero))


def test_qdq_conv_evaluated_in_float32(backend, rng):
    """The QDQ form quantization tools write: uint8 input dequantized, int8 per-channel weights folded at
    import, Conv in float32, the result quantized and dequantized again; onnxruntime without rewrites."""
    x = rng.integers(0, 256, (1, 3, 8, 8), dtype=np.uint8)
    w = rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)
    w_scale = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    inits = [helper.make_tensor("xs", TensorProto.FLOAT, [], [0.02]), helper.make_tensor("xz", TensorProto.UINT8, [], [128]),
             helper.make_tensor("w", TensorProto.INT8, w.shape, w.ravel().tolist()),
             helper.make_tensor("ws", TensorProto.FLOAT, [4], w_scale.tolist()),
             helper.make_tensor("wz", TensorProto.INT8, [4], [0, 0, 0, 0]),
             helper.make_tensor("ys", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("yz", TensorProto.UINT8, [], [10])]
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             helper.make_node("Conv", ["xf", "wf"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "ys", "yz"], ["y"])]
    model = make_model(nodes, [io("x", "uint8", x.shape)], [io("y", "float32")], opset=13)
    model.graph.initializer.extend(inits)
    y = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    expected = ort_run(model, {"x": x})[0]
    # conv sums in another order: a value on a rounding boundary may land one step apart
    steps = np.abs(y - expected) / 0.05
    assert np.all(steps < 1.01) and np.mean(steps > 0.5) < 0.01

"""Booleans at the boundary (convgen/dtypes.py "bool"): bool graph inputs and outputs, comparisons of other
types feeding Where, Cast to and from bool inside a model, against onnxruntime on both backends.  Inside a
model a boolean is float32 0/1; these are the paths where that meets a declared bool."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import convgen


def make_model(nodes, inputs, outputs, opset=17):
    graph = helper.make_graph(nodes, "m", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_both(model, feeds: dict, backend: str):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(**feeds)
    actual = actual if isinstance(actual, tuple) else (actual,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)
    return actual


def test_where_on_a_run_time_bool_input(backend, rng):
    shape = (2, 3, 5, 7)
    nodes = [helper.make_node("Where", ["c", "x", "y"], ["z"]), helper.make_node("Not", ["c"], ["not_c"])]
    model = make_model(nodes, [helper.make_tensor_value_info("c", TensorProto.BOOL, shape),
                               helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3, 1, 7))],
                       [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
                        helper.make_tensor_value_info("not_c", TensorProto.BOOL, None)])
    feeds = {"c": rng.random(shape) < 0.5, "x": rng.standard_normal(shape).astype(np.float32),
             "y": rng.standard_normal((1, 3, 1, 7)).astype(np.float32)}
    run_both(model, feeds, backend)


def test_integer_comparison_picks_floats(backend, rng):
    """Greater on int16 is a boolean, not an int16: Where's float output stays float (no cast back to int16)."""
    shape = (1, 4, 6, 6)
    nodes = [helper.make_node("Greater", ["a", "b"], ["gt"]), helper.make_node("Where", ["gt", "x", "y"], ["z"]),
             helper.make_node("Equal", ["a", "b"], ["eq"]), helper.make_node("Or", ["gt", "eq"], ["ge"])]
    model = make_model(nodes, [helper.make_tensor_value_info(n, TensorProto.INT16, shape) for n in "ab"]
                       + [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "xy"],
                       [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
                        helper.make_tensor_value_info("ge", TensorProto.BOOL, None)])
    feeds = {n: rng.integers(-3, 3, shape).astype(np.int16) for n in "ab"}
    feeds.update({n: rng.standard_normal(shape).astype(np.float32) for n in "xy"})
    run_both(model, feeds, backend)


def test_cast_to_bool_and_back_inside_a_model(backend, rng):
    """A run-time bool tensor in the middle of a model: Cast -> Where's condition, Cast -> float, Xor."""
    shape = (2, 8, 5)
    x = rng.standard_normal(shape).astype(np.float32)
    x[x < -0.5] = 0.0
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Cast", ["r"], ["m"], to=TensorProto.BOOL),
             helper.make_node("Where", ["m", "x", "minus"], ["picked"]),
             helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["picked", "mf"], ["z"]),
             helper.make_node("Cast", ["x"], ["nz"], to=TensorProto.BOOL), helper.make_node("Xor", ["m", "nz"], ["neg"])]
    minus = helper.make_tensor("minus", TensorProto.FLOAT, [1], [-1.0])
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("neg", TensorProto.BOOL, None)], [minus])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    z, neg = run_both(model, {"x": x}, backend)
    np.testing.assert_array_equal(neg, x < 0)


@pytest.mark.parametrize("kind", ["ReduceMax", "ReduceMin"])
def test_bool_reduction_is_any_or_all(kind, backend, rng):
    """Opset 20 reduces booleans (max: any, min: all)."""
    shape = (3, 4, 5)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph([helper.make_node(kind, ["x", "axes"], ["y"], keepdims=0)], "m",
                              [helper.make_tensor_value_info("x", TensorProto.BOOL, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.BOOL, None)], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = rng.random(shape) < 0.3
    y, = run_both(model, {"x": x}, backend)
    np.testing.assert_array_equal(y, x.any(axis=1) if kind == "ReduceMax" else x.all(axis=1))


def test_constant_outputs_of_other_types(backend):
    """Outputs known at import: a shape (int64) and Dropout's all-true mask (bool) beside a computed output."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Dropout", ["x"], ["d", "mask"])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3, 4))],
                       [helper.make_tensor_value_info("s", TensorProto.INT64, None),
                        helper.make_tensor_value_info("d", TensorProto.FLOAT, None),
                        helper.make_tensor_value_info("mask", TensorProto.BOOL, None)])
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    s, d, mask = run_both(model, {"x": x}, backend)
    assert s.tolist() == [2, 3, 4] and mask.all()


def test_runtime_takes_bool_arrays_only_for_bool_inputs():
    model = make_model([helper.make_node("Not", ["c"], ["y"])], [helper.make_tensor_value_info("c", TensorProto.BOOL, (4,))],
                       [helper.make_tensor_value_info("y", TensorProto.BOOL, None)])
    compiled = convgen.compile(convgen.from_onnx(model))
    assert compiled.signature["inputs"][0]["dtype"] == "bool"
    np.testing.assert_array_equal(compiled(np.array([True, False, False, True])), [False, True, True, False])
    with pytest.raises(TypeError, match="bool"):
        compiled(np.array([1, 0, 0, 1], np.uint8))


def test_constant_outputs_float32_cannot_hold_are_refused():
    big = helper.make_tensor("big", TensorProto.INT64, [2], [2 ** 40 + 1, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["big"], ["y"]), helper.make_node("Relu", ["x"], ["r"])], "m",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2,))],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, None)], [big])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(convgen.UnsupportedError, match="'y' is a int64 tensor known at import.*exactly"):
        convgen.from_onnx(model)

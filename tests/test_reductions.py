"""ONNX Reduce* import against onnxruntime: run-time spatial ReduceMean/ReduceMax as global pools (both
backends, axes as attribute at opset 13 and as input at opset 18, negative axes, keepdims), every
Reduce op folded when its data is an initializer, and a clear UnsupportedError for other run-time
reductions."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from conftest import assert_close
from convgen.onnx.convert_reductions import REDUCERS


def reduce_model(op: str, shape, axes, keepdims: int, opset: int, constant=None) -> bytes:
    axes_as_input = opset >= (13 if op == "ReduceSum" else 18)
    inputs, inits, attrs = ["x"], [], {"keepdims": keepdims}
    if axes_as_input and axes is not None:
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        inputs.append("axes")
    elif axes is not None:
        attrs["axes"] = list(axes)
    if constant is not None:
        inits.append(numpy_helper.from_array(constant, "x"))
    node = helper.make_node(op, inputs, ["y"], **attrs)
    graph_inputs = [] if constant is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if constant is not None:   # a graph needs a run-time input: add it to the folded reduction
        node = helper.make_node(op, inputs, ["r"], **attrs)
        graph_inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])]
        nodes = [node, helper.make_node("Add", ["r", "z"], ["y"])]
    else:
        nodes = [node]
    graph = helper.make_graph(nodes, "g", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def run_both(data: bytes, feeds: dict, backend: str):
    expected = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    actual = convgen.compile(convgen.from_onnx(data), backend=backend)(*feeds.values())
    return actual, expected


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(["ReduceMean", "ReduceMax"]), spatial=st.lists(st.integers(1, 7), min_size=1, max_size=3),
       channels=st.integers(1, 5), keepdims=st.integers(0, 1), negative=st.booleans(),
       opset=st.sampled_from([13, 18]))
def test_spatial_reductions_are_global_pools(op, spatial, channels, keepdims, negative, opset, backend):
    shape = [2, channels] + spatial
    rank = len(shape)
    axes = [a - rank if negative else a for a in range(2, rank)][::-1]
    x = np.random.default_rng(len(spatial)).standard_normal(shape).astype(np.float32)
    actual, expected = run_both(reduce_model(op, shape, axes, keepdims, opset), {"x": x}, backend)
    assert_close(actual, expected)


@pytest.mark.parametrize("op", sorted(REDUCERS))
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([-1, 0], 0), (None, 0)])
def test_every_reduction_folds_like_onnxruntime(op, axes, keepdims):
    constant = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    data = reduce_model(op, None, axes, keepdims, 18, constant=constant)
    z = np.array([0.25], np.float32)
    actual, expected = run_both(data, {"z": z}, "c")
    assert_close(actual, expected)


def test_noop_with_empty_axes_passes_through(backend):
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    actual, expected = run_both(data, {"x": x}, backend)
    assert_close(actual, expected)


@pytest.mark.parametrize("op,axes", [("ReduceMean", [1]), ("ReduceSum", [2, 3]), ("ReduceMax", [2])])
def test_other_run_time_reductions_are_refused_by_name(op, axes):
    with pytest.raises(convgen.UnsupportedError, match=op):
        convgen.from_onnx(reduce_model(op, [1, 2, 3, 4], axes, 1, 18))


def test_out_of_range_axis_is_a_shape_error():
    with pytest.raises(convgen.ShapeError, match="axis 4"):
        convgen.from_onnx(reduce_model("ReduceMean", [1, 2, 3, 4], [4], 1, 18))

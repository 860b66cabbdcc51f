"""from_onnx on damaged models: truncated and random bytes, and valid models mutated one field at a
time (dimensions, ranks, attributes, initializers, edges, op types, element types).  Each import
either succeeds — and the graph then lowers and renders, or says why not — or raises a clear Python
exception; never a crash, a hang or a runaway allocation."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import onnx
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import lower, passes
from convgen.backends import c as c_backend
from convgen.target import host

from conftest import capped_settings

CLEAR = (convgen.ConvgenError, ValueError, TypeError, NotImplementedError, FileNotFoundError)


def valid_model() -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm, with Add of a second input: every kind of field."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4), "fc": rng.standard_normal((5, 64)),
             "fcb": rng.standard_normal(5)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1],
                         kernel_shape=[3, 3], dilations=[1, 1], group=1),
        helper.make_node("Add", ["c", "skip"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                        helper.make_tensor_value_info("skip", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


VALID = valid_model()
VALID_BYTES = VALID.SerializeToString()
ABSURD = [0, -1, 1, 2, 7, 2 ** 31, 2 ** 40, 10 ** 18]


def _import(model) -> None:
    """from_onnx, then (if it accepted the model) the compiler's front half; only clear errors allowed."""
    try:
        graph = convgen.from_onnx(model)
        c_backend.render_source(lower.lower(passes.optimize(graph), host(), 1))
    except CLEAR:
        pass


def test_the_unmutated_model_imports_and_runs():
    graph = convgen.from_onnx(VALID)
    model = convgen.compile(graph)
    assert model(np.ones((1, 3, 8, 8), np.float32), np.ones((1, 4, 8, 8), np.float32)).shape == (1, 5)


@given(st.integers(0, len(VALID_BYTES) - 1))
@capped_settings(100)
def test_truncated_bytes(length):
    _import(VALID_BYTES[:length])


@given(st.binary(max_size=400))
@capped_settings(100)
def test_random_bytes(data):
    _import(data)


@given(st.lists(st.tuples(st.integers(0, len(VALID_BYTES) - 1), st.integers(0, 255)), min_size=1, max_size=8))
@capped_settings(100)
def test_flipped_bytes(edits):
    data = bytearray(VALID_BYTES)
    for position, value in edits:
        data[position] = value
    _import(bytes(data))


def _mutate_dims(model, draw):
    values = list(model.graph.input) + list(model.graph.output)
    value = draw(st.sampled_from(values))
    dims = value.type.tensor_type.shape.dim
    if draw(st.booleans()) and len(dims):
        dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.sampled_from(ABSURD))
    elif draw(st.booleans()):
        dims.add().dim_value = draw(st.sampled_from(ABSURD))           # one more axis
    elif len(dims):
        del dims[draw(st.integers(0, len(dims) - 1))]                  # one fewer
    else:
        dims.add().dim_param = "N"                                      # symbolic


def _mutate_attribute(model, draw):
    if not model.graph.node:
        return
    node = draw(st.sampled_from(list(model.graph.node)))
    if not node.attribute:
        node.attribute.append(helper.make_attribute("axis", draw(st.sampled_from(ABSURD))))
        return
    attribute = draw(st.sampled_from(list(node.attribute)))
    choice = draw(st.integers(0, 3))
    if choice == 0 and attribute.ints:
        attribute.ints[draw(st.integers(0, len(attribute.ints) - 1))] = draw(st.sampled_from(ABSURD))
    elif choice == 1 and attribute.ints:
        attribute.ints.append(draw(st.sampled_from(ABSURD)))
    elif choice == 2:
        node.attribute.remove(attribute)
    else:
        replacement = helper.make_attribute(attribute.name, draw(st.sampled_from([1.5, "text", [1.0, 2.0], 3])))
        node.attribute.remove(attribute)
        node.attribute.append(replacement)


def _mutate_initializer(model, draw):
    if not model.graph.initializer:
        return
    tensor = draw(st.sampled_from(list(model.graph.initializer)))
    choice = draw(st.integers(0, 4))
    if choice == 0:
        model.graph.initializer.remove(tensor)                          # missing initializer
    elif choice == 1:
        tensor.raw_data = tensor.raw_data[: draw(st.integers(0, len(tensor.raw_data)))]   # truncated data
    elif choice == 2 and tensor.dims:
        tensor.dims[draw(st.integers(0, len(tensor.dims) - 1))] = draw(st.sampled_from(ABSURD))  # absurd dims
    elif choice == 3:
        tensor.data_type = draw(st.sampled_from([TensorProto.INT64, TensorProto.STRING, TensorProto.UNDEFINED,
                                                 TensorProto.DOUBLE, TensorProto.BOOL, 999]))
    else:
        del tensor.dims[:]                                              # a scalar of many bytes


def _mutate_edges(model, draw):
    nodes = list(model.graph.node)
    if not nodes:
        return
    node = draw(st.sampled_from(nodes))
    names = [o for n in nodes for o in n.output] + ["x", "skip", "w", "nowhere", ""]
    choice = draw(st.integers(0, 3))
    if choice == 0 and node.input:
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))   # cycles too
    elif choice == 1:
        node.input.append(draw(st.sampled_from(names)))
    elif choice == 2 and node.output:
        node.output[0] = draw(st.sampled_from(names))                 # defined twice / dangling
    else:
        model.graph.node.remove(node)


def _mutate_types(model, draw):
    if draw(st.booleans()) and model.graph.node:
        draw(st.sampled_from(list(model.graph.node))).op_type = draw(st.sampled_from(
            ["Conv", "MaxPool", "Gemm", "Relu", "Softmax", "Concat", "Reshape", "NoSuchOp", "Loop", ""]))
    else:
        value = draw(st.sampled_from(list(model.graph.input)))
        value.type.tensor_type.elem_type = draw(st.sampled_from([TensorProto.INT64, TensorProto.DOUBLE,
                                                                TensorProto.FLOAT16, TensorProto.STRING, 0]))


def _mutate_opset(model, draw):
    model.opset_import[0].version = draw(st.sampled_from([1, 6, 7, 11, 13, 99, -1]))


MUTATIONS = [_mutate_dims, _mutate_attribute, _mutate_initializer, _mutate_edges, _mutate_types, _mutate_opset]


@given(st.data())
@capped_settings(300)
def test_mutated_models(data):
    model = copy.deepcopy(VALID)
    for mutate in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3), label="mutations"):
        mutate(model, data.draw)
    _import(model)
    _import(model.SerializeToString())


def _absurd(nodes, inputs, initializers=()):
    graph = helper.make_graph(nodes, "absurd", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_absurd_shapes_fail_before_allocating():
    """Import-time evaluation refuses to build huge arrays; huge declared inputs stop at lowering."""
    huge = np.array([60000, 60000], np.int64)                   # 14 GB if materialized
    cases = [
        _absurd([helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
                [("x", [60000, 60000])], [("s", huge)]),
        _absurd([helper.make_node("Range", ["a", "b", "d"], ["y"])], [],
                [("a", np.float32(0)), ("b", np.float32(1e12)), ("d", np.float32(1))]),
        _absurd([helper.make_node("Range", ["a", "b", "d"], ["y"])], [],
                [("a", np.float32(0)), ("b", np.float32(np.inf)), ("d", np.float32(1))]),
        _absurd([helper.make_node("Add", ["x", "one"], ["y"])], [("x", [1, 3, 60000, 60000])],
                [("one", np.ones((1, 1, 1, 1), np.float32))]),
    ]
    for model in cases:
        try:
            graph = convgen.from_onnx(model)
        except CLEAR as error:
            assert "limit" in str(error) or "malformed" in str(error) or "inf" in str(error), error
            continue
        c_backend.render_source(lower.lower(passes.optimize(graph), host(), 1))  # run-time operands: no allocation
    huge_input = _absurd([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])], [("x", [1, 1, 2 ** 40, 3])])
    with pytest.raises(convgen.UnsupportedError, match="past 2\\^31 - 1"):
        convgen.compile(convgen.from_onnx(huge_input))


def test_external_data_outside_the_model_directory_is_refused(tmp_path):
    weights = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    model = _absurd([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", [1, 3, 5, 5])])
    model.graph.initializer.append(weights)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(convgen.ConvgenError, match="outside the directory"):
        convgen.from_onnx(tmp_path / "m.onnx")
    with pytest.raises(convgen.UnsupportedError, match="external file"):
        convgen.from_onnx(model.SerializeToString())

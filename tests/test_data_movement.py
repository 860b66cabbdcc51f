"""reshape (a view) and transpose (a copy kernel): shape rules against onnxruntime and torch, kernels on
both backends against torch and the references, ShuffleNet's channel shuffle."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

import convgen
from convgen import nn, ops
from convgen.ir import TensorType

from conftest import capped_settings, reference_outputs


def onnx_reshape(x: np.ndarray, target) -> np.ndarray:
    """onnxruntime's Reshape (shape given as a constant input)."""
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    graph = helper.make_graph([node], "reshape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("shape", TensorProto.INT64, [len(target)], list(target))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("shape, target", [
    ((2, 3, 4), (0, -1)), ((2, 3, 4), (0, 4, -1)), ((2, 3, 4), (-1,)), ((2, 3, 4), (0, 0, 2, 2)),
    ((2, 3, 4), (4, -1, 3)), ((1, 12), (0, 3, 2, 2)), ((5,), (1, 5, 1)),
])
def test_reshape_rule_matches_onnxruntime(shape, target):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    attrs = ops.ReshapeAttrs(target)
    expected = onnx_reshape(x, target)
    (inferred,) = ops.get("reshape").infer("t", attrs, [TensorType(shape)])
    assert inferred.shape == expected.shape
    np.testing.assert_array_equal(ops.run_reference("reshape", attrs, x), expected)


@pytest.mark.parametrize("shape, target, message", [
    ((2, 3, 4), (5, -1), r"24 is not divisible by 5"),
    ((2, 3, 4), (-1, -1), r"at most one -1"),
    ((2, 3, 4), (2, 3, 5), r"\(24 elements\) to \(2, 3, 5\) \(30 elements\)"),
    ((2, 3, 4), (6, 0), r"\(24 elements\) to \(6, 0\) \(18 elements\)"),
    ((2, 3), (2, 3, 0), r"axis 2 is 0 .* has no axis 2"),
    ((2, 3), (-2, -3), r"sizes >= 1"),
])
def test_reshape_errors_name_the_numbers(shape, target, message):
    with pytest.raises(convgen.ShapeError, match=message):
        ops.get("reshape").infer("layer 'r' (reshape)", ops.ReshapeAttrs(target), [TensorType(shape)])


def test_transpose_rule_and_errors():
    infer = ops.get("transpose").infer
    assert infer("t", ops.TransposeAttrs(), [TensorType((2, 3, 4))])[0].shape == (4, 3, 2)  # ONNX: reversed
    assert infer("t", ops.TransposeAttrs((0, -1, 1)), [TensorType((2, 3, 4))])[0].shape == (2, 4, 3)
    with pytest.raises(convgen.ShapeError, match=r"perm \(0, 0, 1\) is not a permutation of the 3 axes"):
        infer("layer 't' (transpose)", ops.TransposeAttrs((0, 0, 1)), [TensorType((2, 3, 4))])


@capped_settings(15)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=5), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_transpose_kernel_matches_torch(backend, shape, data, seed):
    perm = data.draw(st.permutations(range(len(shape))))
    x_in = nn.Input(tuple(shape))
    graph = nn.graph(x_in.permute(*perm), name="permute")
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = convgen.compile(graph, backend=backend)(x)
    np.testing.assert_array_equal(got, torch.from_numpy(x).permute(*perm).numpy())
    np.testing.assert_array_equal(got, reference_outputs(graph, x)[0])


@pytest.mark.parametrize("groups, shape", [(2, (1, 4, 3, 3)), (3, (2, 12, 5, 7)), (4, (1, 8, 1, 1)), (1, (2, 3, 4))])
def test_channel_shuffle_matches_torch(backend, groups, shape):
    x = np.random.default_rng(groups).standard_normal(shape).astype(np.float32)
    graph = nn.Sequential(nn.ChannelShuffle(groups)).to_graph(shape, name="shuffle")
    assert [n.op for n in graph.nodes] == ["reshape", "transpose", "reshape"]
    model = convgen.compile(graph, backend=backend)
    assert [n.op for n in model.graph.nodes] == ["reshape", "transpose", "reshape"]
    expected = TF.channel_shuffle(torch.from_numpy(x), groups).numpy()
    np.testing.assert_array_equal(model(x), expected)
    np.testing.assert_array_equal(reference_outputs(graph, x)[0], expected)


def test_reshape_views_in_a_dag(backend, rng):
    """Chained views, a view of an input as an output (a copy), a view read by two kernels."""
    x_in = nn.Input((2, 6, 4), name="x")
    flat = x_in.reshape(2, -1)
    back = nn.relu(flat).view((2, 3, 2, 4))
    swapped = nn.transpose(back, 1, -1)
    graph = nn.graph(flat, swapped, nn.reshape(swapped, 4, -1) * 2.0, nn.permute(back, 3, 2, 1, 0), name="views")
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    t = torch.from_numpy(x)
    tb = torch.relu(t.reshape(2, -1)).view(2, 3, 2, 4)
    expected = [t.reshape(2, -1), tb.transpose(1, -1), tb.transpose(1, -1).reshape(4, -1) * 2.0, tb.permute(3, 2, 1, 0)]
    for got, want, ref in zip(model(x), expected, reference_outputs(graph, x)):
        np.testing.assert_array_equal(got, want.numpy())
        np.testing.assert_array_equal(got, ref)


def test_dsl_reshape_and_transpose_errors():
    x_in = nn.Input((2, 6))
    with pytest.raises(convgen.ShapeError, match="no zero-size axes"):
        x_in.reshape(0, 12)
    with pytest.raises(convgen.ShapeError, match="dimension out of range"):
        x_in.transpose(0, 2)
    with pytest.raises(convgen.ShapeError, match="not divisible by groups=4"):
        nn.channel_shuffle(x_in, 4)
    with pytest.raises(TypeError, match="sizes must be ints"):
        x_in.reshape(2.5, 4)


def test_reshape_and_transpose_of_a_constant(backend, rng):
    """Views of a constant read the weights blob; a transposed constant is a kernel on the blob."""
    x_in = nn.Input((2, 3, 4), name="x")
    table = rng.standard_normal((4, 3)).astype(np.float32)
    tracer = x_in.tracer
    flat = tracer.emit("flat", "reshape", ops.ReshapeAttrs((12,)), [tracer.constant("table", table)])
    swapped = tracer.emit("swapped", "transpose", ops.TransposeAttrs(), [tracer.constant("table", table)])
    graph = nn.graph(x_in * swapped, flat.reshape(3, 4) + 0.0, flat, name="constant_views")
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    got = convgen.compile(graph, backend=backend)(x)
    expected = (x * table.T, table.reshape(3, 4), table.reshape(12))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)

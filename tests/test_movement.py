"""Data movement on run-time values (convgen/ops/movement.py, convgen/onnx/convert_movement.py): Slice,
Split, Gather with constant indices, Expand, Tile, DepthToSpace / SpaceToDepth, nearest Resize by whole
factors; ONNX node models against onnxruntime, torch-exported modules against torch, both backends."""
from __future__ import annotations

import io

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import ops
from convgen.trace import Tracer

from conftest import capped_settings


def run_both(model, x: np.ndarray, backend: str):
    """(convgen's outputs, onnxruntime's) for one float32 input x."""
    session = onnxruntime.InferenceSession(model.SerializeToString())
    expected = session.run(None, {"x": x})
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    return (actual if isinstance(actual, tuple) else (actual,)), expected


def node_model(op, x_shape, n_outputs=1, constants=(), inputs=("x",), opset=18, **attrs):
    names = list(inputs) + [name for name, _ in constants]
    node = helper.make_node(op, names, [f"y{j}" for j in range(n_outputs)], **attrs)
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(f"y{j}", TensorProto.FLOAT, None) for j in range(n_outputs)],
                              [numpy_helper.from_array(np.asarray(v), name) for name, v in constants])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check(model, x, backend):
    actual, expected = run_both(model, x, backend)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data())
@capped_settings(25)
def test_slice_matches_onnxruntime(shape, data, backend):
    """Constant starts/ends/axes/steps, negative ones included; axes with nothing left are skipped."""
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank, unique_by=lambda a: a % rank))
    starts, ends, steps = [], [], []
    for a in axes:
        size = shape[a % rank]
        step = data.draw(st.sampled_from([1, 2, 3, -1, -2]))
        start = data.draw(st.integers(-size - 2, size + 2))
        end = data.draw(st.integers(-size - 2, size + 2) | st.sampled_from([2 ** 62, -2 ** 62]))
        first, count = convgen.shapes.slice_axis(start, end, step, size)
        if count < 1:
            start, end = (0, size) if step > 0 else (size - 1, -size - 1)
        starts.append(start), ends.append(end), steps.append(step)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    constants = [("starts", np.array(starts, np.int64)), ("ends", np.array(ends, np.int64)),
                 ("axes", np.array(axes, np.int64)), ("steps", np.array(steps, np.int64))]
    check(node_model("Slice", shape, constants=constants), x, backend)


@pytest.mark.parametrize("case", [dict(split=[2, 3, 1]), dict(), dict(num_outputs=3), dict(axis=-1, split=[1, 4])])
def test_split_matches_onnxruntime(case, backend, rng):
    """Sizes as an input, equal parts (opset 13: one per output), num_outputs (opset 18)."""
    x = rng.standard_normal((2, 6, 5)).astype(np.float32)
    attrs = {"axis": 1, **case}
    sizes = attrs.pop("split", None)
    n = len(sizes) if sizes is not None else 3
    constants = [("split", np.array(sizes, np.int64))] if sizes is not None else []
    opset = 13 if sizes is None and "num_outputs" not in attrs else 18
    check(node_model("Split", x.shape, n, constants=constants, opset=opset, **attrs), x, backend)


@pytest.mark.parametrize("indices,axis", [(np.array(2), 1), (np.array([0, 2, 4]), 1), (np.array([3, -1, 0, 3]), 2),
                                          (np.array([[1, 0], [2, 2]]), 0), (np.array([4, 3, 2, 1, 0]), 2)])
def test_gather_constant_indices(indices, axis, backend, rng):
    x = rng.standard_normal((3, 5, 5)).astype(np.float32)
    check(node_model("Gather", x.shape, constants=[("i", indices.astype(np.int64))], axis=axis), x, backend)


@pytest.mark.parametrize("shape,target", [((3, 1), (2, 3, 4)), ((1, 4, 1), (1, 1)), ((2, 1, 3), (2, 5, 3))])
def test_expand(shape, target, backend, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    check(node_model("Expand", shape, constants=[("s", np.array(target, np.int64))]), x, backend)


@pytest.mark.parametrize("shape,repeats", [((2, 3), (2, 3)), ((1, 2, 3, 2), (1, 3, 1, 2)), ((4,), (3,))])
def test_tile(shape, repeats, backend, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    check(node_model("Tile", shape, constants=[("r", np.array(repeats, np.int64))]), x, backend)


@given(b=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       mode=st.sampled_from(["DCR", "CRD"]))
@capped_settings(10)
def test_depth_and_space_round_trip(b, c, h, w, mode, backend):
    x = np.random.default_rng(1).standard_normal((2, c * b * b, h, w)).astype(np.float32)
    check(node_model("DepthToSpace", x.shape, blocksize=b, mode=mode), x, backend)
    y = np.random.default_rng(2).standard_normal((2, c, h * b, w * b)).astype(np.float32)
    check(node_model("SpaceToDepth", y.shape, blocksize=b), y, backend)


@pytest.mark.parametrize("coordinates,rounding,scales", [
    ("asymmetric", "floor", [1, 1, 2, 2]), ("half_pixel", "round_prefer_floor", [1, 1, 2, 3]),
    ("pytorch_half_pixel", "round_prefer_ceil", [1, 1, 3, 2]), ("half_pixel", "round_prefer_floor", [1, 1, 0.5, 0.5]),
    ("asymmetric", "floor", [1, 1, 0.5, 1]), ("tf_half_pixel_for_nn", "floor", [1, 1, 2, 2])])
def test_nearest_resize_whole_factors(coordinates, rounding, scales, backend, rng):
    x = rng.standard_normal((1, 2, 4, 6)).astype(np.float32)
    constants = [("roi", np.array([], np.float32)), ("scales", np.array(scales, np.float32))]
    model = node_model("Resize", x.shape, constants=constants, mode="nearest",
                       coordinate_transformation_mode=coordinates, nearest_mode=rounding)
    try:
        check(model, x, backend)
    except convgen.UnsupportedError:
        sources = [convgen.shapes.nearest_sources(d, int(d * s), s, coordinates, rounding)
                   for d, s in zip(x.shape, scales)]
        pytest.fail(f"refused although the sources are {sources}")


class _Blocks(torch.nn.Module):
    """ESPCN's tail and a U-Net's upsampling: conv, PixelShuffle, nearest upsampling, PixelUnshuffle."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle, self.unshuffle = torch.nn.PixelShuffle(2), torch.nn.PixelUnshuffle(2)
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        y = self.shuffle(self.conv(x))
        return self.unshuffle(self.up(y))[:, 1:, 1:-1]


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_exported_pixel_shuffle_and_upsampling(dynamo, backend):
    torch.manual_seed(0)
    module = _Blocks().eval()
    x = torch.randn(1, 3, 6, 5)
    buffer = io.BytesIO()
    if dynamo:
        program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
        buffer.write(program.model_proto.SerializeToString())
    else:
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)
    compiled = convgen.compile(convgen.from_onnx(buffer.getvalue()), backend=backend)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_slice_reference_and_kernel_agree_on_negative_steps(backend, rng):
    x = rng.standard_normal((2, 7, 5)).astype(np.float32)
    attrs = ops.SliceAttrs((1, 6, 4), (1, -2, -1), (1, 4, 5))
    tracer = Tracer()
    t = tracer.input(x.shape, "x")
    y = tracer.emit("s", "slice", attrs, [t])
    graph = convgen.ir.Graph("s", tuple(tracer.inputs), tuple(tracer.nodes), (y.value,), {})
    np.testing.assert_array_equal(convgen.compile(graph, backend=backend)(x), x[1:2, 6::-2, ::-1])
    np.testing.assert_array_equal(ops.run_reference("slice", attrs, x), x[1:2, 6::-2, ::-1])


def _where_model(condition, x_shape, other):
    nodes = [helper.make_node("Where", ["c", "x", "o"], ["y0"]), helper.make_node("Where", ["c", "o", "x"], ["y1"])]
    graph = helper.make_graph(nodes, "where", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(f"y{j}", TensorProto.FLOAT, None) for j in range(2)],
                              [numpy_helper.from_array(condition, "c"), numpy_helper.from_array(other, "o")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


@pytest.mark.parametrize("value", [True, False])
def test_where_with_a_constant_condition(value, backend, rng):
    """The condition picks one side everywhere (run-time x or a constant), broadcast to the output shape."""
    x = rng.standard_normal((2, 1, 4)).astype(np.float32)
    model = _where_model(np.full((3, 1), value), x.shape, rng.standard_normal((1, 4)).astype(np.float32))
    check(model, x, backend)


def test_where_with_a_mixed_constant_condition(backend, rng):
    """A mask that picks both sides: the where layer reads it as 0/1 (broadcast against x and the other)."""
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    check(_where_model(np.array([[True], [False], [True]]), x.shape, rng.standard_normal((2,)).astype(np.float32)),
          x, backend)


def test_constant_of_shape_feeds_a_run_time_op(backend, rng):
    """ConstantOfShape is evaluated at import (its shape is known); its value joins run-time arithmetic."""
    x = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["k"], value=numpy_helper.from_array(np.array([1.5], np.float32))),
             helper.make_node("Add", ["x", "k"], ["y0"])]
    graph = helper.make_graph(nodes, "cos", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array([2, 3], np.int64), "s")])
    check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)]), x, backend)

"""pad: constant / reflect / edge / wrap padding and negative-pad crops on any axes.  The reference
against np.pad, torch.nn.functional.pad and onnxruntime's Pad; the kernels on both backends against
the reference and torch; the DSL's F.pad and padding layers."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper

import convgen
from convgen import nn, ops, shapes

from conftest import capped_settings, reference_outputs

TORCH_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@st.composite
def pad_cases(draw, max_rank: int = 4):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=max_rank)))
    mode = draw(st.sampled_from(shapes.PAD_MODES))
    pads = tuple((draw(st.integers(-2, 3)), draw(st.integers(-2, 3))) if draw(st.booleans()) else (0, 0)
                 for _ in shape)
    try:
        shapes.pad_shape("t", shape, pads, mode)
    except convgen.ShapeError:
        assume(False)
    return shape, pads, mode, draw(st.sampled_from([0.0, -1.5]))


def torch_flat(pads) -> list[int]:
    """(begin, end) per axis -> F.pad's list, last axis first."""
    return [p for pair in reversed(pads) for p in pair]


def onnx_pad(x: np.ndarray, pads, mode: str, value: float) -> np.ndarray:
    """onnxruntime's Pad (opset 19: pads and constant_value as inputs, wrap mode)."""
    flat = [b for b, _ in pads] + [e for _, e in pads]
    node = helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode=mode)
    graph = helper.make_graph([node], "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("pads", TensorProto.INT64, [len(flat)], flat),
                               helper.make_tensor("value", TensorProto.FLOAT, [], [value])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@capped_settings(60)
@given(case=pad_cases(), seed=st.integers(0, 2**32 - 1))
def test_reference_matches_onnxruntime_and_shape_rule(case, seed):
    shape, pads, mode, value = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = ops.run_reference("pad", ops.PadAttrs(pads, mode, value), x)
    np.testing.assert_array_equal(got, onnx_pad(x, pads, mode, value))
    (inferred,) = ops.get("pad").infer("t", ops.PadAttrs(pads, mode), [convgen.TensorType(shape)])
    assert inferred.shape == got.shape


@capped_settings(40)
@given(spatial=st.lists(st.integers(2, 5), min_size=1, max_size=3), mode=st.sampled_from(shapes.PAD_MODES),
       data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_reference_matches_torch_pad(spatial, mode, data, seed):
    """torch pads the trailing 1-3 axes of (N, C, ...) in every mode (constant: any pads, crops too)."""
    low = -1 if mode == "constant" else 0
    high = {"reflect": min(spatial) - 1, "wrap": min(spatial)}.get(mode, 3)
    pads = ((0, 0), (0, 0)) + tuple((data.draw(st.integers(low, high)), data.draw(st.integers(low, high)))
                                    for _ in spatial)
    x = np.random.default_rng(seed).standard_normal((2, 3, *spatial)).astype(np.float32)
    assume(all(size + min(b, 0) + min(e, 0) >= 1 for size, (b, e) in zip(x.shape, pads)))  # crops leave some
    got = ops.run_reference("pad", ops.PadAttrs(pads, mode, 0.25), x)
    value = 0.25 if mode == "constant" else None
    np.testing.assert_array_equal(got, TF.pad(torch.from_numpy(x), torch_flat(pads[2:]), TORCH_MODES[mode], value))


@capped_settings(15)
@given(case=pad_cases(), seed=st.integers(0, 2**32 - 1))
def test_pad_kernels_match_the_reference(backend, case, seed):
    shape, pads, mode, value = case
    x_in = nn.Input(shape)
    graph = nn.graph(x_in.tracer.emit("pad", "pad", ops.PadAttrs(pads, mode, value), [x_in]), name="pad")
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = convgen.compile(graph, backend=backend)(x)
    np.testing.assert_array_equal(got, reference_outputs(graph, x)[0])


@pytest.mark.parametrize("layer, torch_layer", [
    (lambda: nn.ZeroPad2d((1, 2, 0, 3)), lambda: torch.nn.ZeroPad2d((1, 2, 0, 3))),
    (lambda: nn.ConstantPad2d(2, 3.5), lambda: torch.nn.ConstantPad2d(2, 3.5)),
    (lambda: nn.ReflectionPad2d((2, 1, 3, 0)), lambda: torch.nn.ReflectionPad2d((2, 1, 3, 0))),
    (lambda: nn.ReplicationPad2d(3), lambda: torch.nn.ReplicationPad2d(3)),
    (lambda: nn.CircularPad2d((1, 4, 2, 2)), lambda: torch.nn.CircularPad2d((1, 4, 2, 2))),
    (lambda: nn.ReflectionPad1d(3), lambda: torch.nn.ReflectionPad1d(3)),
    (lambda: nn.ReplicationPad3d((1, 0, 0, 2, 1, 1)), lambda: torch.nn.ReplicationPad3d((1, 0, 0, 2, 1, 1))),
    (lambda: nn.ConstantPad1d((-1, 2), 1.0), lambda: torch.nn.ConstantPad1d((-1, 2), 1.0)),
])
def test_padding_layers_match_torch(backend, layer, torch_layer, rng):
    module = layer()
    shape = {1: (2, 3, 7), 2: (2, 3, 5, 6), 3: (1, 2, 4, 3, 5)}[module.ndim]
    x = rng.standard_normal(shape).astype(np.float32)
    model = convgen.compile(nn.Sequential(module, nn.ReLU()).to_graph(shape, name="padding"), backend=backend)
    np.testing.assert_array_equal(model(x), torch.relu(torch_layer()(torch.from_numpy(x))).numpy())


def test_reflection_pad_before_a_convolution(backend, rng):
    """The ResNet-style generator pattern: reflect-pad, then a valid conv."""
    net = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3))
    x = rng.standard_normal((1, 3, 9, 8)).astype(np.float32)
    got = convgen.compile(net.to_graph(x.shape, name="refconv"), backend=backend)(x)
    conv = net[1]
    want = TF.conv2d(TF.pad(torch.from_numpy(x).double(), [1, 1, 1, 1], "reflect"),
                     torch.from_numpy(conv.param("weight")).double(), torch.from_numpy(conv.param("bias")).double())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, pads, mode, message", [
    ((2, 4), ((0, 0), (4, 0)), "reflect", r"axis 1: reflect pads \(4, 0\) exceed 3"),
    ((2, 4), ((0, 0), (2, -2)), "reflect", r"axis 1: reflect pads \(2, -2\) exceed 1"),
    ((2, 4), ((0, 0), (5, 0)), "wrap", r"wrap pads \(5, 0\) exceed 4"),
    ((2, 4), ((-1, -1), (0, 0)), "constant", r"axis 0: crops \(-1, -1\) remove all 2 elements"),
    ((2, 4), ((0, 0),), "constant", r"1 \(begin, end\) pad pairs for an input of rank 2"),
    ((2, 4), ((0, 0), (0, 0)), "symmetric", r"unknown pad mode 'symmetric'"),
])
def test_pad_errors_name_axis_and_numbers(shape, pads, mode, message):
    with pytest.raises(convgen.ShapeError, match=message):
        ops.get("pad").infer("layer 'p' (pad)", ops.PadAttrs(pads, mode), [convgen.TensorType(shape)])


def test_dsl_pad_errors():
    x_in = nn.Input((1, 2, 3))
    with pytest.raises(convgen.ShapeError, match=r"pairs for at most 3 axes"):
        nn.pad(x_in, (1, 1, 1))
    with pytest.raises(convgen.ConvgenError, match="unknown mode 'edge'"):
        nn.pad(x_in, (1, 1), mode="edge")

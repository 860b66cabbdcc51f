"""lrn: local response normalization.  The reference against onnxruntime's LRN (ONNX window) and
torch's LocalResponseNorm (torch window; they differ for even sizes); kernels on both backends."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

import convgen
from convgen import nn, ops

from conftest import assert_close, capped_settings, reference_outputs

lrn_params = dict(size=st.integers(1, 6), alpha=st.sampled_from([1e-4, 0.01, 0.5]), beta=st.sampled_from([0.5, 0.75, 1.0]),
                  bias=st.sampled_from([1.0, 2.0]))
shapes_ = st.tuples(st.integers(1, 2), st.integers(1, 9)).flatmap(
    lambda nc: st.lists(st.integers(1, 5), min_size=0, max_size=2).map(lambda sp: nc + tuple(sp)))


def onnx_lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX LRN by onnxruntime (4-D inputs and odd sizes only; onnx's own reference loops over the
    batch axis instead of the channels, so it is no oracle)."""
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    graph = helper.make_graph([node], "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@capped_settings(30)
@given(shape=shapes_.filter(lambda s: len(s) == 4), seed=st.integers(0, 2**32 - 1), **lrn_params)
def test_reference_matches_onnxruntime(shape, size, alpha, beta, bias, seed):
    size = size | 1
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    got = ops.run_reference("lrn", ops.LRNAttrs(size, alpha, beta, bias), x)
    assert_close(got, onnx_lrn(x, size, alpha, beta, bias))


@capped_settings(30)
@given(shape=shapes_.filter(lambda s: len(s) >= 3), seed=st.integers(0, 2**32 - 1), **lrn_params)
def test_onnx_window_is_the_torch_window_mirrored(shape, size, alpha, beta, bias, seed):
    """ONNX puts (size-1)//2 channels before c, torch size//2: torch on the channel-reversed input."""
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    got = ops.run_reference("lrn", ops.LRNAttrs(size, alpha, beta, bias), x)
    flipped = torch.from_numpy(x[:, ::-1].copy()).double()
    assert_close(got, torch.nn.LocalResponseNorm(size, alpha, beta, bias)(flipped).numpy()[:, ::-1])


@capped_settings(30)
@given(shape=shapes_.filter(lambda s: len(s) >= 3), seed=st.integers(0, 2**32 - 1), **lrn_params)
def test_reference_matches_torch(shape, size, alpha, beta, bias, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    got = ops.run_reference("lrn", ops.LRNAttrs(size, alpha, beta, bias, before=size // 2), x)
    expected = torch.nn.LocalResponseNorm(size, alpha, beta, bias)(torch.from_numpy(x).double())
    assert_close(got, expected.numpy())


@capped_settings(10)
@given(shape=shapes_, torch_window=st.booleans(), seed=st.integers(0, 2**32 - 1), **lrn_params)
def test_lrn_kernels_match_the_reference(backend, shape, torch_window, size, alpha, beta, bias, seed):
    attrs = ops.LRNAttrs(size, alpha, beta, bias, before=size // 2 if torch_window else None)
    x_in = nn.Input(shape)
    graph = nn.graph(x_in.tracer.emit("lrn", "lrn", attrs, [x_in]), name="lrn")
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    assert_close(convgen.compile(graph, backend=backend)(x), reference_outputs(graph, x)[0])


def test_alexnet_style_lrn_layer_matches_torch(backend, rng):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.LocalResponseNorm(4, alpha=1e-3, beta=0.75, k=2.0))
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32)
    got = convgen.compile(net.to_graph(x.shape, name="alexnet_block"), backend=backend)(x)
    conv = net[0]
    t = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(conv.param("weight")).double(),
                                              torch.from_numpy(conv.param("bias")).double()))
    assert_close(got, torch.nn.LocalResponseNorm(4, 1e-3, 0.75, 2.0)(t).numpy())


@pytest.mark.parametrize("attrs, shape, message", [
    (ops.LRNAttrs(0), (1, 3, 4), r"size must be >= 1"),
    (ops.LRNAttrs(3, before=3), (1, 3, 4), r"before < size, got size=3, before=3"),
    (ops.LRNAttrs(3), (5,), r"rank >= 2"),
])
def test_lrn_errors(attrs, shape, message):
    with pytest.raises(convgen.ShapeError, match=message):
        ops.get("lrn").infer("layer 'l' (lrn)", attrs, [convgen.TensorType(shape)])

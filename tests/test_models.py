"""Whole networks against the same networks in torch, with the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import convgen
import convgen.functional as F
from convgen import nn

from conftest import assert_close
from models import BasicBlock, lenet5, numpy_state, randomize_batch_norm, torch_basic_block, torch_lenet5


@pytest.mark.parametrize("batch", [1, 3])
def test_lenet5_matches_torch(backend, batch, rng):
    torch.manual_seed(0)
    reference = torch_lenet5().eval()
    net = lenet5()
    net.load_state_dict(numpy_state(reference))
    model = convgen.compile(net.to_graph((batch, 1, 32, 32), name="lenet5"), backend=backend)
    x = rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert_close(model(x), expected)


def test_lenet5_own_weights_match_reference_interpreter(backend, rng):
    """The DSL's seeded initial weights, compiled, agree with the op-by-op numpy references."""
    graph = lenet5().to_graph((2, 1, 32, 32), name="lenet5")
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    values = {"input": x, **graph.constants}
    for node in graph.nodes:
        values[node.output] = convgen.ops.run_reference(node.op, node.attrs, *(values[v] for v in node.inputs))
    assert_close(convgen.compile(graph, backend=backend)(x), values[graph.outputs[0]])


@pytest.mark.parametrize("in_channels,channels,stride,size", [(16, 16, 1, 14), (8, 24, 2, 15), (32, 32, 1, 7)])
def test_resnet_basic_block_matches_torch(backend, in_channels, channels, stride, size, rng):
    torch.manual_seed(1)
    reference = torch_basic_block(in_channels, channels, stride)
    randomize_batch_norm(reference)
    reference.eval()
    block = BasicBlock(in_channels, channels, stride)
    block.load_state_dict(numpy_state(reference))
    graph = block.to_graph((2, in_channels, size, size), name="basic_block")
    model = convgen.compile(graph, backend=backend)
    # batch-norms fold into the convolutions, the add into the last conv (its residual input), the relus
    # into their producers: two convs, three with the downsampling one
    assert [(n.op, n.attrs.residual) for n in model.graph.nodes][-1] == ("conv", True)
    assert len(model.graph.nodes) == (2 if in_channels == channels and stride == 1 else 3)
    x = rng.standard_normal((2, in_channels, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


@given(shift_h=st.integers(0, 4), shift_w=st.integers(0, 4), kernel=st.integers(1, 4),
       stride=st.sampled_from([1, 2]), dilation=st.integers(1, 2), channels=st.integers(1, 6),
       out_channels=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_convolution_is_equivariant_to_translation(shift_h, shift_w, kernel, stride, dilation, channels,
                                                   out_channels, seed):
    """conv(shift(x)) == shift(conv(x)) away from the borders (the seed lecture's property).

    With stride s the input must shift by a multiple of s; the output then shifts by shift/s.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, channels, 19, 17)).astype(np.float32)
    w = rng.standard_normal((out_channels, channels, kernel, kernel)).astype(np.float32)
    dy, dx = shift_h * stride, shift_w * stride
    shifted = np.roll(x, (dy, dx), axis=(2, 3))
    y = F.conv2d(x, w, stride=stride, dilation=dilation)
    y_shifted = F.conv2d(shifted, w, stride=stride, dilation=dilation)
    oh, ow = y.shape[2:]
    # rows/cols of y_shifted whose windows read no wrapped-around input
    assert_close(y_shifted[:, :, shift_h:, shift_w:], y[:, :, :oh - shift_h, :ow - shift_w])


def test_dag_with_concat_matches_torch(backend, rng):
    """An Inception-style pair of branches joined by concatenation, built without a Module class."""
    x_in = nn.Input((1, 8, 12, 12), name="image")
    a = nn.Conv2d(8, 6, 1)
    b = nn.Conv2d(8, 10, 3, padding=1)
    pool = nn.MaxPool2d(3, stride=1, padding=1)
    joined = nn.cat([nn.relu(a(x_in)), nn.relu(b(x_in)), pool(x_in)], dim=1)
    graph = nn.graph(joined, name="inception")
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
    t = torch.from_numpy(x)
    tf = torch.nn.functional
    expected = torch.cat([
        torch.relu(tf.conv2d(t, torch.from_numpy(a.param("weight")), torch.from_numpy(a.param("bias")))),
        torch.relu(tf.conv2d(t, torch.from_numpy(b.param("weight")), torch.from_numpy(b.param("bias")), padding=1)),
        tf.max_pool2d(t, 3, 1, 1)], dim=1).numpy()
    assert_close(model(image=x), expected)

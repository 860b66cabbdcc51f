"""The fold_scale_shift pass: per-channel constant arithmetic after a conv folds into its weights and
bias (both backends, against torch); what must not fold stays a separate layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convgen
from convgen import nn
from convgen.passes import optimize

from conftest import assert_close, reference_outputs, t64


def _conv(rng, channels=(3, 5), ndim=2, bias=True):
    conv = [nn.Conv1d, nn.Conv2d, nn.Conv3d][ndim - 1](*channels, 3, padding=1, bias=bias)
    return conv, lambda t: [TF.conv1d, TF.conv2d, TF.conv3d][ndim - 1](
        t, t64(conv.param("weight")), None if conv.param("bias") is None else t64(conv.param("bias")), padding=1)


@pytest.mark.parametrize("ndim, bias", [(1, True), (2, True), (2, False), (3, True)])
def test_scale_then_shift_then_relu_becomes_one_conv(backend, ndim, bias, rng):
    conv, torch_conv = _conv(rng, ndim=ndim, bias=bias)
    per_channel = (5,) + (1,) * ndim
    scale = rng.uniform(-2, 2, per_channel).astype(np.float32)
    shift = rng.standard_normal(per_channel).astype(np.float32)
    shape = (2, 3) + (6,) * ndim
    x_in = nn.Input(shape)
    graph = nn.graph(nn.relu(((conv(x_in) * scale) / 2.0 + shift) - 0.25), name="scale_shift")
    model = convgen.compile(graph, backend=backend)
    assert [n.op for n in model.graph.nodes] == ["conv"]
    x = rng.standard_normal(shape).astype(np.float32)
    expected = torch.relu((torch_conv(t64(x)) * t64(scale)) / 2.0 + t64(shift) - 0.25).numpy()
    assert_close(model(x), expected)
    assert_close(model(x), reference_outputs(graph, x)[0])


def test_constant_on_the_left_and_subtraction_from_a_constant(rng):
    conv, _ = _conv(rng)
    x_in = nn.Input((1, 3, 4, 4))
    graph = nn.graph(3.0 - np.full((5, 1, 1), 2.0, np.float32) * conv(x_in))
    optimized = optimize(graph)
    assert [n.op for n in optimized.nodes] == ["conv"]
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    assert_close(reference_outputs(optimized, x)[0], reference_outputs(graph, x)[0])


@pytest.mark.parametrize("build", [
    lambda c, x, rng: c(x) * rng.standard_normal((4, 4)).astype(np.float32),        # varies per pixel
    lambda c, x, rng: c(x) * nn.Input((5, 1, 1), name="s", tracer=x.tracer),       # a run-time operand
    lambda c, x, rng: np.float32(2.0) / c(x),                                       # a constant divided by conv
    lambda c, x, rng: c(x) / np.zeros((5, 1, 1), np.float32),                       # division by zero stays IEEE
    lambda c, x, rng: c(x) * np.float32(np.inf),                                    # inf * 0 weights would be NaN
    lambda c, x, rng: c(x) + np.ones((2, 5, 1, 1), np.float32),                     # would broadcast the batch
    lambda c, x, rng: nn.relu(c(x)) * 2.0,                                          # conv has an activation
])
def test_what_does_not_fold_stays(build, rng):
    conv, _ = _conv(rng)
    x_in = nn.Input((1, 3, 4, 4))
    graph = nn.graph(build(conv, x_in, rng))
    ops_after = [n.op for n in optimize(graph).nodes]
    assert ops_after.count("conv") == 1 and len(ops_after) >= 2, ops_after


def test_conv_read_twice_does_not_fold(rng):
    conv, _ = _conv(rng)
    x_in = nn.Input((1, 3, 4, 4))
    y = conv(x_in)
    graph = nn.graph(y * 2.0, y + 1.0)
    assert sorted(n.op for n in optimize(graph).nodes) == ["add", "conv", "mul"]

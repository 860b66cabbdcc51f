"""passes/channels_last_norm: permute -> LayerNorm over channels [-> pointwise layers] -> permute back
runs in NCHW without the transposes.  A ConvNeXt block (depthwise 7x7, LayerNorm over the channels,
Linear, GELU, Linear, layer scale, residual) from both torch exporters and from the DSL, both backends,
against torch and onnxruntime; chains the pass must leave alone still compute the same."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import convgen
from convgen import nn
from convgen.passes import optimize

from convnext import ConvNeXtBlock
from conftest import assert_close, capped_settings, reference_outputs
from test_norm import assert_normalized_close, torch_export


class DslConvNeXtBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.dw, self.ln = nn.Conv2d(d, d, 7, padding=3, groups=d), nn.LayerNorm(d, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)
        self.register_parameter("gamma", np.full(d, 0.5, np.float32))

    def forward(self, x):
        y = self.ln(nn.permute(self.dw(x), 0, 2, 3, 1))
        return x + nn.permute(self.pw2(self.act(self.pw1(y))) * self.param("gamma"), 0, 3, 1, 2)


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    module = ConvNeXtBlock(12).eval()
    with torch.no_grad():
        module.ln.weight.uniform_(0.5, 1.5)
        module.ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 12, 9, 11) * 2 + 1
    with torch.no_grad():
        expected = module(x).numpy()
    return x.numpy(), expected, {dynamo: torch_export(module, x, dynamo) for dynamo in (False, True)}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo"])
def test_convnext_block_runs_without_transposes(dynamo, backend, block):
    x, expected, files = block
    graph = convgen.from_onnx(files[dynamo])
    assert [n.op for n in graph.nodes].count("transpose") == 2
    optimized = optimize(graph)
    # depthwise conv, LayerNorm over axis 1, 1x1 conv + GELU, 1x1 conv with bias and layer scale and the
    # residual add fused into its epilogue (passes/fuse_residual.py)
    assert [n.op for n in optimized.nodes] == ["conv", "layer_norm", "conv", "conv"]
    assert len(optimized.nodes[-1].inputs) == 4    # x, weight, bias and the skip
    got = convgen.compile(graph, backend=backend)(x)
    assert_close(got, expected)
    runtime = onnxruntime.InferenceSession(files[dynamo], providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert_close(got, runtime)


def test_dsl_convnext_block_matches_torch(backend):
    nn.manual_seed(0)
    ours = DslConvNeXtBlock(8)
    theirs = ConvNeXtBlock(8).eval()
    state = ours.state_dict()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    graph = ours.to_graph((2, 8, 7, 7))
    assert "transpose" not in {n.op for n in optimize(graph).nodes}
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 7)).astype(np.float32)
    with torch.no_grad():
        assert_close(convgen.compile(graph, backend=backend)(x), theirs(torch.from_numpy(x)).numpy())


def _chain_graph(shape, tail: str):
    """permute -> LayerNorm(C) -> `tail` -> permute back, on an N-D input."""
    rank = len(shape)
    x = nn.Input(shape)
    y = nn.LayerNorm(shape[1])(nn.permute(x, 0, *range(2, rank), 1))
    rng = np.random.default_rng(1)
    if tail == "scale":
        y = y * rng.standard_normal(shape[1]).astype(np.float32) + 1.0
    elif tail == "gelu_then_read_twice":   # a value read twice: the pass must leave the chain alone
        y = nn.gelu(y)
        return nn.graph(nn.permute(y, 0, rank - 1, *range(1, rank - 1)), y, name="chain")
    elif tail == "per_position":            # a constant varying along a spatial axis: not per channel
        y = y * rng.standard_normal(shape[2:] + (1,)).astype(np.float32)
    return nn.graph(nn.permute(y, 0, rank - 1, *range(1, rank - 1)), name="chain")


@capped_settings(10)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 20)).flatmap(
    lambda nc: st.lists(st.integers(1, 9), min_size=1, max_size=3).map(lambda s: nc + tuple(s))),
       tail=st.sampled_from(["none", "scale", "gelu_then_read_twice", "per_position"]), seed=st.integers(0, 2**31))
def test_chains_match_the_reference(backend, shape, tail, seed):
    graph = _chain_graph(shape, tail)
    transposes = [n.op for n in optimize(graph).nodes].count("transpose")
    # a permute that moves at most one axis longer than 1 moves no data, and another pass may drop it
    moves_data = sum(d > 1 for d in shape[1:]) > 1
    if tail in ("none", "scale"):
        assert transposes == 0
    else:
        assert transposes == 2 if moves_data else transposes <= 2
    x = (np.random.default_rng(seed).standard_normal(shape) * 3 + 2).astype(np.float32)
    got = convgen.compile(graph, backend=backend)(x)
    # channels that nearly agree (C = 2, say) normalize to |x| / std ulps at best; 16 of them leave room for
    # the tails' scale (|w| + 1 < 4 here) and GELU's slope
    for g, e in zip(got if isinstance(got, tuple) else (got,), reference_outputs(graph, x)):
        assert_normalized_close(g, e, x, x, axes=(1,), eps=1e-5, ulps=16)

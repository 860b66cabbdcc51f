"""Winograd F(m x m, 3 x 3) convolution (convgen/winograd.py, templates/winograd.c.j2,
convgen/backends/llvm/winograd.py): the transforms against a direct correlation in float64, the kernels
of both backends against torch over drawn shapes (odd maps, tiles that do not divide the map, every
padding, channels that are not a multiple of the vector width, groups, bias and fused activations,
batch > 1, two threads), every tile size; the cost model's choice and the option that turns it off."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import convgen
from convgen import lower, nn, passes, schedule, winograd
from convgen.target import host

from conftest import capped_settings, t64


def _kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    return kernel


@pytest.mark.parametrize("m", sorted(winograd.POINTS))
def test_transforms_compute_the_correlation_exactly_in_float64(m):
    rng = np.random.default_rng(m)
    x, w = rng.standard_normal((2, 4, 2 * m + 3, m + 1)), rng.standard_normal((6, 2, 3, 3))
    for pads in [((1, 1), (1, 1)), ((0, 2), (2, 0)), ((0, 0), (0, 0))]:
        expected = TF.conv2d(TF.pad(t64(x), (*pads[1], *pads[0])), t64(w), groups=2).numpy()
        np.testing.assert_allclose(winograd.conv2d_reference(x, w, m, pads, groups=2), expected, atol=1e-11)


def _compile(module, shape, backend, threads=1, m=None, **options):
    graph = module.to_graph(shape, name="winograd")
    schedules = {}
    if m is not None:   # this tile size, whatever the cost model would say
        (node,) = [n for n in graph.nodes if n.op == "conv"]
        p = lower.conv_geometry(node, lower.LowerContext(graph, host(), threads))[0]
        flops = 2 * 9 * p["CG"] * p["OC"] * p["OH"] * p["OW"] * p["N"]
        schedules[node.name] = schedule.winograd_schedule(m, p["CG"], p["OCG"], p["G"], p["OH"], p["OW"],
                                                          flops, host(), threads)
    return convgen.compile(graph, backend=backend, threads=threads, **options) if not schedules else \
        _compile_with(graph, backend, threads, schedules)


def _compile_with(graph, backend, threads, schedules):
    from convgen import backends, passes
    from convgen.runtime import CompiledModel
    optimized = passes.optimize(graph)
    lowered = lower.lower(optimized, host(), threads, schedules=schedules)
    library, source = backends.get(backend)(lowered)
    return CompiledModel(library, lowered.prefix, source=source, graph=optimized, lowered=lowered)


ACTIVATIONS = {None: lambda y: y, "relu": lambda y: y.clamp(min=0), "silu": TF.silu}
BACKENDS = ("c", "llvm")


def _check(m, n, cin, cout, h, w, pads, groups, bias, act, threads=1):
    """One drawn layer on both backends, each against torch in float64."""
    rng = np.random.default_rng(h * 31 + w + cin)
    conv = nn.Conv2d(cin, cout, 3, padding=pads, bias=bias, groups=groups)
    module = nn.Sequential(conv, {"relu": nn.ReLU, "silu": nn.SiLU}[act]()) if act else nn.Sequential(conv)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    state = conv.state_dict()
    xp = TF.pad(t64(x), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    expected = ACTIVATIONS[act](TF.conv2d(xp, t64(state["weight"]), t64(state["bias"]) if bias else None,
                                          groups=groups)).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    for backend in BACKENDS:
        model = _compile(module, x.shape, backend, threads, m)
        kernel = _kernel(model)
        assert kernel.template == "conv_winograd" and kernel.params["M"] == m
        assert (kernel.params["activation"] or {}).get("kind") == act     # fused into the output transform
        np.testing.assert_allclose(model(x), expected, rtol=0, atol=ERROR[m] * scale, err_msg=backend)


# float32 error bounds relative to the output's scale (README, "Winograd": measured up to 1e-6, 1.4e-5 and
# 3.5e-5 on the benchmark's 3x3 layers)
ERROR = {2: 1e-5, 4: 1e-4, 6: 1e-3}

pads_ = st.tuples(st.integers(0, 2), st.integers(0, 2))


@capped_settings(max_examples=12)
@given(m=st.sampled_from(sorted(winograd.POINTS)), n=st.integers(1, 2), cin=st.integers(1, 40),
       cout=st.integers(1, 40), groups=st.sampled_from([1, 1, 2]), h=st.integers(3, 19), w=st.integers(3, 19),
       pads=st.tuples(pads_, pads_), bias=st.booleans(), act=st.sampled_from([None, "relu", "silu"]),
       threads=st.sampled_from([1, 2]))
def test_winograd_matches_torch(m, n, cin, cout, groups, h, w, pads, bias, act, threads):
    cin, cout = cin * groups, cout * groups
    if h + sum(pads[0]) < 3 or w + sum(pads[1]) < 3:
        return
    _check(m, n, cin, cout, h, w, pads, groups, bias, act, threads)


@pytest.mark.parametrize("m", sorted(winograd.POINTS))
def test_winograd_two_threads_several_chunks(m):
    _check(m, 2, 24, 40, 45, 37, ((1, 1), (1, 1)), 1, True, "relu", threads=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cost_model_picks_winograd_for_regular_3x3_layers_and_the_option_turns_it_off(backend):
    module = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
    on = convgen.compile(module.to_graph((1, 64, 28, 28), name="on"), backend=backend, threads=1)
    off = convgen.compile(module.to_graph((1, 64, 28, 28), name="off"), backend=backend, threads=1, winograd=False)
    assert _kernel(on).template == "conv_winograd" and _kernel(off).template == "conv_direct"
    x = np.random.default_rng(0).standard_normal((1, 64, 28, 28)).astype(np.float32)
    y_on, y_off = on(x), off(x)
    np.testing.assert_allclose(y_on, y_off, rtol=0, atol=ERROR[4] * np.abs(y_off).max())
    # narrow channels, strides and dilation stay direct
    for conv, shape in [(nn.Conv2d(3, 64, 3, padding=1), (1, 3, 28, 28)), (nn.Conv2d(64, 64, 3, stride=2), (1, 64, 28, 28)),
                        (nn.Conv2d(64, 64, 3, dilation=2), (1, 64, 28, 28))]:
        assert _kernel(convgen.compile(conv.to_graph(shape, name="d"), backend=backend, threads=1)).template == "conv_direct"


def test_tuning_measures_the_winograd_tiles_too():
    from convgen import passes, tune
    graph = passes.optimize(nn.Conv2d(32, 32, 3, padding=1).to_graph((1, 32, 14, 14), name="t"))
    (node,) = graph.nodes
    found = {s.winograd_m for s in tune.candidates(graph, node, host(), 1) if s.path == "winograd"}
    assert found == set(schedule.WINOGRAD_TUNED) >= set(schedule.WINOGRAD_TILES)
    assert all(s.path != "winograd" for s in tune.candidates(graph, node, host(), 1, winograd=False))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_with_the_batch_given_at_call_time(backend, threads):
    """batch=None: the padded input copy at the end of the scratch grows with the batch."""
    module = nn.Sequential(nn.Conv2d(32, 48, 3, padding=1), nn.ReLU())
    graph = module.to_graph((1, 32, 13, 9), name="anybatch")
    model = convgen.compile(graph, backend=backend, threads=threads, batch=None)
    assert _kernel(model).template == "conv_winograd"
    x = np.random.default_rng(3).standard_normal((3, 32, 13, 9)).astype(np.float32)
    state = module[0].state_dict()
    expected = TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), padding=1).clamp(min=0).numpy()
    np.testing.assert_allclose(model(x), expected, rtol=0, atol=ERROR[4] * np.abs(expected).max())


# -- the fused residual epilogue: whole tile rows transposed in registers, the map's last tile column lane by
# lane, then the skip and the activation over each register tile's rows (which may cross tile rows)

def _check_residual(m, n, cin, cout, h, w, pads, bias, act, threads, order="conv+skip"):
    """act(conv(x) + skip) on both backends, the add fused into the Winograd conv, against torch in float64."""
    rng = np.random.default_rng(h * 37 + w * 5 + cout)
    conv = nn.Conv2d(cin, cout, 3, padding=pads, bias=bias)
    activation = {None: lambda t: t, "relu": nn.relu, "silu": nn.silu}[act]
    x_shape = (n, cin, h, w)
    out_shape = conv.to_graph(x_shape).output_types[0].shape
    graph = convgen.trace(lambda x, s: activation(conv(x) + s if order == "conv+skip" else s + conv(x)),
                          x_shape, out_shape, input_names=["x", "skip"], name="winograd_residual")
    x = rng.standard_normal(x_shape).astype(np.float32)
    skip = rng.standard_normal(out_shape).astype(np.float32)
    state = conv.state_dict()
    xp = TF.pad(t64(x), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    y = TF.conv2d(xp, t64(state["weight"]), t64(state["bias"]) if bias else None)
    expected = ACTIVATIONS[act](y + t64(skip)).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    (node,) = [nd for nd in passes.optimize(graph).nodes if nd.op == "conv"]
    for backend in BACKENDS:
        optimized = passes.optimize(graph)
        p = lower.conv_geometry(node, lower.LowerContext(optimized, host(), threads))[0]
        flops = 2 * 9 * p["CG"] * p["OC"] * p["OH"] * p["OW"] * p["N"]
        model = _compile_with(graph, backend, threads, {node.name: schedule.winograd_schedule(
            m, p["CG"], p["OCG"], p["G"], p["OH"], p["OW"], flops, host(), threads)})
        kernel = _kernel(model)
        assert kernel.template == "conv_winograd" and kernel.params["M"] == m and kernel.params["RESIDUAL"]
        assert "add" not in {k.op for k in model._lowered.kernels}
        assert (kernel.params["activation"] or {}).get("kind") == act
        np.testing.assert_allclose(model(x, skip), expected, rtol=0, atol=ERROR[m] * scale, err_msg=backend)


@capped_settings(max_examples=10)
@given(m=st.sampled_from(sorted(winograd.POINTS)), n=st.integers(1, 2), cin=st.integers(1, 24),
       cout=st.integers(1, 40), h=st.integers(3, 23), w=st.integers(3, 23), pads=st.tuples(pads_, pads_),
       bias=st.booleans(), act=st.sampled_from([None, "relu", "silu"]), threads=st.sampled_from([1, 2]),
       order=st.sampled_from(["conv+skip", "skip+conv"]))
def test_winograd_fused_residual_matches_torch(m, n, cin, cout, h, w, pads, bias, act, threads, order):
    if h + sum(pads[0]) < 3 or w + sum(pads[1]) < 3:
        return
    _check_residual(m, n, cin, cout, h, w, pads, bias, act, threads, order)


@pytest.mark.parametrize("m", sorted(winograd.POINTS))
def test_winograd_fused_residual_several_chunks_and_a_remainder_tile(m):
    """Register tiles that cross tile rows, chunks, a remainder tile, a clipped last tile column and row,
    channels past a whole vector, batch 2 and two threads."""
    _check_residual(m, 2, 20, 37, 29, 27, ((1, 1), (1, 1)), True, "relu", threads=2)


@pytest.mark.parametrize("residual", [False, True])
def test_winograd_tile_rows_wider_than_the_vector_store_lane_by_lane(residual):
    """F(6x6) on 3 output channels: 4-lane vectors, too narrow for a tile row's 6 (8) pixel vectors to
    transpose; every tile stores lane by lane (found by hypothesis: nothing was stored)."""
    if residual:
        _check_residual(6, 1, 2, 3, 4, 10, ((2, 2), (2, 2)), False, None, threads=1)
    else:
        _check(6, 1, 1, 3, 4, 10, ((2, 2), (2, 2)), 1, False, None)

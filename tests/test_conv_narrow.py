"""The narrow convolution path (few output channels: output pixels along a row in vectors, the row's last
vector ending at its end, every channel's weight broadcast): the cost model's choices for simulated AVX2
and AVX-512 register files, and drawn shapes against torch in float64 on both backends and each target the
host runs (1-8 output channels, odd sizes, every padding, strides down the rows, dilation, groups, fused
activations, runtime weights, batch > 1, two threads; residual adds: tests/test_residual.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import convgen
import convgen.functional as F
from convgen import lower, nn, passes, schedule

from conftest import BACKENDS, assert_close, capped_settings, t64
from test_conv_targets import AVX2, AVX512, RUNNABLE, compiled_for
from test_winograd import _compile_with


def _conv_kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    return kernel


@pytest.mark.parametrize("target, ocg, out_height, out_width, tile", [
    # (pixel lanes, channels, pixel vectors, rows) of LeNet-5's C1 (6 channels, 28x28): 2 x 2 x 6 = 24 accumulators
    # of 16 pixels on 32 registers; 2 x 6 of 8 pixels in one row on 16
    (AVX512, 6, 28, 28, (16, 6, 2, 2)), (AVX2, 6, 28, 28, (8, 6, 2, 1)),
    # one channel: rows of one vector stacked to fill the file
    (AVX512, 1, 28, 28, (16, 1, 1, 14)), (AVX2, 1, 28, 28, (8, 1, 1, 7)),
    # long rows: several vectors per tile, balanced (224 = 14 vectors of 16: 5 + 5 + 4)
    (AVX512, 4, 224, 224, (16, 4, 5, 1)), (AVX2, 4, 224, 224, (8, 4, 2, 1)),
])
def test_narrow_tiles_follow_each_register_file(target, ocg, out_height, out_width, tile):
    sched = schedule.narrow_schedule(ocg, out_width, out_height, 10**9, target, 1)
    assert sched is not None and sched.path == "narrow" and not sched.flat
    assert (sched.vector_width, sched.oc_vectors, sched.row_tile, sched.tile_rows) == tile


@pytest.mark.parametrize("target, ocg, out_height, out_width, stride_h, kernel_h, tile", [
    # LeNet-5's C1: blocks of 4 rows of 28 are 7 vectors of 16 (tiles of 4 + 3), 2 rows 7 of 8 (2 + 2 + 2 + 1)
    (AVX512, 6, 28, 28, 1, 5, (16, 6, 4, 4, True)), (AVX2, 6, 28, 28, 1, 5, (8, 6, 2, 2, True)),
    # strides down the rows: no flat blocks; nor where the blocks do not divide the rows (20 in 16: 4 rows)
    (AVX512, 6, 28, 28, 2, 5, (16, 6, 2, 2, False)), (AVX512, 6, 27, 20, 1, 3, (16, 6, 2, 2, False)),
    # one channel and a 1-row kernel: the copy costs more than the 4 lanes a row wastes
    (AVX512, 1, 28, 28, 1, 5, (16, 1, 1, 14, False)), (AVX512, 6, 28, 28, 1, 1, (16, 6, 2, 2, False)),
    # rows that fill whole vectors need no blocks
    (AVX512, 4, 32, 32, 1, 5, (16, 4, 2, 3, False)),
])
def test_flat_blocks_where_rows_end_short_of_a_vector(target, ocg, out_height, out_width, stride_h, kernel_h, tile):
    sched = schedule.narrow_schedule(ocg, out_width, out_height, 10**9, target, 1, stride_h=stride_h, kernel_h=kernel_h)
    assert (sched.vector_width, sched.oc_vectors, sched.row_tile, sched.tile_rows, sched.flat) == tile
    if sched.flat:  # a block's pixels are whole vectors
        assert sched.tile_rows * out_width % sched.vector_width == 0 and out_height % sched.tile_rows == 0


@pytest.mark.parametrize("target, ocg, out_height, out_width", [
    (AVX512, 16, 10, 10), (AVX2, 16, 10, 10),   # LeNet-5's C3: 16 channels fill the direct path's vectors
    (AVX512, 9, 28, 28), (AVX512, 6, 3, 3),     # more than NARROW_MAX_CHANNELS; a row shorter than 4 pixels
    (AVX512, 8, 9, 9), (AVX2, 8, 5, 5),         # a vector of 8 channels holds more lanes than rows of 9 or 5
])
def test_direct_where_channel_vectors_hold_more_lanes(target, ocg, out_height, out_width):
    assert schedule.narrow_schedule(ocg, out_width, out_height, 10**9, target, 1) is None


@pytest.mark.parametrize("target", [AVX2, AVX512], ids=lambda t: t.name)
def test_narrow_tiles_fit_each_register_file(target):
    """Accumulators, the input vectors they share and one broadcast fit the register file with one spare;
    the tile fits the map; the row's tiles cover it."""
    for ocg in range(1, schedule.NARROW_MAX_CHANNELS + 1):
        for out_height, out_width in ((1, 4), (1, 5), (3, 7), (7, 9), (28, 28), (5, 33), (10, 100), (2, 224)):
            sched = schedule.narrow_tiles(ocg, out_width, out_height, target, 1)
            rows, vectors, mr = sched.tile_rows, sched.row_tile, sched.oc_vectors
            assert rows * vectors * (mr + 1) + 2 <= target.vector_registers, sched
            assert rows <= out_height and sched.vector_width <= min(out_width, target.max_vector_width)
            full, tail, at = schedule.narrow_row_tiles(out_width, sched.vector_width, vectors)
            covered = full * vectors * sched.vector_width
            assert len(tail) <= vectors and (at + tail[-1] + sched.vector_width if tail else covered) == out_width
            assert not tail or covered - sched.vector_width < at <= covered  # no gap; overlaps under a vector


ACTIVATIONS = {None: lambda y: y, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
LAYERS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


@st.composite
def narrow_cases(draw):
    ndim = draw(st.sampled_from([1, 2, 2, 2, 3]))
    k = draw(st.sampled_from([1, 2, 3, 5]))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.integers(0, k // 2 * dilation))
    groups = draw(st.sampled_from([1, 1, 1, 2]))
    reach = dilation * (k - 1) + 1
    # rows of at least 4 output pixels; up to 3 vectors of 16 and a remainder
    width = draw(st.integers(max(1, reach - 2 * padding + 3), 52))
    least = max(1, reach - 2 * padding)
    leading = tuple(draw(st.integers(least, max(least, 9 if ndim == 2 else 4))) for _ in range(ndim - 1))
    return dict(ndim=ndim, k=k, dilation=dilation, padding=padding, groups=groups,
                c=groups * draw(st.integers(1, 5)), oc=groups * draw(st.integers(1, schedule.NARROW_MAX_CHANNELS)),
                stride=draw(st.integers(1, 2)), spatial=leading + (width,), bias=draw(st.booleans()),
                act=draw(st.sampled_from(list(ACTIVATIONS))), batch=draw(st.integers(1, 3)),
                threads=draw(st.sampled_from([1, 1, 2])), flat=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _narrow_model(case: dict, backend: str, target):
    """The case's conv (and activation) compiled on the narrow path, forced for `target`'s tiles: strides
    along the rows only (the path needs consecutive input pixels along W)."""
    ndim = case["ndim"]
    stride = (case["stride"],) * (ndim - 1) + (1,)
    conv = getattr(nn, f"Conv{ndim}d")(case["c"], case["oc"], case["k"], stride=stride, padding=case["padding"],
                                       dilation=case["dilation"], groups=case["groups"], bias=case["bias"])
    layers = [conv] + ([LAYERS[case["act"]]()] if case["act"] else [])
    x_shape = (case["batch"], case["c"], *case["spatial"])
    graph = nn.Sequential(*layers).to_graph(x_shape, name="narrow")
    optimized = passes.optimize(graph)
    (node,) = [n for n in optimized.nodes if n.op == "conv"]
    # the kernel's geometry (a 1x1 stride-1 plane runs as one row)
    p = lower.conv_geometry(node, lower.LowerContext(optimized, target, case["threads"]))[0]
    flat = case.get("flat", False) and p["SH"] == 1  # flat blocks where the rows allow them
    sched = schedule.narrow_tiles(p["OCG"], p["OW"], p["OH"], target, case["threads"], flat=flat)
    with compiled_for(target):
        model = _compile_with(graph, backend, case["threads"], {node.name: sched})
    return conv, stride, model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE, ids=lambda t: t.name)
@capped_settings(12)
@given(case=narrow_cases())
def test_narrow_path_matches_torch(backend, target, case):
    conv, stride, model = _narrow_model(case, backend, target)
    kernel = _conv_kernel(model)
    assert kernel.template == "conv_narrow" and kernel.params["VW"] <= target.max_vector_width
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["batch"], case["c"], *case["spatial"])).astype(np.float32)
    assert_close(model(x), _expected(case, conv, stride, x))


def _expected(case: dict, conv, stride, x):
    state = conv.state_dict()
    expected = getattr(TF, f"conv{case['ndim']}d")(t64(x), t64(state["weight"]),
                                                    t64(state["bias"]) if case["bias"] else None, stride=stride,
                                                    padding=case["padding"], dilation=case["dilation"],
                                                    groups=case["groups"])
    return ACTIVATIONS[case["act"]](expected).numpy()


# (ndim, k, dilation, padding, groups, c, oc, spatial, batch, threads): flat blocks of whole vectors on
# AVX-512 (16 lanes) and AVX2 (8): 28-pixel rows in blocks of 4 (2), 20 in 4 (2), 12 in 4 (2), 3-D planes
FLAT_CASES = [
    (2, 5, 1, 0, 1, 1, 6, (32, 32), 1, 1),     # LeNet-5's C1
    (2, 3, 2, 2, 1, 2, 5, (28, 28), 2, 2),     # padding, dilation, batch, two threads
    (2, 3, 1, 1, 2, 4, 6, (8, 20), 1, 1),      # groups
    (3, 3, 1, 1, 1, 2, 3, (3, 4, 12), 1, 1),   # depth: a copy per plane; runtime weights below
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE, ids=lambda t: t.name)
@pytest.mark.parametrize("ndim, k, dilation, padding, groups, c, oc, spatial, batch, threads", FLAT_CASES)
def test_flat_blocks_match_torch(backend, target, ndim, k, dilation, padding, groups, c, oc, spatial, batch, threads):
    case = dict(ndim=ndim, k=k, dilation=dilation, padding=padding, groups=groups, c=c, oc=oc, stride=1,
                spatial=spatial, bias=True, act="tanh", batch=batch, threads=threads, flat=True)
    nn.manual_seed(c * 7 + oc)
    conv, stride, model = _narrow_model(case, backend, target)
    kernel = _conv_kernel(model)
    assert kernel.template == "conv_narrow" and kernel.params["FLAT"], kernel.params
    x = np.random.default_rng(oc).standard_normal((batch, c, *spatial)).astype(np.float32)
    assert_close(model(x), _expected(case, conv, stride, x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cost_model_runs_lenet_c1_narrow_with_its_tanh_fused(backend):
    nn.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh())
    model = convgen.compile(module.to_graph((2, 1, 32, 32), name="c1"), backend=backend, threads=1)
    (kernel,) = model._lowered.kernels
    assert kernel.template == "conv_narrow" and kernel.params["activation"]["kind"] == "tanh"
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    state = module[0].state_dict()
    assert_close(model(x), torch.tanh(TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]))).numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape, w_shape, flat", [
    ((2, 2, 13, 30), (5, 2, 3, 4), False),
    ((1, 2, 32, 28), (6, 2, 3, 5), True),   # a 32 x 28 output: flat blocks, the weights packed after their copy
])
def test_narrow_path_packs_runtime_weights(backend, x_shape, w_shape, flat):
    """Weights given at run time (the functional API) are packed per call into the kernel's scratch."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    y = F.conv2d(x, w, b, padding=(1, 2), backend=backend)
    assert_close(y, TF.conv2d(t64(x), t64(w), t64(b), padding=(1, 2)).numpy())
    kernels = [k for key, m in F._kernels.items() if key[2][0] == x.shape and key[3] == backend
               for k in m._lowered.kernels]
    assert [(k.template, k.params["FLAT"], k.params["PACK_AT_RUNTIME"]) for k in kernels] == [("conv_narrow", flat, True)]

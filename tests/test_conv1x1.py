"""1x1 unpadded convolutions (stride 1, or strided: gathered) as a matrix product (convgen/schedule_gemm.py, templates/conv1x1.c.j2,
backends/llvm/conv1x1.py): the register tile and cache blocks chosen for simulated AVX2 (16 ymm) and
AVX-512 (32 zmm) targets, and drawn layers against torch in float64 on both backends and on each ISA the
host runs: odd channel counts, channels and planes that are not multiples of the tile (partial channel
blocks, tail tiles of whole, halved and single pixels), strides 2 and 3, several K blocks and pixel blocks, batch > 1,
bias, fused activation, a fused residual add, two threads."""
from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import convgen
from convgen import nn, passes, schedule_gemm
from convgen.target import Target

from conftest import BACKENDS, assert_close, capped_settings, t64
from test_conv_targets import AVX2, AVX512, RUNNABLE, compiled_for
from test_residual import ACTIVATIONS, _expected, _residual_graph


@pytest.mark.parametrize("target, out_channels, tile", [
    # MR x NV: NV the most pixel vectors that leave room for 8 channels (2 on 16 ymm, 3 on 32 zmm), MR the
    # fewest loads per useful FMA (BLIS's haswell 6 x 16 floats on 16 ymm; 8 or 9 channels on 32 zmm)
    (AVX2, 64, (6, 2)), (AVX2, 96, (6, 2)), (AVX2, 4, (4, 2)), (AVX2, 13, (5, 2)),
    (AVX512, 96, (8, 3)), (AVX512, 384, (9, 3)), (AVX512, 64, (8, 3)), (AVX512, 5, (5, 3)),
])
def test_register_tile_follows_each_register_file(target, out_channels, tile):
    assert schedule_gemm.register_tile(target, out_channels) == tile
    sched = schedule_gemm.gemm_schedule(out_channels, 10**9, target, 1)
    assert (sched.path, sched.vector_width, sched.oc_vectors, sched.row_tile) == (
        "gemm", target.max_vector_width, *tile)


@pytest.mark.parametrize("target", [AVX2, AVX512], ids=lambda t: t.name)
def test_tiles_and_blocks_fit_registers_and_caches(target: Target):
    for out_channels in (4, 7, 33, 96, 512):
        mr, nv = schedule_gemm.register_tile(target, out_channels)
        assert mr * nv + nv + 1 < target.vector_registers and mr <= out_channels
        sched = schedule_gemm.gemm_schedule(out_channels, 10**9, target, 2)
        for in_channels, pixels in ((3, 3136), (96, 3136), (384, 784), (1000, 197), (64, 40)):
            b = schedule_gemm.gemm_blocks(sched, in_channels, out_channels, pixels, 1, target)
            nr = nv * target.max_vector_width
            assert b.kc <= in_channels and b.kc * nr * 4 <= max(target.l1d_bytes // 2, 8 * nr * 4)
            assert b.nc % nr == 0 and b.nc * b.kc * 4 <= target.l2_bytes
            assert (math.ceil(pixels / b.nc) - 1) * b.nc + b.last_full * nr + sum(r * l for r, l, _ in b.tail) == pixels
            assert math.ceil(pixels / b.nc) >= min(2, math.ceil(pixels / nr))  # a pixel block per thread
            # the static split of the (sample, block) items loads no thread more than a block past its share,
            # and with few blocks no more than a tile (768 -> 192 28x28 had 384, 384 and 16 pixels)
            busiest, tiles = schedule_gemm.busiest_thread(pixels, b.nc, 1, 2), math.ceil(pixels / nr)
            few = math.ceil(pixels / b.nc) < schedule_gemm.FEW_ITEMS * 2
            assert busiest <= (math.ceil(tiles / 2) * nr if few else math.ceil(pixels / 2) + b.nc)


def _kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    return kernel


@st.composite
def gemm_cases(draw, width: int):
    c, oc = draw(st.integers(1, 300)), draw(st.integers(4, 45))
    # at least two vectors of pixels; a full tile or not, tails of every kind
    pixels = draw(st.integers(2 * width, 12 * width + width - 1))
    h = draw(st.sampled_from([d for d in range(1, 12) if pixels % d == 0]))
    stride = draw(st.sampled_from([1, 1, 2, 3]))   # strided layers gather their pixels into the panels
    # the input map: stride x the output's, less up to stride - 1 at each end (the last pixel read is inside)
    h_in, w_in = (stride * (n - 1) + 1 + draw(st.integers(0, stride - 1)) for n in (h, pixels // h))
    return dict(c=c, oc=oc, h=h_in, w=w_in, stride=stride, batch=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                act=draw(st.sampled_from([None, "relu", "silu"])), residual=draw(st.booleans()),
                threads=draw(st.sampled_from([1, 1, 2])))


def _check(case: dict, backend: str, target: Target) -> None:
    stride = case.get("stride", 1)
    conv = nn.Conv2d(case["c"], case["oc"], 1, stride=stride, bias=case["bias"])
    rng = np.random.default_rng(case["c"] * 1000 + case["oc"])
    shape = (case["batch"], case["c"], case["h"], case["w"])
    x = rng.standard_normal(shape).astype(np.float32)
    out_hw = [(n - 1) // stride + 1 for n in (case["h"], case["w"])]
    skip = rng.standard_normal((case["batch"], case["oc"], *out_hw)).astype(np.float32)
    act = case["act"]
    if case["residual"]:
        graph, inputs = _residual_graph(conv, shape, "conv+skip", act, name="gemm"), (x, skip)
        expected = _expected(conv, x, skip, act, False, stride=stride)
    else:
        module = nn.Sequential(conv, nn.ReLU()) if act == "relu" else nn.Sequential(conv, nn.SiLU()) if act else conv
        graph, inputs = module.to_graph(shape, name="gemm"), (x,)
        state = conv.state_dict()
        y = torch.nn.functional.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]) if case["bias"] else None,
                                       stride=stride)
        expected = ACTIVATIONS[act][1](y).numpy()
    with compiled_for(target):
        # strided layers take the gather where tuning picks it: here as if tuning had
        node = next(n for n in passes.optimize(graph).nodes if n.op == "conv")
        tuned = {node.name: schedule_gemm.gemm_schedule(case["oc"], 10**9, target, case["threads"])}
        with mock.patch("convgen.runtime.tune_graph", lambda *args, **kwargs: tuned):
            model = convgen.compile(graph, backend=backend, threads=case["threads"], tune=stride > 1)
    kernel = _kernel(model)
    assert kernel.template == "conv_gemm" and kernel.params["RESIDUAL"] == case["residual"]
    assert kernel.params["STRIDED"] == (stride > 1)
    assert kernel.params["PACK_FIRST"] == (stride == 1)  # stride 1: the first channel block packs as it computes
    assert (kernel.params["MR"], kernel.params["NV"]) == schedule_gemm.register_tile(target, case["oc"])
    assert_close(model(*inputs), expected)
    return kernel


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE, ids=lambda t: t.name)
@capped_settings(8)
@given(data=st.data())
def test_drawn_1x1_convs_match_torch_on_each_target(backend, target, data):
    _check(data.draw(gemm_cases(target.max_vector_width)), backend, target)


@pytest.mark.parametrize("backend", BACKENDS)
def test_benchmark_shapes_with_several_k_and_pixel_blocks(backend):
    """ResNet's 256 -> 64, ConvNeXt's 96 -> 384 at 28x28 (K blocks, pixel blocks, partial channel
    blocks of 13 or 14) and a ResNet downsampling 64 -> 128 stride 2, and 2 threads, with the host's tiles."""
    target = RUNNABLE[-1]
    for c, oc, threads, stride in ((256, 64, 1, 1), (96, 384, 2, 1), (64, 128, 1, 2)):
        _check(dict(c=c, oc=oc, h=28 * stride, w=28 * stride, stride=stride, batch=1, bias=True, act="relu",
                    residual=False, threads=threads), backend, target)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE, ids=lambda t: t.name)
def test_single_pixels_that_end_the_plane_run_with_channel_vectors(backend, target):
    """The single-pixel tail tiles (channels in vectors, the weight rows read past MR): MobileNetV3-Small's
    7x7 96 -> 576 and 576 -> 96 + skip (49 = 3 x 16 + 1), partial last channel blocks (37, 130), a strided
    gather, batch 2 and 2 threads (pixel blocks of 48 and 1: the single pixel alone in its block), K blocks."""
    cases = [dict(c=96, oc=576, h=7, w=7, batch=1, bias=True, act="relu", residual=False, threads=1),
             dict(c=576, oc=96, h=7, w=7, batch=1, bias=True, act=None, residual=True, threads=1),
             dict(c=40, oc=37, h=5, w=7, batch=2, bias=False, act="silu", residual=True, threads=2),
             dict(c=24, oc=130, h=13, w=13, stride=2, batch=1, bias=True, act=None, residual=False, threads=1),
             dict(c=33, oc=20, h=7, w=7, batch=3, bias=True, act="relu", residual=False, threads=2)]
    for case in cases:
        kernel = _check(case, backend, target)
        singles = [rows for rows, lanes, _ in kernel.params["TAIL"] if lanes == 1]
        assert len(singles) == 1 and 1 <= singles[0] < 4


def test_grouped_padded_and_short_1x1_convs_stay_on_other_paths():
    x_shape = (1, 8, 16, 16)
    # strided ones too, unless tuning picks the gather (measured slower than the direct path)
    for conv in (nn.Conv2d(8, 16, 1, groups=2), nn.Conv2d(8, 16, 1, padding=1), nn.Conv2d(8, 16, 1, stride=2)):
        model = convgen.compile(conv.to_graph(x_shape), backend="c")
        assert _kernel(model).template != "conv_gemm"
    # a map shorter than two vectors of pixels stays on the channel-vector paths
    model = convgen.compile(nn.Conv2d(8, 16, 1).to_graph((1, 8, 5, 5)), backend="c")
    assert _kernel(model).template != "conv_gemm"


def test_tuning_measures_the_matrix_product_tiles_and_the_pixels_path():
    from convgen import tune
    from convgen.target import host
    graph = passes.optimize(nn.Conv2d(64, 96, 1).to_graph((1, 64, 28, 28)))
    (node,) = [n for n in graph.nodes if n.op == "conv"]
    found = tune.candidates(graph, node, host(), 1)
    assert found[0] == schedule_gemm.gemm_schedule(96, 2 * 64 * 96 * 784, host(), 1)
    tiles = {(s.oc_vectors, s.row_tile) for s in found if s.path == "gemm"}
    assert tiles == {schedule_gemm.register_tile(host(), 96)} | {
        (schedule_gemm.balanced_channels(mr, 96), nv) for mr, nv in schedule_gemm.tile_variants(host())}
    assert {"pixels", "direct"} <= {s.path for s in found}
    # a strided layer: direct by the cost model, the gather among the candidates
    graph = passes.optimize(nn.Conv2d(64, 96, 1, stride=2).to_graph((1, 64, 28, 28)))
    (node,) = [n for n in graph.nodes if n.op == "conv"]
    found = tune.candidates(graph, node, host(), 1)
    assert found[0].path == "direct" and "gemm" in {s.path for s in found}


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_time_batch(backend):
    """batch=None: the sample loop's bound is the call's batch; each thread's panels stay in one scratch."""
    conv = nn.Conv2d(19, 23, 1)
    model = convgen.compile(nn.Sequential(conv, nn.ReLU()).to_graph((1, 19, 9, 10)), backend=backend, batch=None,
                            threads=2)
    assert _kernel(model).template == "conv_gemm"
    state = conv.state_dict()
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 19, 9, 10)).astype(np.float32)
        expected = torch.relu(torch.nn.functional.conv2d(t64(x), t64(state["weight"]), t64(state["bias"])))
        assert_close(model(x), expected.numpy())


def test_weights_are_blocked_by_k_block_then_channel_block():
    # [KB][OCB][kc][MR]: one K block's panels of every channel block in one stream, the last K block shorter
    from convgen.lower import pack_conv_weights
    from convgen.lower_conv1x1 import k_blocked_weights
    oc, c, mr, kc = 11, 10, 4, 4
    w = np.arange(oc * c, dtype=np.float32).reshape(oc, c, 1, 1) + 1
    flat = k_blocked_weights(pack_conv_weights(w, 1, 3, 1, mr), kc)
    assert flat.shape == (3 * mr * c,)
    for k0 in range(0, c, kc):
        width = min(kc, c - k0)
        for ob in range(3):
            for ch in range(width):
                for j in range(mr):
                    o = ob * mr + j
                    assert flat[k0 * 3 * mr + (ob * width + ch) * mr + j] == (w[o, k0 + ch, 0, 0] if o < oc else 0)

"""The register-tiled convolution paths on each register budget: the cost model's tile choices for a
simulated AVX2 target (16 ymm) and an AVX-512 one (32 zmm), and kernels scheduled *and compiled* for
either ISA (C: -march=haswell or the host's AVX-512; LLVM: the haswell CPU or the host's) and run on this
host where it can run them, against torch in float64, over drawn shapes: odd sizes, remainder tiles and
remainder rows of 2-D tiles, channel counts that are not a multiple of the vector width, padding,
stride, dilation, groups, bias, a fused activation, two threads."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import convgen
from convgen import nn, schedule
from convgen.backends import llvm as llvm_backend
from convgen.backends.llvm import native
from convgen.target import Target, host

from conftest import BACKENDS, assert_close, capped_settings, t64

AVX2 = Target("simulated avx2", vector_bytes=32, vector_registers=16, features=("avx", "avx2", "fma"), cores=1)
AVX512 = Target("simulated avx512", vector_bytes=64, vector_registers=32, features=("avx2", "avx512f", "fma"),
                cores=1)
RUNNABLE = [t for t in (AVX2, AVX512) if set(t.features) <= set(host().features)]


@pytest.mark.parametrize("target, ocg, out_height, out_width, kernel_w, tile", [
    # (oc vectors, pixels along a row, rows) of the benchmark's direct layers: AVX2 keeps its measured 8
    # accumulators (2 vectors x 4 pixels, 5 + 5 + 4 on 14-pixel rows); AVX-512 16 in one-row tiles (2 x 8,
    # 7 + 7 + 7 + 7 on 28-pixel rows) and 28 in 2-D tiles of 2 rows on 7- and 14-pixel rows (7 + 7)
    (AVX2, 64, 56, 56, 3, (2, 4, 1)), (AVX2, 256, 14, 14, 3, (2, 5, 1)), (AVX2, 512, 7, 7, 3, (2, 4, 1)),
    (AVX2, 64, 112, 112, 7, (2, 4, 1)), (AVX2, 128, 28, 28, 3, (2, 4, 1)),
    (AVX512, 64, 56, 56, 3, (2, 8, 1)), (AVX512, 256, 14, 14, 3, (2, 7, 2)), (AVX512, 512, 7, 7, 3, (2, 7, 2)),
    (AVX512, 64, 112, 112, 7, (2, 8, 1)), (AVX512, 128, 28, 28, 3, (2, 7, 1)),
    # a 1-pixel output (LeNet's C5) spends the budget on channel vectors
    (AVX2, 120, 1, 1, 5, (8, 1, 1)), (AVX512, 120, 1, 1, 5, (8, 1, 1)),
    # 2x2 maps: two rows of two pixels on either file; 12-pixel rows: 2 rows of 6 + 6 on AVX-512 only
    (AVX2, 64, 2, 2, 3, (2, 2, 2)), (AVX512, 64, 2, 2, 3, (2, 2, 2)),
    (AVX2, 64, 12, 12, 3, (2, 4, 1)), (AVX512, 64, 12, 12, 3, (2, 6, 2)),
])
def test_direct_tiles_follow_each_register_file(target, ocg, out_height, out_width, kernel_w, tile):
    sched = schedule.conv_schedule(ocg, out_width, 10**9, target, 1, kernel_w=kernel_w, out_height=out_height)
    assert (sched.path, sched.vector_width) == ("direct", target.max_vector_width)
    assert (sched.oc_vectors, sched.row_tile, sched.tile_rows) == tile


@pytest.mark.parametrize("target", [AVX2, AVX512], ids=lambda t: t.name)
def test_direct_tiles_fit_each_register_file(target):
    """Accumulators, the weight vectors they share and one broadcast fit the register file, and the
    accumulators the budget, over channel counts and map sizes."""
    budget = max(schedule.accumulator_budget(target), schedule.accumulator_budget(target, "rows"))
    for ocg in (4, 9, 16, 33, 64, 512):
        for out_height, out_width in ((1, 1), (1, 7), (7, 7), (3, 5), (14, 14), (9, 30), (56, 56), (1, 200)):
            sched = schedule.conv_schedule(ocg, out_width, 10**9, target, 1, kernel_w=3, out_height=out_height)
            pixels = sched.row_tile * sched.tile_rows
            accumulators = pixels * sched.oc_vectors
            assert accumulators <= budget + budget // 4, sched
            held = accumulators + (sched.oc_vectors if pixels > 1 else 0) + 1
            assert held <= target.vector_registers, (ocg, out_height, out_width, sched)
            assert sched.tile_rows <= out_height and sched.row_tile <= out_width


@pytest.mark.parametrize("target, vectors, channels", [(AVX2, 2, 6), (AVX512, 4, 6)])
def test_pointwise_tiles_follow_each_register_file(target, vectors, channels):
    """A 1x1 convolution over a flattened 56x56 plane: a vector of pixels per 8 registers x the channels
    3/4 of the file leaves (2 x 6 on 16 registers, 4 x 6 on 32)."""
    sched = schedule.conv_schedule(64, 56 * 56, 10**9, target, 1, one_row=True)
    assert (sched.path, sched.vector_width, sched.row_tile, sched.oc_vectors) == (
        "pixels", target.max_vector_width, vectors, channels)


@contextlib.contextmanager
def compiled_for(target: Target):
    """Schedule for `target` and generate code for its ISA: AVX2 as gcc's and LLVM's haswell (16 ymm,
    no AVX-512), AVX-512 as the host's own."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("convgen.runtime.host", lambda: target))
        if "avx512f" not in target.features and "avx512f" in host().features:
            stack.enter_context(mock.patch.dict(os.environ, {"CFLAGS": "-O3 -march=haswell"}))
            cpu = native.HostTarget(native.host_target().triple, "haswell", "+avx,+avx2,+fma,+f16c,-avx512f")
            stack.enter_context(mock.patch.object(native, "host_target", lambda: cpu))
            stack.enter_context(mock.patch.object(llvm_backend, "host_target", lambda: cpu))
        yield


@st.composite
def conv_cases(draw):
    ndim = draw(st.sampled_from([1, 2, 2, 2, 3]))
    k = draw(st.sampled_from([1, 2, 3, 5]))
    stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.integers(0, k // 2 * dilation))
    groups = draw(st.sampled_from([1, 1, 2]))
    c = groups * draw(st.integers(1, 7))
    oc = groups * draw(st.integers(4, 37))         # >= 4 per group: direct or pixels
    reach = dilation * (k - 1) + 1
    # small maps (2-D tiles over several rows, remainder rows) as often as wide rows
    most = draw(st.sampled_from([9, 23])) if ndim > 1 else 90
    least = max(1, reach - 2 * padding)     # a dilated 3-D kernel can reach past 3-D's usual 7
    spatial = tuple(draw(st.integers(least, max(least, most if ndim < 3 else 7))) for _ in range(ndim))
    return dict(ndim=ndim, c=c, oc=oc, k=k, stride=stride, dilation=dilation, padding=padding, groups=groups,
                spatial=spatial, bias=draw(st.booleans()), relu=draw(st.booleans()), batch=draw(st.integers(1, 2)),
                threads=draw(st.sampled_from([1, 1, 2])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE, ids=lambda t: t.name)
@capped_settings(10)
@given(case=conv_cases())
def test_register_tiled_paths_match_torch_on_each_target(backend, target, case):
    ndim, groups, bias = case["ndim"], case["groups"], case["bias"]
    conv = getattr(nn, f"Conv{ndim}d")(case["c"], case["oc"], case["k"], stride=case["stride"],
                                       padding=case["padding"], dilation=case["dilation"], groups=groups, bias=bias)
    module = nn.Sequential(conv, nn.ReLU()) if case["relu"] else nn.Sequential(conv)
    rng = np.random.default_rng(sum(case["spatial"]) + case["oc"])
    x = rng.standard_normal((case["batch"], case["c"], *case["spatial"])).astype(np.float32)
    with compiled_for(target):
        model = convgen.compile(module.to_graph(x.shape, name="targets"), backend=backend, threads=case["threads"],
                                winograd=False)
    (kernel,) = [kk for kk in model._lowered.kernels if kk.op == "conv"]
    assert kernel.template in ("conv_direct", "conv_pixels", "conv_gemm", "conv_narrow"), kernel.template
    assert kernel.params["VW"] <= target.max_vector_width
    state = conv.state_dict()
    expected = getattr(TF, f"conv{ndim}d")(t64(x), t64(state["weight"]), t64(state["bias"]) if bias else None,
                                           stride=case["stride"], padding=case["padding"],
                                           dilation=case["dilation"], groups=groups)
    assert_close(model(x), (torch.relu(expected) if case["relu"] else expected).numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE, ids=lambda t: t.name)
def test_benchmark_direct_layer_shapes_on_each_target(backend, target):
    """The 2-D tiles (2 rows of 7 pixels on AVX-512) with the 7x7 map's remainder row and the 14x14 map's
    two tiles along each row, as the benchmark's 7x7 and 14x14 layers have them (fewer channels), against torch."""
    rng = np.random.default_rng(3)
    for shape in ((1, 24, 7, 7), (2, 20, 14, 14)):
        module = nn.Sequential(nn.Conv2d(shape[1], 40, 3, padding=1), nn.ReLU())
        x = rng.standard_normal(shape).astype(np.float32)
        with compiled_for(target):
            model = convgen.compile(module.to_graph(x.shape, name="targets"), backend=backend, winograd=False)
        (kernel,) = [kk for kk in model._lowered.kernels if kk.op == "conv"]
        expected = schedule.conv_schedule(40, shape[3], 10**9, target, 1, kernel_w=3, out_height=shape[2])
        assert (kernel.params["RH"], kernel.params["RW"]) == (expected.tile_rows, expected.row_tile)
        state = module[0].state_dict()
        reference = torch.relu(TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), padding=1))
        assert_close(model(x), reference.numpy())

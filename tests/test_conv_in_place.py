"""The direct path reading its input in place (no padded copy, kernel param CLIP): border rows with their window
rows clipped to the input, border tiles with their taps outside the row left out at compile time, interior tiles
unchanged.  The choice for simulated AVX2 and AVX-512 targets, and drawn shapes against torch in float64 on both
backends: odd sizes, every padding up to the window's reach (asymmetric too), strides 1-3, dilation 1-3, groups,
bias, fused activation, a residual add, batch > 1, two threads, weights as inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import convgen
from convgen import functional as F, nn, schedule, shapes
from convgen.target import Target

from conftest import BACKENDS, assert_close, capped_settings, t64

AVX2 = Target("simulated avx2", vector_bytes=32, vector_registers=16, features=("avx", "avx2", "fma"), cores=1)
AVX512 = Target("simulated avx512", vector_bytes=64, vector_registers=32, features=("avx2", "avx512f", "fma"),
                cores=1)


@pytest.mark.parametrize("size, out, kernel, stride, dilation, pad, inside", [
    (56, 28, 3, 2, 1, 1, (1, 28)),      # 3x3 stride 2: only the first output reads the padding
    (28, 28, 3, 1, 2, 2, (2, 26)),      # dilated 3x3: two outputs on each side
    (224, 112, 7, 2, 1, 3, (2, 111)),   # the 7x7 stride-2 stem
    (3, 9, 3, 1, 1, 4, (4, 5)),         # padding wider than the input: one output inside
    (2, 4, 3, 1, 1, 2, (2, 2)),         # no window inside
])
def test_windows_inside_the_input(size, out, kernel, stride, dilation, pad, inside):
    assert shapes.windows_inside(size, out, kernel, stride, dilation, pad) == inside
    first, end = inside
    for o in range(out):
        taps = [o * stride - pad + k * dilation for k in range(kernel)]
        assert (first <= o < end) == all(0 <= t < size for t in taps)


@pytest.mark.parametrize("target, ocg, out_height, out_width, kernel_w, left, interior, right", [
    # 3x3 stride 2 128x56 -> 28x28: AVX-512's 7-pixel tiles, AVX2's 4-pixel ones; only the first reads padding
    (AVX512, 128, 28, 28, 3, ((0, 7),), (7, 28), ()), (AVX2, 128, 28, 28, 3, ((0, 4),), (4, 28), ()),
    # dilated 256x28: a border tile at each end
    (AVX512, 256, 28, 28, 3, ((0, 7),), (7, 21), ((21, 7),)), (AVX2, 256, 28, 28, 3, ((0, 4),), (4, 24), ((24, 4),)),
    # the 7x7 stride-2 stem, 112-pixel rows of 8 (AVX-512) or 4 (AVX2)
    (AVX512, 64, 112, 112, 7, ((0, 8),), (8, 104), ((104, 8),)), (AVX2, 64, 112, 112, 7, ((0, 4),), (4, 108), ((108, 4),)),
])
def test_border_tiles_follow_each_register_file(target, ocg, out_height, out_width, kernel_w, left, interior, right):
    layers = {28: (56, 2, 1, 1) if ocg == 128 else (28, 1, 2, 2), 112: (224, 2, 1, 3)}
    size, stride, dilation, pad = layers[out_width]
    sched = schedule.conv_schedule(ocg, out_width, 10**9, target, 1, stride_w=stride, kernel_w=kernel_w,
                                   out_height=out_height)
    inside = shapes.windows_inside(size, out_width, kernel_w, stride, dilation, pad)
    tiles = schedule.in_place_row_tiles(sched, out_width, inside)
    assert tiles == schedule.RowTiles(left, interior, right)


def test_two_row_tiles_keep_the_padded_copy():
    """AVX-512's 2-D tiles over 7x7 maps read a padded copy (its cost is small there); AVX2's one-row tiles not."""
    inside = shapes.windows_inside(7, 7, 3, 1, 1, 1)
    wide = schedule.conv_schedule(512, 7, 10**9, AVX512, 1, kernel_w=3, out_height=7)
    narrow = schedule.conv_schedule(512, 7, 10**9, AVX2, 1, kernel_w=3, out_height=7)
    assert wide.tile_rows == 2 and schedule.in_place_row_tiles(wide, 7, inside) is None
    assert narrow.tile_rows == 1 and schedule.in_place_row_tiles(narrow, 7, inside) is not None


def test_many_border_tiles_keep_the_padded_copy():
    sched = schedule.ConvSchedule("direct", 16, 1, 2, 1)
    assert schedule.in_place_row_tiles(sched, 30, (12, 18)) is None   # 6 tiles on each side read the padding
    assert schedule.in_place_row_tiles(sched, 30, (2, 28)) is not None


def _kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    return kernel


@st.composite
def in_place_cases(draw):
    k = draw(st.sampled_from([1, 2, 3, 5, 7]))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    reach = dilation * (k - 1) + 1
    pads = (draw(st.integers(0, reach - 1)), draw(st.integers(0, reach - 1)))
    groups = draw(st.sampled_from([1, 1, 2]))
    c, oc = groups * draw(st.integers(1, 6)), groups * draw(st.integers(4, 37))
    h = draw(st.integers(max(1, reach - 2 * pads[0]), 20))
    w = draw(st.integers(max(1, reach - 2 * pads[1]), 40))
    return dict(k=k, stride=stride, dilation=dilation, pads=pads, groups=groups, c=c, oc=oc, h=h, w=w,
                bias=draw(st.booleans()), relu=draw(st.booleans()), batch=draw(st.integers(1, 2)),
                threads=draw(st.sampled_from([1, 1, 2])))


@pytest.mark.parametrize("backend", BACKENDS)
@capped_settings(12)
@given(case=in_place_cases())
def test_in_place_direct_conv_matches_torch(backend, case):
    """Drawn layers, constant weights; those whose tiles are one row and whose borders need few tiles read
    the input in place, the others the padded copy: both against torch in float64."""
    conv = nn.Conv2d(case["c"], case["oc"], case["k"], stride=case["stride"], padding=case["pads"],
                     dilation=case["dilation"], groups=case["groups"], bias=case["bias"])
    module = nn.Sequential(conv, nn.ReLU()) if case["relu"] else nn.Sequential(conv)
    rng = np.random.default_rng(case["h"] * 41 + case["w"] + case["oc"])
    x = rng.standard_normal((case["batch"], case["c"], case["h"], case["w"])).astype(np.float32)
    model = convgen.compile(module.to_graph(x.shape, name="in_place"), backend=backend, threads=case["threads"],
                            winograd=False)
    kernel = _kernel(model)
    if kernel.template == "conv_direct" and kernel.params["CLIP"]:
        assert kernel.params["RH"] == 1 and not kernel.params["PAD_COPY"]
    state = conv.state_dict()
    expected = TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]) if case["bias"] else None,
                         stride=case["stride"], padding=case["pads"], dilation=case["dilation"], groups=case["groups"])
    assert_close(model(x), (torch.relu(expected) if case["relu"] else expected).numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, out_channels, kwargs", [
    ((1, 5, 23, 31), 20, dict(stride=2, padding=1)),                 # 3x3 stride 2, odd sizes
    ((2, 6, 17, 29), 36, dict(padding=2, dilation=2)),               # dilated, border tiles on both sides
    ((1, 3, 37, 45), 40, dict(stride=2, padding=3, kernel=7)),       # the stem's 7x7 stride 2
    ((1, 4, 11, 26), 33, dict(stride=3, padding=(2, 1), dilation=3)),  # stride and dilation 3
])
def test_benchmark_like_layers_read_in_place(backend, shape, out_channels, kwargs):
    """Layers shaped like the benchmark's direct ones take the in-place path and match torch, with bias and
    ReLU, on two threads."""
    kwargs = dict(kwargs)
    k = kwargs.pop("kernel", 3)
    conv = nn.Conv2d(shape[1], out_channels, k, **kwargs)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    model = convgen.compile(nn.Sequential(conv, nn.ReLU()).to_graph(shape, name="in_place"), backend=backend,
                            threads=2, winograd=False)
    kernel = _kernel(model)
    assert kernel.template == "conv_direct" and kernel.params["CLIP"] and not kernel.params["PAD_COPY"]
    state = conv.state_dict()
    expected = torch.relu(TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), **kwargs))
    assert_close(model(x), expected.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, weight, kwargs", [
    ((2, 5, 13, 30), (24, 5, 4, 4), dict(padding="same")),            # even kernel: pads (1, 2) on each axis
    ((1, 6, 19, 33), (18, 3, 3, 3), dict(stride=2, padding=2, groups=2)),
])
def test_in_place_with_weights_as_inputs(backend, shape, weight, kwargs):
    """The functional API: weights packed at run time, asymmetric "same" pads."""
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(weight).astype(np.float32)
    b = rng.standard_normal(weight[0]).astype(np.float32)
    expected = TF.conv2d(t64(x), t64(w), t64(b), **kwargs)
    assert_close(F.conv2d(x, w, b, backend=backend, **kwargs), expected.numpy())

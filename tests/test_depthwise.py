"""The depthwise kernel (one input plane per group, rows of up to schedule.DEPTHWISE_MAX_ROW pixels, twice that
under a stride, or up to DEPTHWISE_STACKED_MAX_ROW in stacked tiles): the input split into its stride phases
(shapes.PhaseAxis), output pixels in vectors over bands of whole rows or in stacked tiles of rows x a row's
vectors (schedule.stacked_tile), tiles of several channels on small maps.  Its schedule on simulated AVX2 (16 ymm) and
AVX-512 (32 zmm) targets, the layers that take it and those that stay rowwise, and its kernels compiled for
either ISA on both backends against torch in float64 over drawn shapes: odd sizes, channel counts that are
not a multiple of the vector width (nor of the channels per tile), stride 1 to 3, dilation, every padding,
channel multipliers, bias, fused activations, a fused residual add, several bands, two threads, batch 2."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import convgen
from convgen import lower, nn, passes, schedule, shapes
from convgen.target import host

from conftest import BACKENDS, assert_close, capped_settings, t64
from test_conv_targets import AVX2, AVX512, RUNNABLE, compiled_for
from convgen.target import Target

# AVX-512 whose 512-bit FMAs run on two 256-bit pipes (Zen 4): stacked tiles of rows that fit 8 lanes take ymm
ZEN4 = Target("simulated zen4", vector_bytes=64, vector_registers=32, features=AVX512.features, cores=1,
              fma_bytes=32)
RUNNABLE_PIPES = RUNNABLE + ([ZEN4] if AVX512 in RUNNABLE else [])

ACTIVATIONS = {None: (None, lambda y: y), "relu": (nn.ReLU, torch.relu), "hard_swish": (nn.Hardswish, TF.hardswish),
               "hard_sigmoid": (nn.Hardsigmoid, TF.hardsigmoid)}


def _conv_kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    return kernel


def _module(c: int, multiplier: int, k: int, stride: int, padding: int, dilation: int, bias: bool, act):
    conv = nn.Conv2d(c, c * multiplier, k, stride=stride, padding=padding, dilation=dilation, groups=c, bias=bias)
    layer = ACTIVATIONS[act][0]
    return conv, nn.Sequential(conv, layer()) if layer else nn.Sequential(conv)


def _reference(conv, x, act, **kwargs) -> np.ndarray:
    state = conv.state_dict()
    y = TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]) if "bias" in state else None, **kwargs)
    return ACTIVATIONS[act][1](y).numpy()


@st.composite
def depthwise_cases(draw):
    k = draw(st.sampled_from([1, 2, 3, 5, 7]))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding = draw(st.integers(0, (k - 1) * dilation))
    reach = dilation * (k - 1) + 1
    least = max(1, reach - 2 * padding)
    # rows the depthwise kernel can take: output rows of up to DEPTHWISE_STACKED_MAX_ROW pixels
    widest = (schedule.DEPTHWISE_STACKED_MAX_ROW - 1) * stride + reach - 2 * padding
    h = draw(st.integers(max(least, stride + 1), max(least, stride + 1, 24)))
    w = draw(st.integers(least, max(least, min(widest, draw(st.sampled_from([40, 80]))))))
    return dict(c=draw(st.integers(1, 37)), multiplier=draw(st.sampled_from([1, 1, 1, 2, 3])), k=k, stride=stride,
                dilation=dilation, padding=padding, h=h, w=w, bias=draw(st.booleans()),
                act=draw(st.sampled_from(list(ACTIVATIONS))), batch=draw(st.integers(1, 2)),
                threads=draw(st.sampled_from([1, 1, 2])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", RUNNABLE_PIPES, ids=lambda t: t.name)
@capped_settings(12)
@given(case=depthwise_cases())
def test_depthwise_kernel_matches_torch_on_each_target(backend, target, case):
    nn.manual_seed(case["c"] * 7 + case["k"])
    conv, module = _module(case["c"], case["multiplier"], case["k"], case["stride"], case["padding"],
                           case["dilation"], case["bias"], case["act"])
    rng = np.random.default_rng(case["h"] * 37 + case["w"])
    x = rng.standard_normal((case["batch"], case["c"], case["h"], case["w"])).astype(np.float32)
    expected = _reference(conv, x, case["act"], stride=case["stride"], padding=case["padding"],
                          dilation=case["dilation"], groups=case["c"])
    flattened = (case["k"], case["stride"], case["padding"]) == (1, 1, 0)   # a 1x1 plane runs as one row
    if flattened or expected.shape[2] < 2:
        return   # a one-row output
    with compiled_for(target):
        model = convgen.compile(module.to_graph(x.shape, name="dw"), backend=backend, threads=case["threads"])
    kernel = _conv_kernel(model)
    out_h, out_w = expected.shape[2:]
    short = out_w <= schedule.DEPTHWISE_MAX_ROW * (2 if case["stride"] > 1 else 1)
    stacked = out_w <= schedule.DEPTHWISE_STACKED_MAX_ROW and schedule.stacked_tile(
        out_h, out_w, _columns(case["k"], case["stride"], case["dilation"]), target) is not None
    assert kernel.template == ("conv_depthwise" if short or stacked else "conv_rowwise"), kernel.template
    p = kernel.params
    if kernel.template == "conv_depthwise":
        narrow = stacked and target.fma_bytes and out_w <= target.fma_bytes // 4 < target.max_vector_width
        assert p["VW"] == (target.fma_bytes // 4 if narrow else target.max_vector_width) and p["STACKED"] == stacked
        for rows, vectors in p["TILES"]:   # accumulators, one column's weights, a row's loads and a spare fit
            most = _columns(case["k"], case["stride"], case["dilation"]).most
            held = rows * vectors + most + vectors + 1 if stacked else p["CT"] * vectors + 1
            assert held <= target.vector_registers
    assert_close(model(x), expected)


def _columns(k: int, stride: int, dilation: int) -> schedule.ColumnTaps:
    """A k x k window's columns as lower._depthwise_columns groups them, from first principles: a column
    per (row phase, kernel column), its taps the kernel rows of that phase, the farthest (k - 1) * dilation
    // stride phase rows down."""
    phases = [[kh for kh in range(k) if kh * dilation % stride == a] for a in range(stride)]
    phases = [taps for taps in phases if taps]
    return schedule.ColumnTaps(len(phases) * k, max(len(t) for t in phases), (k - 1) * dilation // stride, k * k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target, shape, k, stride, act, stacked", [
    (AVX512, (1, 96, 28, 28), 5, 2, "hard_swish", True),   # MobileNetV3-Small's strided 5x5: 4 phases, 10 columns
    (AVX512, (1, 40, 14, 14), 5, 1, "hard_swish", True),   # 14x14: one tile of 14 rows
    (AVX512, (2, 36, 7, 7), 5, 1, "relu", False),          # 7x7: flat tiles of 2 channels
    (AVX512, (1, 6, 7, 7), 9, 1, None, False),             # 81 taps on 7 rows: the flat tile's loop over the offsets
    (AVX512, (1, 6, 23, 12), 9, 1, None, True),            # 81 taps, 9 a column, stacked
    (AVX512, (1, 3, 301, 16), 3, 1, "hard_swish", True),   # 301 rows: 11 bands of one tile of 26 rows, one of 15
    (AVX512, (1, 192, 28, 28), 7, 1, None, True),          # ConvNeXt's 7x7: 2 tiles of a vector a row
    (AVX512, (1, 5, 19, 61), 3, 1, "relu", True),          # 61 pixels: 4 vectors a row, in tiles of 1
    # 256-bit FMA pipes: 7x7 maps in one stacked tile of 7 rows x 1 ymm
    (ZEN4, (2, 36, 7, 7), 5, 1, "hard_swish", True),       # MobileNetV3-Small's 576x7x7, batch 2
    (ZEN4, (1, 29, 14, 14), 5, 2, "relu", True),           # its 288x14x14 stride 2 -> 7x7
    (ZEN4, (1, 6, 7, 7), 9, 1, None, True),                # 81 taps, 9 a column
    (ZEN4, (1, 7, 5, 8), 3, 1, None, True),                # 5 rows of 8 pixels, the whole vector
])
def test_network_layers_on_the_depthwise_kernel(backend, target, shape, k, stride, act, stacked):
    if target not in RUNNABLE_PIPES:
        pytest.skip(f"{target.name} code does not run on this host")
    nn.manual_seed(shape[1])
    conv, module = _module(shape[1], 1, k, stride, k // 2, 1, True, act)
    x = np.random.default_rng(shape[1]).standard_normal(shape).astype(np.float32)
    with compiled_for(target):
        model = convgen.compile(module.to_graph(x.shape, name="dw"), backend=backend, threads=1)
    kernel = _conv_kernel(model)
    assert kernel.template == "conv_depthwise" and kernel.params["STACKED"] == stacked
    assert kernel.params["VW"] == (8 if target is ZEN4 else 16)
    if shape[2] == 301:
        assert [band[:3] for band in kernel.params["BANDS"]] == [[0, 11, 26], [11, 1, 15]]   # 27 rows fit
    assert_close(model(x), _reference(conv, x, act, stride=stride, padding=k // 2, groups=shape[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, k, stride, padding", [   # on 16 lanes:
    ((1, 16, 112, 112), 3, 2, 1),   # together: MobileNetV3-Small's first depthwise, 56 columns a phase row
    ((2, 3, 9, 67), 3, 2, 1),       # together: phase columns 33 and 34 (the last one's own loop), batch 2
    ((1, 2, 8, 101), 5, 3, 2),      # together: stride 3, three column phases of 34, 33 and 34
    ((1, 4, 9, 60), 3, 2, 0),       # apart: 30 columns a phase, less than 2 vectors
    ((1, 4, 28, 28), 5, 2, 2),      # apart: 14x14 strided
])
def test_strided_column_phases_fill_together(backend, shape, k, stride, padding):
    """FILL_TOGETHER: a strided row's column phases of at least 2 vectors copied in one loop (an interleaved
    group of loads), the common columns first, each phase's last after; shorter rows a loop per phase."""
    nn.manual_seed(shape[1] + k)
    conv, module = _module(shape[1], 1, k, stride, padding, 1, True, "relu")
    x = np.random.default_rng(shape[3]).standard_normal(shape).astype(np.float32)
    model = convgen.compile(module.to_graph(x.shape, name="dw"), backend=backend, threads=1)
    kernel = _conv_kernel(model)
    # phase b's columns: the padded row's positions j * stride + b inside the input [padding, padding + W)
    columns = [sum(padding <= j * stride + b < padding + shape[3] for j in range(shape[3] + 2 * padding))
               for b in range(stride)]
    together = min(columns) >= 2 * host().max_vector_width
    assert kernel.template == "conv_depthwise" and kernel.params["FILL_TOGETHER"] == together
    assert_close(model(x), _reference(conv, x, "relu", stride=stride, padding=padding, groups=shape[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", [None, "relu", "hard_swish"])
def test_depthwise_kernel_adds_a_fused_skip(backend, act):
    """conv(x) + skip, then the activation: the skip is added as each row leaves the band buffer."""
    nn.manual_seed(3)
    conv = nn.Conv2d(12, 12, 3, padding=1, groups=12)
    fn = {None: lambda t: t, "relu": nn.relu, "hard_swish": nn.hardswish}[act]
    graph = convgen.trace(lambda x, s: fn(conv(x) + s), (2, 12, 9, 11), (2, 12, 9, 11), input_names=["x", "skip"],
                          name="dwres")
    rng = np.random.default_rng(5)
    x, skip = (rng.standard_normal((2, 12, 9, 11)).astype(np.float32) for _ in range(2))
    model = convgen.compile(graph, backend=backend, threads=2)
    kernel = _conv_kernel(model)
    assert kernel.template == "conv_depthwise" and kernel.params["RESIDUAL"]
    assert "add" not in {k.op for k in model._lowered.kernels}
    state = conv.state_dict()
    y = TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), padding=1, groups=12) + t64(skip)
    assert_close(model(x, skip), ACTIVATIONS[act][1](y).numpy())


@pytest.mark.parametrize("shape, stride, template", [
    ((1, 8, 14, 14), 1, "conv_depthwise"), ((1, 8, 16, 16), 1, "conv_depthwise"),
    ((1, 8, 17, 17), 1, "conv_depthwise"),     # stacked tiles
    ((1, 8, 56, 56), 2, "conv_depthwise"),     # 28 strided pixels: the rowwise kernel would gather them
    ((1, 8, 112, 112), 2, "conv_depthwise"),   # 56: stacked
    ((1, 8, 65, 65), 1, "conv_rowwise"),       # past DEPTHWISE_STACKED_MAX_ROW
    ((1, 8, 1, 14), 1, "conv_rowwise"),        # one output row
])
def test_which_layers_take_the_depthwise_kernel(shape, stride, template):
    conv = nn.Conv2d(shape[1], shape[1], 3, stride=stride, padding=1, groups=shape[1])
    graph = passes.optimize(conv.to_graph(shape, name="which"))
    (node,) = graph.nodes
    kernel = lower.lower_conv(node, lower.LowerContext(graph, host(), 1))
    assert kernel.template == template


def test_grouped_and_3d_layers_stay_rowwise():
    for module, shape in ((nn.Conv2d(8, 4, 3, padding=1, groups=4), (1, 8, 9, 9)),        # 2 planes per group
                          (nn.Conv3d(4, 4, 3, padding=1, groups=4), (1, 4, 5, 6, 7)),
                          (nn.Conv1d(4, 4, 3, padding=1, groups=4), (1, 4, 12))):
        graph = passes.optimize(module.to_graph(shape, name="rowwise"))
        (node,) = graph.nodes
        assert lower.lower_conv(node, lower.LowerContext(graph, host(), 1)).template == "conv_rowwise"


@pytest.mark.parametrize("target, out_size, pitch, tile", [
    # (channels per tile, vectors per tile, rows per band): AVX-512 takes 16 accumulators, AVX2 12; a 7x7 map
    # (rows 11 apart: 5 vectors of 16, 10 of 8) takes 2 channels per tile on AVX-512, where 5 chains would wait
    (AVX512, 7, 11, (2, 5, 7)), (AVX2, 7, 11, (1, 10, 7)),
    (AVX512, 14, 18, (1, 16, 14)), (AVX2, 14, 18, (1, 12, 14)),
    (AVX512, 28, 16, (1, 16, 28)), (AVX2, 28, 16, (1, 12, 28)),
    (AVX512, 300, 18, (1, 16, 150)),     # bands of at most DEPTHWISE_BAND_FLOATS, balanced: 150 + 150 rows
])
def test_depthwise_tiles_follow_each_register_file(target, out_size, pitch, tile):
    sched = schedule.depthwise_schedule(576, 1, out_size, min(out_size, 16), pitch, 10**9, target, 1)
    assert (sched.path, sched.vector_width) == ("depthwise", target.max_vector_width)
    assert (sched.oc_vectors, sched.row_tile, sched.tile_rows) == tile
    assert sched.oc_vectors * sched.row_tile + 1 <= target.vector_registers


@pytest.mark.parametrize("target, size, k, stride, tile", [
    # (rows, vectors a row) of the stacked tile: the fewest loads per output vector whose accumulators, one
    # column's weights, a row's loads and a spare fit; none with fewer accumulators than FMA chains
    (AVX512, 28, 7, 1, (14, 1)),    # 23 rows of 1 vector fit: 2 x 14 rows; 2 vectors: 3 x 10 rows load more
    (AVX2, 28, 7, 1, None),         # 16 ymm: 7 rows of 1 vector at most, fewer than the 8 chains
    (AVX2, 28, 3, 1, (10, 1)),      # 11 rows of 1 vector: 3 x 10 (balanced: 10, 10, 8)
    (AVX512, 7, 5, 1, None),        # 7 rows of 1 vector: flat tiles of 2 channels instead
    (AVX512, 14, 5, 2, None),       # 7 x 7 outputs
    (AVX512, 56, 3, 1, (19, 1)),    # 4 vectors a row: 27 rows of 1 fit, 3 x 19 over 56
    # 256-bit FMA pipes: rows of up to 8 pixels in ymm, the whole plane in one tile though it has fewer
    # accumulators than chains; wider rows as on AVX512
    (ZEN4, 7, 5, 1, (7, 1)), (ZEN4, 14, 5, 2, (7, 1)), (ZEN4, 8, 3, 1, (8, 1)), (ZEN4, 5, 3, 1, (5, 1)),
    (ZEN4, 9, 3, 1, (9, 1)), (ZEN4, 28, 7, 1, (14, 1)),   # zmm, as AVX512
])
def test_stacked_tiles_follow_each_register_file(target, size, k, stride, tile):
    out = (size + 2 * (k // 2) - k) // stride + 1
    assert schedule.stacked_tile(out, out, _columns(k, stride, 1), target) == tile
    sched = schedule.depthwise_schedule(64, 1, out, out, out + k, 10**9, target, 1, _columns(k, stride, 1))
    assert sched.stacked == (tile is not None)
    narrow = tile is not None and target.fma_bytes and out <= target.fma_bytes // 4
    assert sched.vector_width == (8 if narrow else target.max_vector_width)
    if tile:
        assert (sched.tile_rows, sched.row_tile, sched.oc_vectors) == (*tile, 1)


def test_channels_per_tile_divide_the_groups():
    """A tile of 2 channels needs an even group count; a channel multiplier keeps one channel per tile."""
    assert schedule.depthwise_schedule(575, 1, 7, 7, 11, 10**9, AVX512, 1).oc_vectors == 1
    assert schedule.depthwise_schedule(576, 2, 7, 7, 11, 10**9, AVX512, 1).oc_vectors == 1
    assert schedule.depthwise_schedule(4, 1, 3, 3, 5, 10**9, AVX512, 1).oc_vectors == 4   # 1 vector: 4 x 1


@pytest.mark.parametrize("extent, stride, pad, size, expected", [
    (9, 1, 1, 7, (9, (1,), (7,), (0,))),
    (31, 2, 2, 28, (16, (1, 1), (14, 14), (0, 1))),     # 5x5 stride 2 on 28: even and odd columns
    (17, 2, 2, 14, (9, (1, 1), (7, 7), (0, 1))),
    (7, 3, 0, 7, (3, (0, 0, 0), (3, 2, 2), (0, 1, 2))),
    (5, 2, 3, 1, (3, (2, 1), (0, 1), (1, 0))),          # more padding than input: phase 0 copies nothing
])
def test_phase_axis(extent, stride, pad, size, expected):
    axis = shapes.phase_axis(extent, stride, pad, size)
    assert (axis.extent, axis.before, axis.copied, axis.first) == expected
    for b in range(stride):   # the copied positions are exactly those inside the input
        inside = [j for j in range(axis.extent) if 0 <= j * stride + b - pad < size]
        assert inside == list(range(axis.before[b], axis.before[b] + axis.copied[b]))


def test_tuning_measures_the_rowwise_kernel_against_it():
    from convgen import tune
    graph = passes.optimize(nn.Conv2d(8, 8, 5, padding=2, groups=8).to_graph((1, 8, 14, 14), name="tuned"))
    (node,) = graph.nodes
    assert [s.path for s in tune.candidates(graph, node, host(), 1)] == ["depthwise", "rowwise"]

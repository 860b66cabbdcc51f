"""The pixels convolution path (output pixels along a row in vectors, output channels broadcast),
taken by 1-D convolutions with stride 1 and by 1x1 stride-1 convolutions (planes flattened into one
row): full tiles, chunks of tiles, every kind of tail tile (whole vectors, halved vectors, single
pixels), partial channel blocks, groups, bias, fused activation, runtime weights, threads; against
torch in float64.  Also the channel-block loop order of the direct path, and the rowwise path
(few output channels per group: depthwise) with full and partial row blocks."""
from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convgen
import convgen.functional as F
from convgen import nn, schedule
from convgen.target import Target, host

from conftest import assert_close, t64

VW = host().max_vector_width
TILE = schedule.pixels_accumulators(host())[0] * VW  # pixels of one full tile (2 vectors on 16 registers, 4 on 32)
TAIL = VW + VW // 2 + 3               # a whole vector, a halved one and three single pixels (AVX-512)


def _kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    return kernel


def _compile_conv(module: nn.Module, x: np.ndarray, backend: str, threads: int = 1, winograd: bool = True):
    return convgen.compile(module.to_graph(x.shape, name="pixels"), backend=backend, threads=threads,
                           winograd=winograd)


PIXEL_CASES = [
    # (x shape, out channels, kwargs for Conv1d/2d/3d)
    ((2, 5, 3 * TILE + TAIL), 11, dict(kernel_size=3, padding=1)),                     # partial channel block
    ((1, 4, 40 * TILE + TAIL), 6, dict(kernel_size=5, padding=4, dilation=2)),         # several chunks
    ((1, 6, 2 * TILE), 8, dict(kernel_size=3, groups=2)),                              # no tail, groups
    ((1, 3, TILE + TILE // 4 + 2), 4, dict(kernel_size=2)),                            # one tile and a tail
    ((1, 5, 2 * TILE + TILE - VW + 5), 13, dict(kernel_size=3, padding=2)),            # tail: all but one vector
    ((1, 7, 9, 13), 12, dict(kernel_size=1)),                                          # 1x1 plane flattened
    ((2, 4, 3, 5, 7), 9, dict(kernel_size=1)),                                         # 1x1x1 volume flattened
]


@pytest.mark.parametrize("x_shape, out_channels, kwargs", PIXEL_CASES, ids=[str(c[0]) for c in PIXEL_CASES])
@pytest.mark.parametrize("bias", [True, False])
def test_pixels_path_matches_torch(backend, x_shape, out_channels, kwargs, bias):
    ndim = len(x_shape) - 2
    rng = np.random.default_rng(sum(x_shape) + out_channels)
    module = getattr(nn, f"Conv{ndim}d")(x_shape[1], out_channels, bias=bias, **kwargs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    model = _compile_conv(module, x, backend)
    kernel = _kernel(model)
    # 1x1 planes of one group run as the matrix product (tests/test_conv1x1.py); the others on this path
    pointwise = kwargs["kernel_size"] == 1 and kwargs.get("groups", 1) == 1
    assert kernel.template == ("conv_gemm" if pointwise else "conv_pixels"), kernel.template
    state = module.state_dict()
    expected = getattr(TF, f"conv{ndim}d")(t64(x), t64(state["weight"]), t64(state["bias"]) if bias else None,
                                           **{k: v for k, v in kwargs.items() if k != "kernel_size"})
    assert_close(model(x), expected.numpy())


@pytest.mark.parametrize("registers", [16, 32, host().vector_registers])
def test_pixels_tile_leaves_registers_for_inputs_and_a_weight(registers):
    """The pixels tile's accumulators (MR channels x NV vectors) plus its NV input vectors and one
    broadcast weight fit the register file, whatever the budget the schedule gives the path."""
    target = dataclasses.replace(host(), vector_registers=registers)
    most, budget = schedule.pixels_accumulators(target)
    for ocg in (4, 11, 64, 256):
        sched = schedule.pixels_schedule(ocg, 64 * target.max_vector_width, target, 1, True)
        assert sched.row_tile == most and sched.oc_vectors * sched.row_tile <= budget, sched
        assert sched.oc_vectors * sched.row_tile + sched.row_tile + 1 <= registers, sched


def test_pixels_tail_has_every_kind_of_tile(backend):
    x = np.random.default_rng(0).standard_normal((1, 2, 3 * TILE + TAIL)).astype(np.float32)
    p = _kernel(_compile_conv(nn.Conv1d(2, 5, 1), x, backend)).params
    lanes = [lanes for _, lanes, _ in p["TAIL"]]
    assert lanes[-1] == 1 and p["VW"] in lanes, p["TAIL"]
    assert p["OW"] == p["OW"] // (p["NV"] * p["VW"]) * p["NV"] * p["VW"] + sum(r * l for r, l, _ in p["TAIL"])


def test_pixels_path_chunks_rows_and_runs_on_two_threads(backend):
    rng = np.random.default_rng(5)
    chunk = schedule.tiles_per_chunk(10**6, TILE) * TILE  # pixels of one chunk of a long row
    x = rng.standard_normal((1, 8, 3 * chunk + 7)).astype(np.float32)
    module = nn.Sequential(nn.Conv1d(8, 20, 3, padding=1), nn.Tanh())
    one, two = _compile_conv(module, x, backend), _compile_conv(module, x, backend, threads=2)
    assert _kernel(one).params["CHUNKS"] > 1 and _kernel(two).params["THREADS"] == 2
    state = module.state_dict()
    expected = torch.tanh(TF.conv1d(t64(x), t64(state["0.weight"]), t64(state["0.bias"]), padding=1)).numpy()
    assert_close(one(x), expected)
    np.testing.assert_allclose(two(x), one(x), rtol=1e-6, atol=1e-6)


def test_pixels_path_with_runtime_weights(backend):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 70)).astype(np.float32)
    w = rng.standard_normal((10, 3, 3)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    y = F.conv1d(x, w, b, padding=2, dilation=2, groups=2, backend=backend)
    assert_close(y, TF.conv1d(t64(x), t64(w), t64(b), padding=2, dilation=2, groups=2).numpy())


@pytest.mark.parametrize("weight_bytes", [0, 10 * schedule.BLOCKS_INNER_MAX_WEIGHT_BYTES])
def test_direct_path_either_block_order(backend, weight_bytes, monkeypatch):
    """Channel blocks innermost (small weights) or outermost (large): the same result."""
    monkeypatch.setattr(schedule, "BLOCKS_INNER_MAX_WEIGHT_BYTES", weight_bytes - 1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 9)).astype(np.float32)
    module = nn.Conv2d(5, 40, 3, padding=1, stride=(1, 2))
    model = _compile_conv(module, x, backend, threads=2)
    kernel = _kernel(model)
    assert kernel.template == "conv_direct" and kernel.params["BLOCKS_INNER"] == (weight_bytes > 0)
    state = module.state_dict()
    expected = TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), padding=1, stride=(1, 2))
    assert_close(model(x), expected.numpy())


@pytest.mark.parametrize("width, threads, after", [(13, 1, True), (2 * host().max_vector_width, 1, False),
                                                   (13, 2, False)])
@pytest.mark.parametrize("activation, torch_activation", [(nn.Tanh(), torch.tanh), (nn.ReLU(), torch.relu),
                                                          (nn.Sigmoid(), torch.sigmoid)])
def test_direct_path_activation_over_rows_or_the_whole_output(backend, width, threads, after, activation,
                                                               torch_activation):
    """The fused activation over each finished row, or over the whole output in one pass (a small output on
    one thread whose rows end short of a vector): the same values."""
    rng = np.random.default_rng(width + threads)
    x = rng.standard_normal((2, 64, 7, width + 2)).astype(np.float32)
    module = nn.Sequential(nn.Conv2d(64, 16, 3), activation)
    model = _compile_conv(module, x, backend, threads=threads, winograd=False)  # the direct path's epilogues
    kernel = _kernel(model)
    assert kernel.template == "conv_direct" and kernel.params["THREADS"] == threads
    assert kernel.params["ACTIVATION_AFTER"] == after and kernel.params["activation"] is not None
    state = module[0].state_dict()
    expected = torch_activation(TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"])))
    assert_close(model(x), expected.numpy())


AVX2 = Target("avx2", vector_bytes=32, vector_registers=16, features=("avx2", "fma"), cores=1)


@pytest.mark.parametrize("ocg, out_width, kernel_w, row_tile", [
    (256, 14, 3, 5),   # 5 + 5 + 4 pixels x 2 vectors, not 4 + 4 + 4 + 2 (a tile of 4 accumulators)
    (64, 56, 3, 4),    # fourteen tiles of 4: a wider tile would leave a remainder of 1
    (64, 224, 3, 4),   # a tie (45 tiles of 5 cost as many issue slots as 56 of 4): the narrower
    (512, 7, 3, 4),    # 4 + 3 either way
    (16, 10, 5, 4),    # a 5x5 kernel keeps the budget (LLVM spills the overlapping broadcasts)
])
def test_direct_row_tile_shortens_the_remainder_tile(ocg, out_width, kernel_w, row_tile):
    sched = schedule.conv_schedule(ocg, out_width, 10**9, AVX2, 1, kernel_w=kernel_w)
    assert (sched.path, sched.oc_vectors, sched.row_tile) == ("direct", 2, row_tile)


def test_direct_path_wide_row_tile_matches_torch(backend):
    """The wider tile (5 pixels x 2 vectors on AVX2) and its remainder tile, against torch."""
    x = np.random.default_rng(14).standard_normal((1, 20, 14, 14)).astype(np.float32)
    module = nn.Conv2d(20, 17, 3, padding=1)
    model = _compile_conv(module, x, backend)
    params = _kernel(model).params
    expected_tile = schedule.conv_schedule(17, 14, 10**9, host(), 1, kernel_w=3).row_tile
    assert params["RW"] == expected_tile and (host().vector_registers > 16 or params["RW"] == 5)
    state = module.state_dict()
    assert_close(model(x), TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), padding=1).numpy())


ROWWISE_CASES = [
    # (x shape, out channels, kwargs): few output channels per group take the rowwise path, whose
    # row blocks are all full (a constant trip count) or end with a partial one (rows over 256 pixels)
    ((1, 6, 9, 67), 6, dict(kernel_size=3, padding=1, groups=6)),                        # depthwise, full blocks
    ((2, 4, 5, 7, 9), 4, dict(kernel_size=3, padding=(1, 0, 2), groups=4)),              # depthwise 3-D
    ((1, 3, 2 * 256 + 37), 3, dict(kernel_size=5, padding=2, groups=3)),                 # 3 blocks, the last partial
    ((1, 2, 3, 600), 2, dict(kernel_size=(1, 3), stride=(1, 2), dilation=(1, 3), padding=(0, 4))),  # 300 wide
    ((1, 5, 7, 11), 3, dict(kernel_size=3, stride=2, padding=2)),                        # 3 channels, CG 5
]


@pytest.mark.parametrize("x_shape, out_channels, kwargs", ROWWISE_CASES, ids=[str(c[0]) for c in ROWWISE_CASES])
def test_rowwise_path_matches_torch(backend, x_shape, out_channels, kwargs):
    ndim = len(x_shape) - 2
    rng = np.random.default_rng(sum(x_shape) + out_channels)
    module = getattr(nn, f"Conv{ndim}d")(x_shape[1], out_channels, **kwargs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    model = _compile_conv(module, x, backend)
    kernel = _kernel(model)
    assert kernel.template == "conv_rowwise", kernel.template
    state = module.state_dict()
    expected = getattr(TF, f"conv{ndim}d")(t64(x), t64(state["weight"]), t64(state["bias"]),
                                           **{k: v for k, v in kwargs.items() if k != "kernel_size"})
    assert_close(model(x), expected.numpy())


def test_depthwise_planes_on_two_threads(backend):
    """Each thread pads the planes it works on into its own buffer: a shared one would mix planes."""
    rng = np.random.default_rng(7)
    module = nn.Conv2d(32, 64, 3, padding=2, dilation=2, groups=32)   # 2 output channels per plane
    x = rng.standard_normal((2, 32, 19, 67)).astype(np.float32)   # rows past the depthwise kernel's
    model = _compile_conv(module, x, backend, threads=2)
    kernel = _kernel(model)
    assert kernel.template == "conv_rowwise" and kernel.params["PLANE_PAD"] and kernel.params["THREADS"] == 2
    state = module.state_dict()
    expected = TF.conv2d(t64(x), t64(state["weight"]), t64(state["bias"]), padding=2, dilation=2, groups=32)
    for _ in range(3):
        assert_close(model(x), expected.numpy())

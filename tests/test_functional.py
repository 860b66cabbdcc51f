"""convgen.functional against torch.nn.functional (the oracle) and the numpy reference.

Each drawn parameter set compiles one kernel, so the sizes stay small; the
register-tile edge cases of the "direct" convolution path (output widths that
are not a multiple of the tile, channel counts that are not a multiple of the
vector) get their own test whose sizes come from the host's schedule.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, note
from hypothesis import strategies as st

import convgen.functional as F
from convgen import ops, schedule, shapes
from convgen.target import host
from convgen.threads import resolve_threads

from conftest import assert_close, capped_settings as _settings, t64, torch_pad

# torch's padding="same" with an even kernel warns that it copies the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def compiled_model(op: str, arrays, backend: str, threads=None, where=lambda attrs: True):
    """The CompiledModel convgen.functional built for `op` on `backend` for arguments shaped like `arrays`."""
    arg_shapes = tuple(np.shape(a) for a in arrays)
    matches = [m for (key_op, attrs, key_shapes, key_backend, key_threads), m in F._kernels.items()
               if key_op == op and key_shapes == arg_shapes and key_backend == backend
               and key_threads == resolve_threads(threads)
               and where(attrs)]
    assert len(matches) == 1, f"{len(matches)} compiled {op} kernels for argument shapes {arg_shapes}"
    return matches[0]


FUNCTIONAL_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}
FUNCTIONAL_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
FUNCTIONAL_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
TORCH_MAX = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
TORCH_AVG = {1: TF.avg_pool1d, 2: TF.avg_pool2d, 3: TF.avg_pool3d}


# -- convolution -------------------------------------------------------------------------------

def _scalar_or_tuple(draw, values: tuple[int, ...]):
    """Pass an axis parameter as a plain int when all axes agree (sometimes), else as a tuple."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


@st.composite
def conv_cases(draw):
    ndim = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    grouping = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if grouping == "dense":
        groups, per_group_in = 1, draw(st.integers(1, 20))
        per_group_out = draw(st.integers(1, 20))
    elif grouping == "depthwise":
        channels = draw(st.integers(1, 20))
        groups, per_group_in = channels, 1
        per_group_out = draw(st.integers(1, max(1, 20 // channels)))  # channel multiplier
    else:
        groups = draw(st.integers(2, 5))
        per_group_in = draw(st.integers(1, 20 // groups))
        # both sides of the schedule's switch: rowwise below 4 output channels per group, direct from 4
        per_group_out = draw(st.one_of(st.integers(1, 3), st.integers(4, max(4, 20 // groups))))
    in_channels, out_channels = groups * per_group_in, groups * per_group_out
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    mode = draw(st.sampled_from(["int", "tuple", "valid", "same", "pairs"]))
    if mode == "int":
        p = draw(st.integers(0, 3))
        padding, pairs = p, ((p, p),) * ndim
    elif mode == "tuple":
        padding = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
        pairs = tuple((p, p) for p in padding)
    elif mode == "pairs":
        pairs = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(ndim))
        padding = pairs
    else:
        padding, pairs = mode, None  # resolved once the input size is known
    cap = 17 if ndim < 3 else 7
    spatial = []
    for axis in range(ndim):
        extent = shapes.effective_kernel(kernel[axis], dilation[axis])
        low = 1 if pairs is None and mode == "same" else max(1, extent - (sum(pairs[axis]) if pairs else 0))
        spatial.append(draw(st.integers(low, max(low, cap))))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(ndim=ndim, x_shape=(batch, in_channels, *spatial),
                w_shape=(out_channels, per_group_in, *kernel), groups=groups, bias=bias,
                stride=_scalar_or_tuple(draw, stride), dilation=_scalar_or_tuple(draw, dilation),
                padding=padding, mode=mode, seed=seed)


def _conv_arrays(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(np.float32)
    w = rng.standard_normal(case["w_shape"]).astype(np.float32)
    b = rng.standard_normal(case["w_shape"][0]).astype(np.float32) if case["bias"] else None
    return x, w, b


def _conv_attrs(case) -> ops.ConvAttrs:
    ndim = case["ndim"]
    kernel = case["w_shape"][2:]
    stride = shapes.as_tuple(case["stride"], ndim, "stride", "test")
    dilation = shapes.as_tuple(case["dilation"], ndim, "dilation", "test")
    pads = shapes.resolve_padding(case["padding"], case["x_shape"][2:], kernel, stride, dilation, "test")
    return ops.ConvAttrs(tuple(kernel), stride, pads, dilation, case["groups"])


def _torch_conv(case, x, w, b):
    """torch's answer, or None where torch has no equivalent (padding="same" at stride > 1)."""
    ndim, padding = case["ndim"], case["padding"]
    stride = shapes.as_tuple(case["stride"], ndim, "stride", "test")
    xt = t64(x)
    if case["mode"] == "same" and any(s != 1 for s in stride):
        return None
    if case["mode"] == "pairs":
        xt, padding = torch_pad(xt, padding), 0
    return TORCH_CONV[ndim](xt, t64(w), None if b is None else t64(b), stride=case["stride"],
                            padding=padding, dilation=case["dilation"], groups=case["groups"]).numpy()


@_settings()
@given(case=conv_cases())
def test_conv_matches_torch_and_reference(case, backend):
    x, w, b = _conv_arrays(case)
    attrs = _conv_attrs(case)
    y = FUNCTIONAL_CONV[case["ndim"]](x, w, b, stride=case["stride"], padding=case["padding"],
                                      dilation=case["dilation"], groups=case["groups"], backend=backend)
    ocg = case["w_shape"][0] // case["groups"]
    note(f"schedule: {schedule.conv_schedule(ocg, y.shape[-1], 1, host(), 1)}")
    assert y.dtype == np.float32
    assert_close(y, ops.run_reference("conv", attrs, x, w, b))
    expected = _torch_conv(case, x, w, b)
    if expected is not None:
        assert_close(y, expected)


# The direct path's register tile: `row_tile` pixels of a row x 1 or 2 vectors of output channels.
# Sizes come from the host's schedule so the remainder tile and partial channel vectors really happen.

def _direct_tile_cases():
    target = host()
    cases = set()
    for width in (w for w in (4, 8, 16) if w <= target.max_vector_width):
        for ocg in (width - 1, width + 1, 2 * width, 2 * width + 3):
            if ocg < 4:
                continue
            sched = schedule.conv_schedule(ocg, 1, 1, target, 1)
            rows = max(1, schedule.accumulator_budget(target) // sched.oc_vectors)
            widths = [ow for ow in (rows + 1, rows + 2, 2 * rows + 1, 2 * rows + 3, 3 * rows - 1)
                      if ow % schedule.conv_schedule(ocg, ow, 1, target, 1).row_tile]
            cases.update((ocg, ow) for ow in widths[:2])
    return sorted(cases)


@pytest.mark.parametrize("ocg, out_width", _direct_tile_cases())
def test_conv_direct_tiles_with_remainders(backend, ocg, out_width):
    # two groups where one could take the narrow path (few channels, a row's pixel vectors fuller)
    groups = 1 + ocg % 2 if ocg > schedule.NARROW_MAX_CHANNELS else 2
    sched = schedule.conv_schedule(ocg, out_width, 1, host(), 1)
    assert sched.path == "direct" and out_width % sched.row_tile != 0, sched  # a remainder tile exists
    rng = np.random.default_rng(ocg * 1000 + out_width)
    # two rows (a single long row would take the pixels path); kernel 1x3, pad 1 along W: same width
    x = rng.standard_normal((2, 3 * groups, 2, out_width)).astype(np.float32)
    w = rng.standard_normal((ocg * groups, 3, 1, 3)).astype(np.float32)
    b = rng.standard_normal(ocg * groups).astype(np.float32)
    y = F.conv2d(x, w, b, padding=(0, 1), groups=groups, backend=backend)
    (kernel,) = compiled_model("conv", (x, w, b), backend, where=lambda a: a.groups == groups)._lowered.kernels
    assert kernel.template == "conv_direct" and kernel.params["OW"] % kernel.params["RW"] != 0
    assert_close(y, TF.conv2d(t64(x), t64(w), t64(b), padding=(0, 1), groups=groups).numpy())


@st.composite
def tile_cases(draw):
    target = host()
    ocg = draw(st.integers(4, 3 * target.max_vector_width + 2))
    rows = schedule.accumulator_budget(target)
    return dict(ocg=ocg, groups=draw(st.integers(1, 2)), cg=draw(st.integers(1, 3)),
                out_width=draw(st.integers(1, 2 * rows + 5)), kernel=draw(st.integers(1, 3)),
                stride=draw(st.integers(1, 2)), height=draw(st.integers(1, 2)), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**32 - 1)))


@_settings(30)
@given(case=tile_cases())
def test_conv_direct_path_any_width_and_channel_count(case, backend):
    """2-D convs with one or two rows of any width up to twice the row budget, any channel count >= 4."""
    g, k, s = case["groups"], case["kernel"], case["stride"]
    width = (case["out_width"] - 1) * s + k
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((1, g * case["cg"], case["height"] + k - 1, width)).astype(np.float32)
    w = rng.standard_normal((g * case["ocg"], case["cg"], k, k)).astype(np.float32)
    b = rng.standard_normal(g * case["ocg"]).astype(np.float32) if case["bias"] else None
    y = F.conv2d(x, w, b, stride=(1, s), groups=g, backend=backend)
    assert y.shape[-1] == case["out_width"]
    note(f"schedule: {schedule.conv_schedule(case['ocg'], case['out_width'], 1, host(), 1)}")
    expected = TF.conv2d(t64(x), t64(w), None if b is None else t64(b), stride=(1, s), groups=g).numpy()
    assert_close(y, expected)


LARGER_LAYERS = [
    # (x shape, weight shape, kwargs)
    ((1, 64, 20, 23), (64, 64, 3, 3), dict(padding=1)),
    ((2, 3, 33, 35), (16, 3, 7, 7), dict(stride=2, padding=3)),
    ((1, 32, 15, 40), (48, 32, 1, 1), {}),
    ((1, 32, 17, 19), (32, 1, 3, 3), dict(padding=1, groups=32)),           # depthwise: rowwise
    ((1, 16, 13, 31), (64, 4, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=4)),
    ((1, 8, 6, 7, 30), (24, 8, 3, 3, 3), dict(padding=1)),
    ((2, 12, 45), (40, 12, 5), dict(stride=2, padding=2)),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", LARGER_LAYERS,
                         ids=[f"{x}-{w}" for x, w, _ in LARGER_LAYERS])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_larger_layers_match_torch(backend, x_shape, w_shape, kwargs, bias):
    ndim = len(x_shape) - 2
    rng = np.random.default_rng(len(x_shape) * 100 + w_shape[0])
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    y = FUNCTIONAL_CONV[ndim](x, w, b, backend=backend, **kwargs)
    expected = TORCH_CONV[ndim](t64(x), t64(w), None if b is None else t64(b), **kwargs).numpy()
    assert_close(y, expected)


@_settings(20)
@given(ndim=st.integers(1, 3), size=st.integers(1, 9), kernel=st.integers(1, 4), stride=st.integers(2, 3),
       dilation=st.integers(1, 2), channels=st.sampled_from([1, 2, 6]), lower=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_conv_same_padding_at_any_stride(backend, ndim, size, kernel, stride, dilation, channels, lower, seed):
    """ONNX SAME_UPPER / SAME_LOWER at stride > 1 (torch refuses): out = ceil(in / stride)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2) + (size,) * ndim).astype(np.float32)
    w = rng.standard_normal((channels, 2) + (kernel,) * ndim).astype(np.float32)
    mode = "same_lower" if lower else "same"
    y = FUNCTIONAL_CONV[ndim](x, w, stride=stride, padding=mode, dilation=dilation, backend=backend)
    assert y.shape[2:] == (math.ceil(size / stride),) * ndim
    pads = shapes.resolve_padding(mode, x.shape[2:], (kernel,) * ndim, (stride,) * ndim, (dilation,) * ndim, "t")
    attrs = ops.ConvAttrs((kernel,) * ndim, (stride,) * ndim, pads, (dilation,) * ndim)
    assert_close(y, ops.run_reference("conv", attrs, x, w))
    # the same thing spelt out for torch: explicit asymmetric zero padding, then no padding
    expected = TORCH_CONV[ndim](torch_pad(t64(x), pads), t64(w), stride=stride, dilation=dilation).numpy()
    assert_close(y, expected)


@pytest.mark.parametrize("out_channels, groups", [(2, 1), (9, 1), (6, 3), (40, 1)])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv_propagates_nan_and_inf_like_torch(backend, out_channels, groups, padding):
    rng = np.random.default_rng(out_channels)
    x = rng.standard_normal((1, 3, 9, 11)).astype(np.float32)
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 6, 8] = np.inf
    x[0, 2, 7, 1] = -np.inf
    w = rng.standard_normal((out_channels, 3 // groups, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=padding, groups=groups, backend=backend)
    expected = TF.conv2d(t64(x), t64(w), padding=padding, groups=groups).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected))
    assert np.isnan(expected).any() and np.isinf(expected).any()
    finite = np.isfinite(expected)
    assert_close(y[finite], expected[finite])


# -- pooling -----------------------------------------------------------------------------------

@st.composite
def pool_cases(draw, kind: str):
    ndim = draw(st.integers(1, 3))
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = None if draw(st.booleans()) else tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim)) if kind == "max" else (1,) * ndim
    extents = [shapes.effective_kernel(k, d) for k, d in zip(kernel, dilation)]
    # convgen allows half the dilated window; torch only half the kernel.  Per-side (begin, end)
    # pairs are convgen's own (ONNX's pads): the reference checks those alone.
    per_side = draw(st.integers(0, 4)) == 0
    if per_side:
        padding = tuple((draw(st.integers(0, e // 2)), draw(st.integers(0, e // 2))) for e in extents)
    else:
        padding = tuple(draw(st.integers(0, e // 2)) for e in extents)
    cap = 17 if ndim < 3 else 8
    lows = [max(1, e - (sum(p) if per_side else 2 * p)) for e, p in zip(extents, padding)]
    spatial = tuple(draw(st.integers(low, max(low, cap))) for low in lows)
    case = dict(ndim=ndim, x_shape=(batch, channels) + spatial, kernel=kernel, stride=stride,
                padding=padding, per_side=per_side, dilation=dilation, ceil_mode=draw(st.booleans()),
                seed=draw(st.integers(0, 2**32 - 1)))
    if kind == "max":
        case["return_indices"] = draw(st.booleans())
    else:
        case["count_include_pad"] = draw(st.booleans())
        case["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 10)))
    # pass axis parameters as ints or tuples, as torch users do
    for key in ("kernel", "dilation") + (() if per_side else ("padding",)):
        case[key] = _scalar_or_tuple(draw, case[key])
    if stride is not None:
        case["stride"] = _scalar_or_tuple(draw, stride)
    return case


def _pool_attrs(kind: str, case) -> ops.PoolAttrs:
    ndim = case["ndim"]
    kernel = shapes.as_tuple(case["kernel"], ndim, "kernel", "t")
    stride = kernel if case["stride"] is None else shapes.as_tuple(case["stride"], ndim, "stride", "t")
    dilation = shapes.as_tuple(case["dilation"], ndim, "dilation", "t")
    pads = shapes.resolve_padding(case["padding"], case["x_shape"][2:], kernel, stride, dilation, "t")
    return ops.PoolAttrs(kind, kernel, stride, pads, dilation, case["ceil_mode"],
                         case.get("count_include_pad", True), case.get("divisor_override"),
                         case.get("return_indices", False))


def _tie_free(shape, seed) -> np.ndarray:
    """A random permutation of 0..size-1, shifted to have negatives: no two elements are equal."""
    size = math.prod(shape)
    return (np.random.default_rng(seed).permutation(size) - size / 2).reshape(shape).astype(np.float32)


@_settings()
@given(case=pool_cases("max"))
def test_max_pool_matches_torch_and_reference(case, backend):
    x = _tie_free(case["x_shape"], case["seed"])
    ndim, with_indices = case["ndim"], case["return_indices"]
    result = FUNCTIONAL_MAX[ndim](x, case["kernel"], case["stride"], case["padding"], case["dilation"],
                                  case["ceil_mode"], with_indices, backend=backend)
    y, indices = result if with_indices else (result, None)
    attrs = _pool_attrs("max", case)
    ref = ops.run_reference("pool", attrs, x)
    ref_y, ref_indices = ref if with_indices else (ref, None)
    np.testing.assert_array_equal(y, ref_y)
    if with_indices:
        assert indices.dtype == np.int64
        np.testing.assert_array_equal(indices, ref_indices)
    torch_ok = not case["per_side"] and all(p <= k // 2 for (p, _), k in zip(attrs.pads, attrs.kernel))
    if torch_ok:
        expected = TORCH_MAX[ndim](t64(x), case["kernel"], case["stride"], case["padding"], case["dilation"],
                                   case["ceil_mode"], with_indices)
        if with_indices:
            np.testing.assert_array_equal(y, expected[0].numpy())
            np.testing.assert_array_equal(indices, expected[1].numpy())
        else:
            np.testing.assert_array_equal(y, expected.numpy())


def _torch_avg(case, x):
    ndim = case["ndim"]
    xt, kernel, stride, padding = t64(x), case["kernel"], case["stride"], case["padding"]
    if ndim == 1:  # torch's avg_pool1d has no divisor_override: a unit height in 2-D is the same pool
        xt = xt[:, :, None]
        kernel = (1,) + shapes.as_tuple(kernel, 1, "k", "t")
        stride = None if stride is None else (1,) + shapes.as_tuple(stride, 1, "s", "t")
        padding = (0,) + shapes.as_tuple(padding, 1, "p", "t")
    out = TORCH_AVG[max(ndim, 2)](xt, kernel, stride, padding, case["ceil_mode"], case["count_include_pad"],
                                  case["divisor_override"])
    return (out[:, :, 0] if ndim == 1 else out).numpy()


@_settings()
@given(case=pool_cases("avg"))
def test_avg_pool_matches_torch_and_reference(case, backend):
    x = np.random.default_rng(case["seed"]).standard_normal(case["x_shape"]).astype(np.float32)
    y = FUNCTIONAL_AVG[case["ndim"]](x, case["kernel"], case["stride"], case["padding"], case["ceil_mode"],
                                     case["count_include_pad"], case["divisor_override"], backend=backend)
    attrs = _pool_attrs("avg", case)
    assert_close(y, ops.run_reference("pool", attrs, x))
    if case["per_side"]:
        return  # torch pads both sides alike
    if case["ndim"] == 3 and any(i < k for i, k in zip(x.shape[2:], attrs.kernel)):
        return  # torch's avg_pool3d (only) refuses an input smaller than the kernel, padding or not
    assert_close(y, _torch_avg(case, x))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_avg_pool_1d_2d_3d_plain_forms_match_torch(backend, ndim, rng):
    """The plain torch calls, divisor_override left out (torch's avg_pool1d has none)."""
    x = rng.standard_normal((2, 3) + (7,) * ndim).astype(np.float32)
    y = FUNCTIONAL_AVG[ndim](x, 3, 2, 1, True, False, backend=backend)
    expected = TORCH_AVG[ndim](t64(x), 3, 2, 1, True, False)
    assert_close(y, expected.numpy())


# (input size, kernel, stride, padding): with ceil_mode the last window may overhang the padded input
# (torch then divides by the part inside input + padding) or would start in the right padding (dropped)
CEIL_MODE_EDGES = [(5, 2, 2, 0), (5, 3, 2, 1), (6, 3, 2, 1), (7, 4, 3, 2), (2, 2, 3, 1), (1, 3, 2, 1),
                   (10, 4, 4, 1), (8, 3, 3, 0), (4, 4, 1, 2)]


@pytest.mark.parametrize("size, kernel, stride, padding", CEIL_MODE_EDGES)
def test_pools_ceil_mode_edges_match_torch(backend, size, kernel, stride, padding):
    x = _tie_free((2, 2, size + 1, size), size * 100 + kernel * 10 + stride)
    xt = torch.from_numpy(x).double()
    for ceil_mode in (False, True):
        for count_include_pad in (False, True):
            y = F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, backend=backend)
            assert_close(y, TF.avg_pool2d(xt, kernel, stride, padding, ceil_mode, count_include_pad).numpy())
        y, indices = F.max_pool2d(x, kernel, stride, padding, 1, ceil_mode, True, backend=backend)
        expected, expected_indices = TF.max_pool2d(xt, kernel, stride, padding, 1, ceil_mode, True)
        np.testing.assert_array_equal(y, expected.numpy())
        np.testing.assert_array_equal(indices, expected_indices.numpy())


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_max_pool_propagates_nan_and_inf_like_torch(backend, ndim):
    x = _tie_free((2, 2) + (6,) * ndim, ndim)
    flat = x.reshape(-1)
    flat[[3, 50 % flat.size, 77 % flat.size]] = [np.nan, np.inf, -np.inf]
    flat[-1] = np.nan
    x[1, 0] = -np.inf  # a whole plane of -inf: the index of each window's first tap, as torch
    y, indices = FUNCTIONAL_MAX[ndim](x, 3, 2, 1, 1, True, True, backend=backend)
    expected, expected_indices = TORCH_MAX[ndim](torch.from_numpy(x), 3, 2, 1, 1, True, True)
    assert np.isnan(expected.numpy()).any()
    np.testing.assert_array_equal(y, expected.numpy())  # NaNs compare equal here
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    y_avg = FUNCTIONAL_AVG[ndim](x, 2, backend=backend)
    np.testing.assert_array_equal(np.isnan(y_avg), np.isnan(TORCH_AVG[ndim](t64(x), 2).numpy()))


def test_max_pool_window_entirely_in_padding_matches_torch(backend):
    """Dilation can make a window's every tap fall in the padding: -inf, and torch's index of its first tap."""
    x = np.arange(1, 4, dtype=np.float32).reshape(1, 1, 3)
    y, indices = F.max_pool1d(x, 2, 1, padding=1, dilation=4, return_indices=True, backend=backend)
    expected, expected_indices = TF.max_pool1d(torch.from_numpy(x), 2, 1, padding=1, dilation=4,
                                               return_indices=True)
    np.testing.assert_array_equal(y, expected.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())


def test_reference_max_pool_index_of_window_entirely_in_padding():
    x = np.arange(1, 4, dtype=np.float32).reshape(1, 1, 3)
    attrs = ops.PoolAttrs("max", (2,), (1,), ((1, 1),), (4,), return_indices=True)
    _, indices = ops.run_reference("pool", attrs, x)
    _, expected = TF.max_pool1d(torch.from_numpy(x), 2, 1, padding=1, dilation=4, return_indices=True)
    np.testing.assert_array_equal(indices, expected.numpy())


# -- threads -----------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 16, 30, 30), (32, 16, 3, 3), dict(padding=1)),             # direct path
    ((1, 24, 40, 40), (24, 1, 5, 5), dict(padding=2, groups=24)),   # rowwise path
    ((1, 8, 12, 14, 14), (12, 8, 3, 3, 3), dict(stride=(1, 2, 1))),
])
def test_conv_two_threads_match_one(backend, x_shape, w_shape, kwargs, rng):
    ndim = len(x_shape) - 2
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    one = FUNCTIONAL_CONV[ndim](x, w, b, backend=backend, threads=1, **kwargs)
    two = FUNCTIONAL_CONV[ndim](x, w, b, backend=backend, threads=2, **kwargs)
    scheduled = [compiled_model("conv", (x, w, b), backend, threads=n)._lowered.kernels[0].params["THREADS"] for n in (1, 2)]
    assert scheduled == [1, 2], "the layer should be big enough to run on two threads"
    assert_close(two, one, rtol=1e-6, atol=1e-7)
    assert_close(two, TORCH_CONV[ndim](t64(x), t64(w), t64(b), **kwargs).numpy())


def test_pool_two_threads_match_one(backend, rng):
    x = rng.standard_normal((2, 16, 64, 64)).astype(np.float32)
    one = F.max_pool2d(x, 3, 1, 1, return_indices=True, backend=backend, threads=1)
    two = F.max_pool2d(x, 3, 1, 1, return_indices=True, backend=backend, threads=2)
    is_max = lambda attrs: attrs.kind == "max"  # noqa: E731
    assert compiled_model("pool", (x,), backend, threads=2, where=is_max)._lowered.kernels[0].params["THREADS"] == 2
    np.testing.assert_array_equal(two[0], one[0])
    np.testing.assert_array_equal(two[1], one[1])
    avg_one = F.avg_pool2d(x, 3, 1, 1, backend=backend, threads=1)
    avg_two = F.avg_pool2d(x, 3, 1, 1, backend=backend, threads=2)
    np.testing.assert_array_equal(avg_two, avg_one)
    assert_close(avg_two, TF.avg_pool2d(t64(x), 3, 1, 1).numpy())


@pytest.mark.parametrize("length, kernel, stride, padding", [(3, 4, 3, 0), (1, 2, 2, 0), (2, 5, 2, 1), (5, 4, 3, 1)])
def test_ceil_mode_window_overhanging_the_input_matches_torch(backend, length, kernel, stride, padding, rng):
    """With ceil_mode a window may start inside the input and hang past its end."""
    x = rng.permutation(length * 2).astype(np.float32).reshape(1, 2, length)
    t = torch.from_numpy(x)
    values, indices = F.max_pool1d(x, kernel, stride, padding, ceil_mode=True, return_indices=True, backend=backend)
    expected_values, expected_indices = TF.max_pool1d(t, kernel, stride, padding, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(values, expected_values.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    for include_pad in (True, False):
        assert_close(F.avg_pool1d(x, kernel, stride, padding, ceil_mode=True, count_include_pad=include_pad,
                                  backend=backend),
                     TF.avg_pool1d(t, kernel, stride, padding, ceil_mode=True, count_include_pad=include_pad).numpy())


@pytest.mark.parametrize("width", [17, 33])
def test_pixels_path_scalar_tail_with_groups_and_bias(width, backend):
    """The pixels path's scalar tail on a grouped 1x1 conv with bias: gcc 12 -O3 -march=native miscompiled its
    unrolled epilogue (found by h14f as a drawn test_conv_direct_path_any_width_and_channel_count case)."""
    rng = np.random.default_rng(width)
    x = rng.standard_normal((1, 2, 2, width)).astype(np.float32)
    w = rng.standard_normal((64, 1, 1, 1)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    y = F.conv2d(x, w, b, groups=2, backend=backend)
    assert_close(y, TF.conv2d(t64(x), t64(w), t64(b), groups=2).numpy())

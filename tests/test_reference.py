"""Every op's numpy reference (convgen.ops.run_reference) against PyTorch, over hypothesis-drawn parameters.

The references are what every compiled kernel is tested against, so they are
checked here on their own: torch computes in float64 and the references
return float32, hence rtol=1e-4, atol=1e-5.  Each test also checks that the
op's shape inference agrees with the shape the reference produced.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convgen import ops, shapes
from convgen.ir import TensorType
from convgen.ops import Activation

RTOL, ATOL = 1e-4, 1e-5
CONV = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}
MAX_POOL = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
# the largest spatial size per rank, so 3-D cases stay small
MAX_SIZE = {1: 12, 2: 10, 3: 6}
ACTIVATIONS = [None, Activation("relu"), Activation("clip", (0.0, 6.0)), Activation("clip", (-0.5, 0.25)),
               Activation("leaky_relu", (0.1,)), Activation("sigmoid"), Activation("tanh"),
               Activation("hard_sigmoid", (0.2, 0.5)), Activation("hard_sigmoid", (1 / 6, 0.5)), Activation("hard_swish")]


def t64(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def torch_pad(x: torch.Tensor, pairs, value: float = 0.0) -> torch.Tensor:
    """(begin, end) per spatial axis -> torch's flat pad list (last axis first)."""
    flat: list[int] = []
    for begin, end in reversed(tuple(pairs)):
        flat += [begin, end]
    return TF.pad(x, flat, value=value)


def torch_activation(activation: Activation | None, t: torch.Tensor) -> torch.Tensor:
    if activation is None:
        return t
    kind, params = activation.kind, activation.params
    if kind == "relu":
        return torch.relu(t)
    if kind == "clip":
        return torch.clamp(t, params[0], params[1])
    if kind == "leaky_relu":
        return TF.leaky_relu(t, params[0])
    if kind == "sigmoid":
        return torch.sigmoid(t)
    if kind == "hard_sigmoid":
        return torch.clamp(params[0] * t + params[1], 0, 1)
    if kind == "hard_swish":
        return TF.hardswish(t)
    assert kind == "tanh"
    return torch.tanh(t)


def close(actual, expected: torch.Tensor | np.ndarray) -> None:
    expected = expected.numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert isinstance(actual, np.ndarray) and actual.dtype == np.float32, f"reference returned {type(actual)}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def inferred_shape(op: str, attrs, *arrays: np.ndarray, index: int = 0) -> tuple[int, ...]:
    types = ops.get(op).infer("layer 'test'", attrs, [TensorType(a.shape) for a in arrays])
    return types[index].shape


def normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(tuple(shape)).astype(np.float32)


def distinct(rng: np.random.Generator, shape) -> np.ndarray:
    """Values without ties (a permutation of distinct numbers), so argmax is unique."""
    n = math.prod(shape)
    return (rng.permutation(n).astype(np.float32) / max(n, 1) - 0.5).reshape(shape)


# -- convolution ------------------------------------------------------------------------------------------

@st.composite
def conv_case(draw):
    ndim = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if mode == "dense":
        groups, per_in, per_out = 1, draw(st.integers(1, 6)), draw(st.integers(1, 6))
    elif mode == "grouped":
        groups, per_in, per_out = draw(st.integers(2, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    else:  # depthwise, with a channel multiplier
        groups, per_in, per_out = draw(st.integers(1, 8)), 1, draw(st.integers(1, 2))
    kernel, stride, dilation, pads, size = [], [], [], [], []
    for _ in range(ndim):
        k = draw(st.integers(1, 4 if ndim < 3 else 3))
        d = draw(st.integers(1, 3 if ndim < 3 else 2))
        pb, pe = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        eff = d * (k - 1) + 1
        low = max(1, eff - pb - pe)
        kernel.append(k), dilation.append(d), pads.append((pb, pe)), stride.append(draw(st.integers(1, 3)))
        size.append(draw(st.integers(low, max(low, MAX_SIZE[ndim]))))
    return dict(ndim=ndim, groups=groups, in_channels=groups * per_in, out_channels=groups * per_out,
                kernel=tuple(kernel), stride=tuple(stride), dilation=tuple(dilation), pads=tuple(pads),
                size=tuple(size), batch=draw(st.integers(1, 2)), bias=draw(st.booleans()),
                activation=draw(st.sampled_from(ACTIVATIONS)), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None)
@given(case=conv_case())
def test_conv_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    g = case["groups"]
    x = normal(rng, (case["batch"], case["in_channels"]) + case["size"])
    w = normal(rng, (case["out_channels"], case["in_channels"] // g) + case["kernel"])
    b = normal(rng, (case["out_channels"],)) if case["bias"] else None
    attrs = ops.ConvAttrs(case["kernel"], case["stride"], case["pads"], case["dilation"], g, case["activation"])
    arrays = (x, w) if b is None else (x, w, b)
    got = ops.run_reference("conv", attrs, *arrays)
    expected = CONV[case["ndim"]](torch_pad(t64(x), case["pads"]), t64(w), None if b is None else t64(b),
                                  stride=case["stride"], padding=0, dilation=case["dilation"], groups=g)
    close(got, torch_activation(case["activation"], expected))
    assert got.shape == inferred_shape("conv", attrs, *arrays)


def test_conv_depthwise_and_pointwise_examples():
    rng = np.random.default_rng(7)
    x = normal(rng, (2, 5, 9, 7))
    w = normal(rng, (5, 1, 3, 3))
    attrs = ops.ConvAttrs((3, 3), (2, 1), ((1, 1), (0, 2)), (1, 2), groups=5)
    close(ops.run_reference("conv", attrs, x, w),
          TF.conv2d(torch_pad(t64(x), attrs.pads), t64(w), stride=(2, 1), dilation=(1, 2), groups=5))
    w = normal(rng, (3, 5, 1, 1))
    b = normal(rng, (3,))
    attrs = ops.ConvAttrs((1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1))
    close(ops.run_reference("conv", attrs, x, w, b), TF.conv2d(t64(x), t64(w), t64(b)))


# -- locally connected ------------------------------------------------------------------------------------

def torch_locally_connected(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, kernel, stride, pads):
    """Unfold the padded input into patches, then one weight matrix per output position.

    1-D runs as 2-D with height 1.  w: (*out_spatial, OC, C, *kernel); b: (OC, *out_spatial).
    """
    ndim = len(kernel)
    xp = torch_pad(x, pads)
    if ndim == 1:
        xp, kernel, stride = xp.unsqueeze(2), (1,) + tuple(kernel), (1,) + tuple(stride)
    out_spatial = tuple(w.shape[:ndim])
    oc = w.shape[ndim]
    cols = TF.unfold(xp, kernel, stride=stride)                          # (N, C*prod(kernel), L)
    weights = w.reshape(math.prod(out_spatial), oc, -1)                  # (L, OC, C*prod(kernel))
    out = torch.einsum("njl,loj->nol", cols, weights).reshape((x.shape[0], oc) + out_spatial)
    return out if b is None else out + b.unsqueeze(0)


@st.composite
def locally_connected_case(draw):
    ndim = draw(st.integers(1, 2))
    kernel, stride, pads, size = [], [], [], []
    for _ in range(ndim):
        k = draw(st.integers(1, 4))
        pb, pe = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        low = max(1, k - pb - pe)
        kernel.append(k), pads.append((pb, pe)), stride.append(draw(st.integers(1, 3)))
        size.append(draw(st.integers(low, max(low, 9))))
    return dict(ndim=ndim, kernel=tuple(kernel), stride=tuple(stride), pads=tuple(pads), size=tuple(size),
                batch=draw(st.integers(1, 2)), in_channels=draw(st.integers(1, 5)),
                out_channels=draw(st.integers(1, 5)), bias=draw(st.booleans()),
                activation=draw(st.sampled_from(ACTIVATIONS)), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=50, deadline=None)
@given(case=locally_connected_case())
def test_locally_connected_matches_torch_unfold(case):
    rng = np.random.default_rng(case["seed"])
    out_spatial = shapes.window_output_shape("lc", case["size"], case["kernel"], case["stride"], case["pads"],
                                             (1,) * case["ndim"])
    x = normal(rng, (case["batch"], case["in_channels"]) + case["size"])
    w = normal(rng, out_spatial + (case["out_channels"], case["in_channels"]) + case["kernel"])
    b = normal(rng, (case["out_channels"],) + out_spatial) if case["bias"] else None
    attrs = ops.LocallyConnectedAttrs(case["kernel"], case["stride"], case["pads"], case["activation"])
    arrays = (x, w) if b is None else (x, w, b)
    got = ops.run_reference("locally_connected", attrs, *arrays)
    expected = torch_locally_connected(t64(x), t64(w), None if b is None else t64(b), case["kernel"],
                                       case["stride"], case["pads"])
    close(got, torch_activation(case["activation"], expected))
    assert got.shape == inferred_shape("locally_connected", attrs, *arrays)


def test_locally_connected_with_shared_weights_is_a_convolution():
    rng = np.random.default_rng(3)
    x = normal(rng, (2, 3, 8, 7))
    w = normal(rng, (4, 3, 3, 2))
    pads = ((1, 0), (0, 1))
    out_spatial = shapes.window_output_shape("lc", (8, 7), (3, 2), (2, 1), pads, (1, 1))
    shared = np.broadcast_to(w, out_spatial + w.shape).copy()
    got = ops.run_reference("locally_connected", ops.LocallyConnectedAttrs((3, 2), (2, 1), pads), x, shared)
    close(got, TF.conv2d(torch_pad(t64(x), pads), t64(w), stride=(2, 1)))


# -- pooling ------------------------------------------------------------------------------------------------

@st.composite
def pool_case(draw, kind: str):
    """Symmetric pads <= kernel // 2 (what torch accepts) and an output of at least 1 in floor mode."""
    ndim = draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    kernel, stride, dilation, pads, size = [], [], [], [], []
    for _ in range(ndim):
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, 3 if ndim < 3 else 2)) if kind == "max" else 1
        p = draw(st.integers(0, k // 2))
        s = draw(st.integers(1, 3))
        # floor mode needs the padded input to hold the dilated kernel; ceil_mode lets the one window
        # overhang the end by up to stride - 1
        low = max(1, d * (k - 1) + 1 - 2 * p - (s - 1 if ceil_mode else 0))
        if kind == "avg" and ndim == 3:
            low = max(low, k)  # torch's avg_pool3d alone refuses an input smaller than the kernel, padded or not
        i = draw(st.integers(low, max(low, MAX_SIZE[ndim])))
        span = i + 2 * p - d * (k - 1) - 1
        out = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= i + p:
            out -= 1
        assume(out >= 1)
        kernel.append(k), dilation.append(d), pads.append((p, p)), stride.append(s), size.append(i)
    divisor = draw(st.one_of(st.none(), st.integers(1, 6))) if kind == "avg" else None
    return dict(ndim=ndim, kernel=tuple(kernel), stride=tuple(stride), dilation=tuple(dilation), pads=tuple(pads),
                size=tuple(size), batch=draw(st.integers(1, 2)), channels=draw(st.integers(1, 4)),
                ceil_mode=ceil_mode, count_include_pad=draw(st.booleans()), divisor_override=divisor,
                return_indices=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None)
@given(case=pool_case("max"))
def test_max_pool_values_and_indices_match_torch(case):
    rng = np.random.default_rng(case["seed"])
    x = distinct(rng, (case["batch"], case["channels"]) + case["size"])
    attrs = ops.PoolAttrs("max", case["kernel"], case["stride"], case["pads"], case["dilation"], case["ceil_mode"],
                          return_indices=case["return_indices"])
    got = ops.run_reference("pool", attrs, x)
    values, indices = MAX_POOL[case["ndim"]](t64(x), case["kernel"], case["stride"], [p for p, _ in case["pads"]],
                                             case["dilation"], ceil_mode=case["ceil_mode"], return_indices=True)
    if case["return_indices"]:
        assert isinstance(got, tuple) and len(got) == 2
        got_values, got_indices = got
        assert got_indices.dtype == np.int64
        np.testing.assert_array_equal(got_indices, indices.numpy())
        assert got_indices.shape == inferred_shape("pool", attrs, x, index=1)
    else:
        got_values = got
    np.testing.assert_array_equal(got_values, values.numpy().astype(np.float32))  # a max is exact
    assert got_values.dtype == np.float32 and got_values.shape == inferred_shape("pool", attrs, x)


def test_max_pool_indices_are_per_plane_and_first_maximum_wins():
    x = np.zeros((2, 3, 4, 4), np.float32)
    x[1, 2, 3, 1] = 5.0  # ties elsewhere (zeros): torch keeps the first tap of each window
    attrs = ops.PoolAttrs("max", (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), return_indices=True)
    values, indices = ops.run_reference("pool", attrs, x)
    tv, ti = TF.max_pool2d(t64(x), 2, 2, return_indices=True)
    np.testing.assert_array_equal(values, tv.numpy())
    np.testing.assert_array_equal(indices, ti.numpy())
    assert indices[1, 2, 1, 0] == 3 * 4 + 1 and indices[0, 0, 1, 1] == 2 * 4 + 2


@settings(max_examples=60, deadline=None)
@given(case=pool_case("avg"))
def test_avg_pool_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    x = normal(rng, (case["batch"], case["channels"]) + case["size"])
    attrs = ops.PoolAttrs("avg", case["kernel"], case["stride"], case["pads"], case["dilation"], case["ceil_mode"],
                          case["count_include_pad"], case["divisor_override"])
    got = ops.run_reference("pool", attrs, x)
    pad = tuple(p for p, _ in case["pads"])
    kwargs = dict(ceil_mode=case["ceil_mode"], count_include_pad=case["count_include_pad"],
                  divisor_override=case["divisor_override"])
    if case["ndim"] == 1:  # avg_pool1d has no divisor_override: run it as 2-D with height 1
        expected = TF.avg_pool2d(t64(x).unsqueeze(2), (1,) + case["kernel"], (1,) + case["stride"], (0,) + pad,
                                 **kwargs).squeeze(2)
    else:
        fn = TF.avg_pool2d if case["ndim"] == 2 else TF.avg_pool3d
        expected = fn(t64(x), case["kernel"], case["stride"], pad, **kwargs)
    close(got, expected)
    assert got.shape == inferred_shape("pool", attrs, x)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_avg_pool1d_2d_3d_plain_functions(ndim):
    rng = np.random.default_rng(ndim)
    x = normal(rng, (2, 3) + (7,) * ndim)
    attrs = ops.PoolAttrs("avg", (3,) * ndim, (2,) * ndim, ((1, 1),) * ndim, (1,) * ndim, ceil_mode=True,
                          count_include_pad=False)
    fn = {1: TF.avg_pool1d, 2: TF.avg_pool2d, 3: TF.avg_pool3d}[ndim]
    close(ops.run_reference("pool", attrs, x), fn(t64(x), 3, 2, 1, ceil_mode=True, count_include_pad=False))


@settings(max_examples=40, deadline=None)
@given(rank=st.integers(3, 5), kind=st.sampled_from(["avg", "max"]), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_global_pools_match_torch(rank, kind, data, seed):
    shape = tuple(data.draw(st.lists(st.integers(1, 8), min_size=rank, max_size=rank)))
    x = normal(np.random.default_rng(seed), shape)
    attrs = ops.GlobalPoolAttrs(kind)
    got = ops.run_reference("global_pool", attrs, x)
    spatial = tuple(range(2, rank))
    t = t64(x)
    expected = t.mean(dim=spatial, keepdim=True) if kind == "avg" else t.amax(dim=spatial, keepdim=True)
    close(got, expected)
    assert got.shape == inferred_shape("global_pool", attrs, x) == shape[:2] + (1,) * (rank - 2)
    if rank == 4:
        adaptive = TF.adaptive_avg_pool2d(t, 1) if kind == "avg" else TF.adaptive_max_pool2d(t, 1)
        close(got, adaptive)


def test_global_max_pool_propagates_nan():
    x = np.ones((1, 2, 3, 3), np.float32)
    x[0, 1, 2, 0] = np.nan
    got = ops.run_reference("global_pool", ops.GlobalPoolAttrs("max"), x)
    expected = t64(x).amax(dim=(2, 3), keepdim=True).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got[0, 1, 0, 0]) and got[0, 0, 0, 0] == 1.0


# -- activations ------------------------------------------------------------------------------------------------

SPECIAL_FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def activations(draw):
    kind = draw(st.sampled_from(["relu", "clip", "leaky_relu", "sigmoid", "tanh"]))
    if kind == "clip":
        lo = draw(st.floats(-10, 10, width=32))
        hi = draw(st.floats(lo, 10, width=32))
        return Activation(kind, (lo, hi))
    if kind == "leaky_relu":
        return Activation(kind, (draw(st.floats(0, 1, width=32)),))
    return Activation(kind)


@settings(max_examples=60, deadline=None)
@given(activation=activations(),
       x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5), elements=SPECIAL_FLOATS))
def test_activations_match_torch_including_nan_and_inf(activation, x):
    got = ops.run_reference("activation", activation, x)
    expected = torch_activation(activation, t64(x)).numpy().astype(np.float32)
    assert got.dtype == np.float32 and got.shape == x.shape == inferred_shape("activation", activation, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))  # NaN in, NaN out, as torch
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)  # equal_nan; infinities must match exactly


@pytest.mark.parametrize("activation", [Activation("relu"), Activation("clip", (0.0, 6.0)),
                                        Activation("clip", (-1.0, 1.0)), Activation("leaky_relu", (0.01,)),
                                        Activation("sigmoid"), Activation("tanh")], ids=str)
def test_activation_of_nan_is_nan(activation):
    x = np.array([np.nan, -np.inf, np.inf, -1.0, 0.0, 0.5, 7.0, -100.0, 100.0], np.float32)
    got = ops.run_reference("activation", activation, x)
    expected = torch_activation(activation, t64(x)).numpy()
    assert np.isnan(got[0]) and np.isnan(expected[0])
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_sigmoid_saturates_without_warnings():
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0, np.inf, -np.inf], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ops.run_reference("activation", Activation("sigmoid"), x)
    close(got, torch.sigmoid(t64(x)))


# -- batch norm, add, linear, softmax ----------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(rank=st.integers(2, 5), data=st.data(), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**32 - 1))
def test_batch_norm_matches_torch_eval(rank, data, eps, activation, seed):
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 8))) + tuple(
        data.draw(st.lists(st.integers(1, 6), min_size=rank - 2, max_size=rank - 2)))
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, weight, bias, mean = normal(rng, shape), normal(rng, (c,)), normal(rng, (c,)), normal(rng, (c,))
    var = rng.uniform(0.01, 3.0, c).astype(np.float32)
    attrs = ops.BatchNormAttrs(eps, activation)
    got = ops.run_reference("batch_norm", attrs, x, weight, bias, mean, var)
    expected = TF.batch_norm(t64(x), t64(mean), t64(var), t64(weight), t64(bias), training=False, eps=eps)
    close(got, torch_activation(activation, expected))
    assert got.shape == inferred_shape("batch_norm", attrs, x, weight, bias, mean, var)


@settings(max_examples=30, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=5, max_side=6), activation=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2**32 - 1))
def test_add_matches_torch(shape, activation, seed):
    rng = np.random.default_rng(seed)
    x, y = normal(rng, shape), normal(rng, shape)
    attrs = ops.AddAttrs(activation)
    got = ops.run_reference("add", attrs, x, y)
    close(got, torch_activation(activation, t64(x) + t64(y)))
    assert got.shape == inferred_shape("add", attrs, x, y)


@settings(max_examples=40, deadline=None)
@given(leading=st.lists(st.integers(1, 4), min_size=0, max_size=2), in_features=st.integers(1, 16),
       out_features=st.integers(1, 16), bias=st.booleans(), activation=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2**32 - 1))
def test_linear_matches_torch(leading, in_features, out_features, bias, activation, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, tuple(leading) + (in_features,))
    w = normal(rng, (out_features, in_features))
    b = normal(rng, (out_features,)) if bias else None
    attrs = ops.LinearAttrs(activation)
    arrays = (x, w) if b is None else (x, w, b)
    got = ops.run_reference("linear", attrs, *arrays)
    expected = TF.linear(t64(x), t64(w), None if b is None else t64(b))
    close(got, torch_activation(activation, expected))
    assert got.shape == inferred_shape("linear", attrs, *arrays)


@settings(max_examples=50, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=6), data=st.data(),
       scale=st.sampled_from([1.0, 30.0, 1000.0]), seed=st.integers(0, 2**32 - 1))
def test_softmax_matches_torch(shape, data, scale, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = (normal(np.random.default_rng(seed), shape) * scale).astype(np.float32)  # large values: no overflow
    attrs = ops.SoftmaxAttrs(axis)
    got = ops.run_reference("softmax", attrs, x)
    close(got, torch.softmax(t64(x), dim=axis))
    np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-5)
    assert got.shape == inferred_shape("softmax", attrs, x)


# -- concat and flatten ------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=5, max_side=5), parts=st.integers(1, 4), data=st.data(),
       seed=st.integers(0, 2**32 - 1))
def test_concat_matches_torch(shape, parts, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    arrays = []
    for _ in range(parts):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 4))
        arrays.append(normal(rng, s))
    attrs = ops.ConcatAttrs(axis)
    got = ops.run_reference("concat", attrs, *arrays)
    expected = torch.cat([torch.from_numpy(a) for a in arrays], dim=axis).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert got.shape == inferred_shape("concat", attrs, *arrays)


@settings(max_examples=40, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=5, max_side=5), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_flatten_matches_torch(shape, data, seed):
    start_dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = normal(np.random.default_rng(seed), shape)
    attrs = ops.FlattenAttrs(start_dim)
    got = ops.run_reference("flatten", attrs, x)
    expected = torch.flatten(torch.from_numpy(x), start_dim=start_dim).numpy()
    np.testing.assert_array_equal(got, expected)
    assert got.shape == inferred_shape("flatten", attrs, x)
    assert not np.shares_memory(got, x)  # a copy: the caller may keep x

"""Every graph op compiled through the DSL (convgen.nn) and run, against the numpy reference and torch.

Weights here are graph constants, so convolutions and linear layers take the
compile-time weight packing (convgen.functional packs at run time instead), and
the passes run: batch-norm folding and activation fusion are checked on
`model.graph`, the optimized graph the library was built from.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convgen
from convgen import nn, shapes

from conftest import assert_close, capped_settings as _settings, reference_outputs, t64, torch_pad

# torch's padding="same" with an even kernel warns that it copies the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def op_names(model) -> list[str]:
    return [n.op for n in model.graph.nodes]


def set_params(module: nn.Module, **arrays) -> nn.Module:
    for name, value in arrays.items():
        module.register_parameter(name, value)
    return module


def torch_batch_norm(t: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """torch's inference batch norm with the statistics and affine parameters of a convgen layer."""
    return TF.batch_norm(t, t64(bn.param("running_mean")), t64(bn.param("running_var")), t64(bn.param("weight")),
                         t64(bn.param("bias")), training=False, eps=bn.eps)


def assert_close_with_specials(actual: np.ndarray, expected: np.ndarray, rtol=1e-5, atol=1e-6) -> None:
    """NaN and +-inf where torch has them; the finite values close."""
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol)


# -- activations -------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (nn.ReLU, lambda t: torch.relu(t)),
    "relu6": (nn.ReLU6, lambda t: TF.relu6(t)),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 0.75), lambda t: TF.hardtanh(t, -0.5, 0.75)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), lambda t: TF.leaky_relu(t, 0.2)),
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh),
    "clip_min_only": (lambda: nn.Hardtanh(0.5, float("inf")), lambda t: torch.clamp(t, min=0.5)),
    "hardsigmoid": (nn.Hardsigmoid, TF.hardsigmoid),
    "hard_sigmoid_onnx": (lambda: nn.Hardsigmoid(alpha=0.2, beta=0.5), lambda t: torch.clamp(0.2 * t + 0.5, 0, 1)),
    "hardswish": (nn.Hardswish, TF.hardswish),
}
FUNCTIONAL_ACTIVATIONS = {
    "relu": nn.relu, "relu6": nn.relu6, "hardtanh": lambda x: nn.clip(x, -0.5, 0.75),
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2), "sigmoid": nn.sigmoid, "tanh": nn.tanh,
    "clip_min_only": lambda x: nn.clip(x, 0.5, float("inf")),
    "hardsigmoid": nn.hardsigmoid, "hard_sigmoid_onnx": lambda x: nn.Hardsigmoid(alpha=0.2, beta=0.5)(x),
    "hardswish": nn.hardswish,
}

SPECIAL_VALUES = np.array([0.0, -0.0, 1e-8, -1e-8, 0.1, -0.1, 0.2499, 0.25, -0.25, 0.2501, 0.5, -0.5, 0.75, 1.0,
                           -1.0, 5.9, 6.0, 6.1, 9.99, 10.0, -10.0, 10.01, 20.0, -20.0, 87.0, -87.0, 88.5, -88.5,
                           100.0, -100.0, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)


def _activation_input(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    flat = x.reshape(-1)
    flat[:SPECIAL_VALUES.size] = SPECIAL_VALUES[:flat.size]
    return x


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
@pytest.mark.parametrize("style", ["layer", "function"])
def test_standalone_activation_matches_torch_including_nan_and_inf(backend, kind, style):
    make, torch_fn = ACTIVATIONS[kind]
    x_in = nn.Input((2, 3, 5, 7))
    y = make()(x_in) if style == "layer" else FUNCTIONAL_ACTIVATIONS[kind](x_in)
    graph = nn.graph(y, name=f"{kind}_{style}")
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["activation"]
    x = _activation_input((2, 3, 5, 7), seed=len(kind))
    out = model(x)
    assert_close_with_specials(out, torch_fn(t64(x)).numpy())
    (expected,) = reference_outputs(graph, x)
    assert_close_with_specials(out, expected)


@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_transcendental_activations_are_accurate_everywhere(backend, kind):
    """The inline approximations (activation.c.j2) within 4e-7 relative of float64 over a dense sweep:
    2^20 points across [-12, 12] (every branch and the clamps), and tiny magnitudes down to 1e-30."""
    sweep = np.linspace(-12.0, 12.0, 1 << 20, dtype=np.float32)
    tiny = np.geomspace(1e-30, 1e-2, 4096, dtype=np.float32)
    x = np.concatenate([sweep, tiny, -tiny]).reshape(1, 1, -1, 1024)
    model = convgen.compile(nn.graph(getattr(nn, kind)(nn.Input(x.shape)), name=kind), backend=backend)
    exact = {"tanh": np.tanh, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[kind](x.astype(np.float64))
    relative = np.abs(model(x) - exact) / np.abs(exact)
    worst = np.unravel_index(np.argmax(relative), x.shape)
    assert relative.max() <= 4e-7, f"{kind}({x[worst]}) off by {relative.max():.2e} relative"


def _conv_producer(x_in, rng):
    conv = set_params(nn.Conv2d(3, 8, 3, padding=1),
                      weight=rng.standard_normal((8, 3, 3, 3)), bias=rng.standard_normal(8))
    torch_fn = lambda t: TF.conv2d(t, t64(conv.param("weight")), t64(conv.param("bias")), padding=1)  # noqa: E731
    return conv(x_in), torch_fn, "conv"


def _linear_producer(x_in, rng):
    linear = set_params(nn.Linear(7, 21), weight=rng.standard_normal((21, 7)), bias=rng.standard_normal(21))
    torch_fn = lambda t: TF.linear(t, t64(linear.param("weight")), t64(linear.param("bias")))  # noqa: E731
    return linear(x_in), torch_fn, "linear"


def _add_producer(x_in, rng):
    # not x + conv(x): that add fuses into the conv as its residual input (tests/test_residual.py)
    pool = nn.MaxPool2d(3, stride=1, padding=1)
    torch_fn = lambda t: t + TF.max_pool2d(t, 3, stride=1, padding=1)  # noqa: E731
    return x_in + pool(x_in), torch_fn, "add"


def _batch_norm_producer(x_in, rng):
    bn = set_params(nn.BatchNorm2d(3), weight=rng.standard_normal(3), bias=rng.standard_normal(3),
                    running_mean=rng.standard_normal(3), running_var=rng.uniform(0.2, 2, 3))
    return bn(x_in), lambda t: torch_batch_norm(t, bn), "batch_norm"


PRODUCERS = {"conv": (_conv_producer, (2, 3, 6, 9)), "linear": (_linear_producer, (2, 4, 7)),
             "add": (_add_producer, (2, 3, 6, 9)), "batch_norm": (_batch_norm_producer, (2, 3, 6, 9))}


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_activation_fuses_into_its_producer(backend, kind, producer, rng):
    build, shape = PRODUCERS[producer]
    make, torch_act = ACTIVATIONS[kind]
    x_in = nn.Input(shape)
    y, torch_fn, op = build(x_in, rng)
    graph = nn.graph(make()(y), name=f"{producer}_{kind}")
    model = convgen.compile(graph, backend=backend)
    assert "activation" not in op_names(model), model.graph.nodes
    fused = [n for n in model.graph.nodes if n.op == op]
    assert len(fused) == 1 and fused[0].attrs.activation is not None
    assert fused[0].outputs == graph.outputs  # the producer now writes the activation's value
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    out = model(x)
    assert_close(out, torch_act(torch_fn(t64(x))).numpy())
    assert_close(out, reference_outputs(graph, x)[0])


def test_activation_stays_separate_where_it_cannot_fuse(backend, rng):
    x_in = nn.Input((1, 3, 8, 8))
    conv = set_params(nn.Conv2d(3, 4, 3), weight=rng.standard_normal((4, 3, 3, 3)), bias=rng.standard_normal(4))
    c = conv(x_in)
    outputs = (
        c,                                         # conv's own value is an output: relu cannot take its buffer
        nn.ReLU()(c),
        nn.Tanh()(nn.relu(nn.MaxPool2d(2)(c))),    # after a pool (not fusible), and a chain of two
        nn.sigmoid(x_in),                          # on the graph input
    )
    graph = nn.graph(*outputs, name="unfused")
    model = convgen.compile(graph, backend=backend)
    assert op_names(model).count("activation") == 4
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    results = model(x)
    tc = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")))
    expected = (tc, torch.relu(tc), torch.tanh(torch.relu(TF.max_pool2d(tc, 2))), torch.sigmoid(t64(x)))
    assert len(results) == len(expected)
    for got, want, ref in zip(results, expected, reference_outputs(graph, x)):
        assert_close(got, want.numpy())
        assert_close(got, ref)


def test_two_activations_of_one_conv_do_not_fuse(backend, rng):
    x_in = nn.Input((1, 2, 6, 6))
    conv = set_params(nn.Conv2d(2, 5, 3), weight=rng.standard_normal((5, 2, 3, 3)), bias=rng.standard_normal(5))
    c = conv(x_in)
    graph = nn.graph(nn.relu(c), nn.leaky_relu(c, 0.3))
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["conv", "activation", "activation"]
    assert model.graph.nodes[0].attrs.activation is None
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    tc = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")))
    relu, leaky = model(x)
    assert_close(relu, torch.relu(tc).numpy())
    assert_close(leaky, TF.leaky_relu(tc, 0.3).numpy())


# -- locally connected -------------------------------------------------------------------------

def torch_locally_connected(x, w, b, kernel, stride, pairs):
    """The oracle: unfold the (padded) input into columns, one weight matrix per output position."""
    ndim = len(kernel)
    xt = torch_pad(t64(x), pairs)
    if ndim == 1:
        xt, kernel, stride = xt[:, :, None], (1,) + tuple(kernel), (1,) + tuple(stride)
    out_spatial = w.shape[:ndim]
    oc = w.shape[ndim]
    cols = TF.unfold(xt, kernel_size=kernel, stride=stride)                       # (N, C*K, L)
    wt = t64(w).reshape(math.prod(out_spatial), oc, -1)                           # (L, OC, C*K)
    out = torch.einsum("nkl,lok->nol", cols, wt).reshape((x.shape[0], oc) + tuple(out_spatial))
    if b is not None:
        out = out + t64(b)[None]
    return out


@_settings(30)
@given(ndim=st.integers(1, 2), batch=st.integers(1, 2), channels=st.integers(1, 4), out_channels=st.integers(1, 6),
       data=st.data(), bias=st.booleans(), activation=st.sampled_from([None, "relu", "tanh"]),
       seed=st.integers(0, 2**32 - 1))
def test_locally_connected_matches_torch(backend, ndim, batch, channels, out_channels, data, bias, activation, seed):
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    if data.draw(st.booleans()):
        p = data.draw(st.integers(0, 2))
        padding, pairs = p, ((p, p),) * ndim
    else:
        pairs = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in range(ndim))
        padding = pairs
    size = tuple(data.draw(st.integers(max(1, k - sum(p)), 9)) for k, p in zip(kernel, pairs))
    layer = nn.LocallyConnected1d if ndim == 1 else nn.LocallyConnected2d
    lc = layer(channels, out_channels, kernel, size, stride=stride, padding=padding, bias=bias)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(lc.param("weight").shape).astype(np.float32)
    b = rng.standard_normal(lc.param("bias").shape).astype(np.float32) if bias else None
    set_params(lc, weight=w, bias=b)
    out_spatial = shapes.window_output_shape("t", size, kernel, stride, pairs, (1,) * ndim)
    assert w.shape == out_spatial + (out_channels, channels) + kernel
    x_in = nn.Input((batch, channels) + size)
    y = lc(x_in)
    if activation:
        y = ACTIVATIONS[activation][0]()(y)
    graph = nn.graph(y, name="locally_connected")
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["locally_connected"]  # an activation fuses into it
    x = rng.standard_normal((batch, channels) + size).astype(np.float32)
    out = model(x)
    expected = torch_locally_connected(x, w, b, kernel, stride, pairs)
    if activation:
        expected = ACTIVATIONS[activation][1](expected)
    assert_close(out, expected.numpy())
    assert_close(out, reference_outputs(graph, x)[0])


# -- batch norm --------------------------------------------------------------------------------

BATCH_NORMS = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _random_batch_norm(layer, channels, rng):
    return set_params(layer, weight=rng.standard_normal(channels), bias=rng.standard_normal(channels),
                      running_mean=rng.standard_normal(channels) * 2, running_var=rng.uniform(0.05, 3, channels))


@_settings(25)
@given(rank=st.integers(2, 5), batch=st.integers(1, 3), channels=st.integers(1, 9), data=st.data(),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]), activation=st.sampled_from([None, "relu6", "sigmoid"]),
       seed=st.integers(0, 2**32 - 1))
def test_standalone_batch_norm_matches_torch_eval(backend, rank, batch, channels, data, eps, activation, seed):
    shape = (batch, channels) + tuple(data.draw(st.integers(1, 6)) for _ in range(rank - 2))
    rng = np.random.default_rng(seed)
    bn = _random_batch_norm(BATCH_NORMS[rank](channels, eps=eps), channels, rng)
    layers = [bn] + ([ACTIVATIONS[activation][0]()] if activation else [])
    graph = nn.Sequential(*layers).to_graph(shape, name="bn")
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["batch_norm"]  # not folded (no conv), activation fused
    x = rng.standard_normal(shape).astype(np.float32)
    out = model(x)
    expected = torch_batch_norm(t64(x), bn)
    if activation:
        expected = ACTIVATIONS[activation][1](expected)
    assert_close(out, expected.numpy())
    assert_close(out, reference_outputs(graph, x)[0])


TORCH_CONVS = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
TORCH_BNS = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d}
DSL_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
DSL_BNS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


@pytest.mark.parametrize("ndim, in_channels, out_channels, groups, bias, relu", [
    (2, 3, 8, 1, True, False),
    (2, 3, 8, 1, False, True),
    (2, 6, 6, 6, False, True),       # depthwise, rowwise path
    (2, 8, 40, 2, True, False),      # direct path, 20 channels per group
    (1, 4, 5, 1, True, True),
    (3, 2, 17, 1, False, False),
])
def test_conv_batch_norm_folds_and_matches_torch_eval(backend, ndim, in_channels, out_channels, groups, bias,
                                                      relu, rng):
    torch.manual_seed(ndim * 100 + out_channels)
    conv_t = TORCH_CONVS[ndim](in_channels, out_channels, 3, padding=1, groups=groups, bias=bias)
    bn_t = TORCH_BNS[ndim](out_channels, eps=1e-3)
    with torch.no_grad():
        bn_t.running_mean.copy_(torch.randn(out_channels))
        bn_t.running_var.copy_(torch.rand(out_channels) * 2 + 0.1)
        bn_t.weight.copy_(torch.randn(out_channels))
        bn_t.bias.copy_(torch.randn(out_channels))
    reference = torch.nn.Sequential(conv_t, bn_t, *([torch.nn.ReLU()] if relu else [])).eval().double()
    net = nn.Sequential(DSL_CONVS[ndim](in_channels, out_channels, 3, padding=1, groups=groups, bias=bias),
                        DSL_BNS[ndim](out_channels, eps=1e-3), *([nn.ReLU()] if relu else []))
    net.load_state_dict({k: v.detach().float().numpy() for k, v in reference.state_dict().items()})
    shape = (2, in_channels) + (7, 9, 6)[:ndim]
    graph = net.to_graph(shape, name="conv_bn")
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["conv"]  # the batch norm folded into the conv, the relu fused
    assert (model.graph.nodes[0].attrs.activation is not None) == relu
    x = rng.standard_normal(shape).astype(np.float32)
    out = model(x)
    with torch.no_grad():
        assert_close(out, reference(t64(x)).numpy())
    assert_close(out, reference_outputs(graph, x)[0])


def test_batch_norm_does_not_fold_into_a_conv_whose_value_is_also_an_output(backend, rng):
    x_in = nn.Input((1, 3, 6, 6))
    conv = set_params(nn.Conv2d(3, 4, 3), weight=rng.standard_normal((4, 3, 3, 3)), bias=rng.standard_normal(4))
    bn = _random_batch_norm(nn.BatchNorm2d(4), 4, rng)
    c = conv(x_in)
    graph = nn.graph(bn(c), c)
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["conv", "batch_norm"]
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    normed, raw = model(x)
    tc = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")))
    assert_close(raw, tc.numpy())
    assert_close(normed, torch_batch_norm(tc, bn).numpy())


# -- DSL convolution and pooling (compile-time packed weights) ---------------------------------

@_settings(30)
@given(ndim=st.integers(1, 3), groups=st.integers(1, 3), per_group_in=st.integers(1, 3),
       per_group_out=st.sampled_from([1, 3, 4, 5, 8, 9, 16, 17, 33]), kernel=st.integers(1, 3),
       stride=st.integers(1, 2), dilation=st.integers(1, 2), padding=st.sampled_from([0, 1, "same", "valid"]),
       bias=st.booleans(), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_dsl_conv_matches_torch(backend, ndim, groups, per_group_in, per_group_out, kernel, stride, dilation,
                                padding, bias, data, seed):
    if padding == "same":
        stride = 1
    extent = dilation * (kernel - 1) + 1
    low = 1 if padding == "same" else max(1, extent - 2 * (padding if isinstance(padding, int) else 0))
    cap = 40 if ndim == 1 else (12 if ndim == 2 else 5)
    size = tuple(data.draw(st.integers(low, max(low, cap))) for _ in range(ndim))
    conv = DSL_CONVS[ndim](groups * per_group_in, groups * per_group_out, kernel, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=bias)
    rng = np.random.default_rng(seed)
    shape = (2, groups * per_group_in) + size
    graph = nn.Sequential(conv).to_graph(shape, name="conv")
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal(shape).astype(np.float32)
    out = model(x)
    expected = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}[ndim](
        t64(x), t64(conv.param("weight")), None if not bias else t64(conv.param("bias")), stride=stride,
        padding=padding, dilation=dilation, groups=groups)
    assert_close(out, expected.numpy())
    assert_close(out, reference_outputs(graph, x)[0])


@pytest.mark.parametrize("layer, torch_fn", [
    (lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), lambda t: TF.max_pool2d(t, 3, 2, 1, ceil_mode=True)),
    (lambda: nn.MaxPool1d(2, dilation=2), lambda t: TF.max_pool1d(t[:, :, 0, :], 2, dilation=2)),
    (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), lambda t: TF.avg_pool2d(t, 3, 2, 1, False, False)),
    (lambda: nn.AvgPool2d(2, ceil_mode=True, divisor_override=3),
     lambda t: TF.avg_pool2d(t, 2, ceil_mode=True, divisor_override=3)),
])
def test_dsl_pools_match_torch(backend, layer, torch_fn, rng):
    pool = layer()
    shape = (2, 3, 9, 11) if pool.ndim == 2 else (2, 3, 11)
    model = convgen.compile(nn.Sequential(pool).to_graph(shape), backend=backend)
    x = rng.standard_normal(shape).astype(np.float32)
    expected = torch_fn(t64(x) if pool.ndim == 2 else t64(x)[:, :, None, :])
    assert_close(model(x), expected.numpy())


def test_max_pool_indices_as_graph_outputs(backend, rng):
    x_in = nn.Input((2, 3, 8, 9))
    values, indices = nn.MaxPool2d(3, 2, 1, return_indices=True)(x_in)
    graph = nn.graph(indices, values, nn.relu(values))
    model = convgen.compile(graph, backend=backend)
    x = rng.permutation(2 * 3 * 8 * 9).reshape(2, 3, 8, 9).astype(np.float32) - 200
    got_indices, got_values, got_relu = model(x)
    expected, expected_indices = TF.max_pool2d(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    assert got_indices.dtype == np.int64 and got_values.dtype == np.float32
    np.testing.assert_array_equal(got_indices, expected_indices.numpy())
    np.testing.assert_array_equal(got_values, expected.numpy())
    np.testing.assert_array_equal(got_relu, torch.relu(expected).numpy())


# -- add, concat, flatten ----------------------------------------------------------------------

def test_residual_add_of_inputs_and_of_a_value_with_itself(backend, rng):
    a_in = nn.Input((2, 3, 4, 5), name="a")
    b_in = nn.Input((2, 3, 4, 5), name="b", tracer=a_in.tracer)
    s = a_in + b_in
    graph = nn.graph(s, s + s, nn.add(nn.relu(s), a_in))
    model = convgen.compile(graph, backend=backend)
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    total, doubled, mixed = model(a=a, b=b)
    assert_close(total, (t64(a) + t64(b)).numpy())
    assert_close(doubled, (2 * (t64(a) + t64(b))).numpy())
    assert_close(mixed, (torch.relu(t64(a) + t64(b)) + t64(a)).numpy())
    for got, ref in zip((total, doubled, mixed), reference_outputs(graph, a, b)):
        assert_close(got, ref)


@_settings(25)
@given(batch=st.integers(1, 3), parts=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       spatial=st.tuples(st.integers(1, 5), st.integers(1, 5)), dim=st.sampled_from([1, 1, 2, 3, -1]),
       seed=st.integers(0, 2**32 - 1))
def test_cat_matches_numpy_and_torch(backend, batch, parts, spatial, dim, seed):
    axis = dim % 4
    shapes_ = []
    for n in parts:
        shape = [batch, 2] + list(spatial)
        shape[axis] = n
        shapes_.append(tuple(shape))
    tracer_input = nn.Input(shapes_[0], name="x0")
    inputs = [tracer_input] + [nn.Input(s, name=f"x{i}", tracer=tracer_input.tracer)
                               for i, s in enumerate(shapes_[1:], 1)]
    graph = nn.graph(nn.cat(inputs, dim=dim), name="cat")
    model = convgen.compile(graph, backend=backend)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes_]
    out = model(*arrays)
    np.testing.assert_array_equal(out, np.concatenate(arrays, axis=dim))
    np.testing.assert_array_equal(out, torch.cat([torch.from_numpy(a) for a in arrays], dim=dim).numpy())


def test_cat_of_branches_input_and_a_repeated_value(backend, rng):
    x_in = nn.Input((2, 3, 6, 6))
    conv = set_params(nn.Conv2d(3, 5, 3, padding=1), weight=rng.standard_normal((5, 3, 3, 3)),
                      bias=rng.standard_normal(5))
    c = nn.relu(conv(x_in))
    p = nn.MaxPool2d(3, 1, 1)(x_in)
    graph = nn.graph(nn.cat([c, x_in, p, c], dim=1))
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    tc = torch.relu(TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")), padding=1))
    expected = torch.cat([tc, t64(x), TF.max_pool2d(t64(x), 3, 1, 1), tc], dim=1)
    out = model(x)
    assert out.shape == (2, 16, 6, 6)
    assert_close(out, expected.numpy())
    assert_close(out, reference_outputs(graph, x)[0])


def test_flatten_linear_head_matches_torch(backend, rng):
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 6, 10))
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(120, 10)).double().eval()
    net.load_state_dict({k: v.detach().float().numpy() for k, v in reference.state_dict().items()})
    graph = net.to_graph((3, 2, 7, 8))
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["conv", "flatten", "linear"]
    x = rng.standard_normal((3, 2, 7, 8)).astype(np.float32)
    with torch.no_grad():
        assert_close(model(x), reference(t64(x)).numpy())


@pytest.mark.parametrize("start_dim", [1, 2, -1])
def test_flatten_start_dim(backend, start_dim, rng):
    x_in = nn.Input((2, 3, 4, 5))
    y = nn.Flatten(start_dim)(nn.relu(x_in))
    model = convgen.compile(nn.graph(y), backend=backend)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(model(x), torch.flatten(torch.relu(torch.from_numpy(x)), start_dim).numpy())


# -- linear and softmax ------------------------------------------------------------------------

@_settings(30)
@given(leading=st.sampled_from([(1,), (3,), (2, 3)]), in_features=st.integers(1, 40),
       out_features=st.sampled_from([1, 3, 4, 5, 8, 15, 16, 17, 31, 33, 64, 65, 100, 130]), bias=st.booleans(),
       activation=st.sampled_from([None, "relu", "leaky_relu", "tanh"]), seed=st.integers(0, 2**32 - 1))
def test_linear_matches_torch(backend, leading, in_features, out_features, bias, activation, seed):
    rng = np.random.default_rng(seed)
    linear = nn.Linear(in_features, out_features, bias=bias)
    set_params(linear, weight=rng.standard_normal((out_features, in_features)),
               bias=rng.standard_normal(out_features) if bias else None)
    layers = [linear] + ([ACTIVATIONS[activation][0]()] if activation else [])
    shape = leading + (in_features,)
    graph = nn.Sequential(*layers).to_graph(shape, name="linear")
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["linear"]
    x = rng.standard_normal(shape).astype(np.float32)
    out = model(x)
    expected = TF.linear(t64(x), t64(linear.param("weight")), t64(linear.param("bias")) if bias else None)
    if activation:
        expected = ACTIVATIONS[activation][1](expected)
    assert out.shape == leading + (out_features,)
    assert_close(out, expected.numpy())
    assert_close(out, reference_outputs(graph, x)[0])


@pytest.mark.parametrize("shape, dim", [((3, 10), 1), ((1, 1), 1), ((2, 130), -1), ((2, 5, 3, 4), 1),
                                        ((1, 7, 1, 1), 1), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), 2)])
def test_softmax_matches_torch(backend, shape, dim, rng):
    model = convgen.compile(nn.Sequential(nn.Softmax(dim)).to_graph(shape), backend=backend)
    x = (rng.standard_normal(shape) * 30).astype(np.float32)  # large logits: needs the max subtraction
    x.reshape(-1)[0] = 95.0
    out = model(x)
    assert np.all(np.isfinite(out))
    assert_close(out, torch.softmax(t64(x), dim).numpy(), rtol=1e-5, atol=1e-6)
    assert_close(out.sum(axis=dim), np.ones(np.delete(np.array(shape), dim % len(shape))), atol=1e-5)


# -- global pools ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 5, 4, 6), (1, 2, 3, 4, 5), (3, 4, 1, 1)])
@pytest.mark.parametrize("kind", ["avg", "max", "adaptive"])
def test_global_pools_match_torch(backend, shape, kind, rng):
    ndim = len(shape) - 2
    if kind == "avg":
        layer, expected_fn = nn.GlobalAvgPool(), lambda t: t.mean(dim=tuple(range(2, t.ndim)), keepdim=True)
    elif kind == "max":
        layer, expected_fn = nn.GlobalMaxPool(), lambda t: t.amax(dim=tuple(range(2, t.ndim)), keepdim=True)
    else:
        layer = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[ndim](1)
        expected_fn = {1: TF.adaptive_avg_pool1d, 2: TF.adaptive_avg_pool2d, 3: TF.adaptive_avg_pool3d}[ndim]
        expected_fn = (lambda f: lambda t: f(t, 1))(expected_fn)
    graph = nn.Sequential(layer).to_graph(shape)
    model = convgen.compile(graph, backend=backend)
    assert op_names(model) == ["global_pool"]
    x = (rng.standard_normal(shape) - 3).astype(np.float32)  # all-negative planes for max
    out = model(x)
    assert out.shape == shape[:2] + (1,) * ndim
    assert_close(out, expected_fn(t64(x)).numpy())
    assert_close(out, reference_outputs(graph, x)[0])


def test_global_max_pool_propagates_nan(backend):
    x = np.arange(2 * 3 * 16, dtype=np.float32).reshape(2, 3, 4, 4)
    x[0, 1, 0, 0] = np.nan
    x[1, 2, 3, 3] = np.nan
    x[1, 0, 2, 2] = np.inf
    model = convgen.compile(nn.Sequential(nn.GlobalMaxPool()).to_graph(x.shape), backend=backend)
    np.testing.assert_array_equal(model(x), torch.from_numpy(x).amax(dim=(2, 3), keepdim=True).numpy())


# -- graph outputs -----------------------------------------------------------------------------

def test_multi_output_graph_returns_outputs_in_order(backend, rng):
    x_in = nn.Input((1, 3, 8, 8))
    conv = set_params(nn.Conv2d(3, 4, 3, padding=1), weight=rng.standard_normal((4, 3, 3, 3)),
                      bias=rng.standard_normal(4))
    c = conv(x_in)
    late = nn.GlobalAvgPool()(nn.relu(c))
    graph = nn.graph(late, c, name="two_heads")  # the later value first
    model = convgen.compile(graph, backend=backend)
    assert model.output_shapes == ((1, 4, 1, 1), (1, 4, 8, 8))
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    result = model(x)
    assert isinstance(result, tuple) and len(result) == 2
    tc = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")), padding=1)
    assert_close(result[0], torch.relu(tc).mean(dim=(2, 3), keepdim=True).numpy())
    assert_close(result[1], tc.numpy())
    outs = (np.empty((1, 4, 1, 1), np.float32), np.empty((1, 4, 8, 8), np.float32))
    model(x, out=outs)
    np.testing.assert_array_equal(outs[0], result[0])
    np.testing.assert_array_equal(outs[1], result[1])


def test_output_is_a_flatten_of_an_intermediate(backend, rng):
    x_in = nn.Input((2, 3, 5, 5))
    conv = set_params(nn.Conv2d(3, 4, 3), weight=rng.standard_normal((4, 3, 3, 3)), bias=rng.standard_normal(4))
    c = conv(x_in)
    flat = nn.Flatten()(c)
    graph = nn.graph(flat, nn.MaxPool2d(3)(c), c)
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    got_flat, got_pool, got_conv = model(x)
    tc = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")))
    assert got_flat.shape == (2, 36)
    assert_close(got_flat, tc.flatten(1).numpy())
    assert_close(got_pool, TF.max_pool2d(tc, 3).numpy())
    np.testing.assert_array_equal(got_conv.reshape(2, 36), got_flat)


def test_output_is_the_graph_input(backend, rng):
    x_in = nn.Input((1, 2, 3, 3))
    graph = nn.graph(x_in, nn.relu(x_in), nn.flatten(x_in), name="passthrough")
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    same, relu, flat = model(x)
    np.testing.assert_array_equal(same, x)
    assert not np.shares_memory(same, x)
    np.testing.assert_array_equal(relu, np.maximum(x, 0))
    np.testing.assert_array_equal(flat, x.reshape(1, 18))
    only = convgen.compile(nn.graph(nn.Input((2, 5), name="v"), name="identity"), backend=backend)
    v = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_array_equal(only(v), v)


def test_same_value_as_two_outputs(backend, rng):
    x_in = nn.Input((1, 3, 6, 6))
    conv = set_params(nn.Conv2d(3, 5, 3), weight=rng.standard_normal((5, 3, 3, 3)), bias=rng.standard_normal(5))
    y = nn.relu(conv(x_in))
    graph = nn.graph(y, y, nn.GlobalMaxPool()(y))
    model = convgen.compile(graph, backend=backend)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    first, second, pooled = model(x)
    expected = torch.relu(TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")))).numpy()
    assert_close(first, expected)
    np.testing.assert_array_equal(second, first)
    assert not np.shares_memory(first, second)
    assert_close(pooled, expected.max(axis=(2, 3), keepdims=True))


@pytest.mark.parametrize("consume", [
    lambda v, i: nn.cat([v, i]),
    lambda v, i: nn.Conv2d(1, 1, 1)(i),
    lambda v, i: nn.Softmax(1)(i),
    lambda v, i: nn.GlobalAvgPool()(i),
], ids=["cat", "conv", "softmax", "global_pool"])
def test_int64_indices_are_rejected_as_float_data(consume):
    x_in = nn.Input((1, 1, 4, 4))
    values, indices = nn.MaxPool2d(2, return_indices=True)(x_in)
    try:
        consume(values, indices)
    except convgen.ConvgenError:
        return
    raise AssertionError("an op accepted the int64 indices of a max pool as float32 data")


def test_adaptive_avg_pool_none_keeps_the_axis_as_torch_or_is_refused():
    try:
        graph = nn.Sequential(nn.AdaptiveAvgPool2d((1, None))).to_graph((1, 2, 4, 5))
    except convgen.ConvgenError:
        return
    expected = torch.nn.AdaptiveAvgPool2d((1, None))(torch.zeros(1, 2, 4, 5)).shape
    assert graph.output_types[0].shape == tuple(expected)

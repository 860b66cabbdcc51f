"""The activations and elementwise math beyond ReLU/sigmoid/tanh (issue 15): SiLU, GELU (both forms),
Mish, ELU, SELU, CELU, Softplus, Softsign, exp/log/sqrt/pow/abs/neg/reciprocal/erf, min/max/mean.

Against torch (float64) through the DSL, against onnxruntime through single-node ONNX models,
fused into a preceding convolution, recognized from the multi-node spellings torch's exporters
write, and the inline approximations against float64 over dense sweeps.  Many kinds share one
compiled graph (one output each) to keep the compile count small.
"""
from __future__ import annotations

import dataclasses
import io
import math
import shutil
import subprocess
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import lower, nn, passes
from convgen.backends import c as c_backend
from convgen.backends import llvm as llvm_backend
from convgen.ops.activation import KINDS
from convgen.target import host

from conftest import assert_close, capped_settings, reference_outputs, t64
from test_graph_ops import SPECIAL_VALUES, assert_close_with_specials, set_params

# name -> (DSL function of a Tensor, torch function of a float64 tensor)
DSL = {
    "silu": (nn.SiLU(), TF.silu),
    "gelu": (nn.GELU(), TF.gelu),
    "gelu_tanh": (lambda x: nn.gelu(x, approximate="tanh"), lambda t: TF.gelu(t, approximate="tanh")),
    "mish": (nn.mish, TF.mish),
    "elu": (nn.ELU(0.7), lambda t: TF.elu(t, 0.7)),
    "selu": (nn.selu, torch.selu),
    "celu": (nn.CELU(0.6), lambda t: TF.celu(t, 0.6)),
    "softplus": (nn.Softplus(1.5, 12.0), lambda t: TF.softplus(t, 1.5, 12.0)),
    "softplus_default": (nn.softplus, TF.softplus),
    "softsign": (nn.Softsign(), TF.softsign),
    "exp": (nn.exp, torch.exp),
    "log": (nn.log, torch.log),
    "sqrt": (nn.sqrt, torch.sqrt),
    "abs": (abs, torch.abs),
    "neg": (nn.neg, torch.neg),
    "reciprocal": (nn.reciprocal, torch.reciprocal),
    "erf": (nn.erf, torch.erf),
    "sign": (nn.sign, torch.sign),   # torch's: 0 for NaN
    "square": (lambda x: x ** 2, lambda t: t ** 2),
    "cube": (lambda x: nn.pow(x, 3), lambda t: t ** 3),
    "pow_-2": (lambda x: x ** -2, lambda t: t ** -2),
    "pow_0.5": (lambda x: x ** 0.5, lambda t: t ** 0.5),
    "pow_1.7": (lambda x: x ** 1.7, lambda t: t ** 1.7),
    "pow_7": (lambda x: x ** 7, lambda t: t ** 7),
    "pow_-5": (lambda x: x ** -5, lambda t: t ** -5),
}


def _input(shape, seed: int) -> np.ndarray:
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)
    flat = x.reshape(-1)
    flat[:SPECIAL_VALUES.size] = SPECIAL_VALUES
    return x


def test_every_activation_matches_torch_including_nan_and_inf(backend):
    """One graph, one output per kind, on inputs that hold 0, -0, tiny, huge, +-inf and NaN."""
    x_in = nn.Input((2, 3, 7, 9))
    graph = nn.graph(*(f(x_in) for f, _ in DSL.values()), name="unary")
    model = convgen.compile(graph, backend=backend)
    x = _input((2, 3, 7, 9), seed=5)
    outputs = model(x)
    references = reference_outputs(graph, x)
    for (name, (_, torch_fn)), out, ref in zip(DSL.items(), outputs, references):
        expected = torch_fn(t64(x)).numpy().astype(np.float32)  # float32's overflow to inf, as torch's float32
        try:
            assert_close_with_specials(out, expected, rtol=2e-6, atol=1e-6)
            assert_close_with_specials(out, ref, rtol=2e-6, atol=1e-6)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


# kind -> (lowest, highest) of the sweep, and the bound on |error| / (|exact| + floor): relative
# error `bound` where |exact| >> floor, absolute error bound * floor near 0.  erf is within 5e-7
# absolute, so GELU's left tail (x/2 (1 + erf)) within 1.5e-6 absolute.
SWEEPS = {
    "exp": ((-104.0, 88.72), 6e-7, 1e-37), "log": ((1e-38, 3e38), 2e-7, 4e-8),
    "erf": ((-6.0, 6.0), 5e-7, 1.0), "gelu": ((-12.0, 12.0), 6e-7, 2.5),
    "gelu_tanh": ((-12.0, 12.0), 6e-7, 2.5), "mish": ((-30.0, 30.0), 1e-6, 1e-7),
    "silu": ((-100.0, 100.0), 6e-7, 1e-30), "elu": ((-20.0, 1.0), 6e-7, 1e-30),
    "softplus": ((-90.0, 40.0), 6e-7, 1e-30),
}


@pytest.mark.parametrize("kind", list(SWEEPS))
def test_approximations_are_accurate_over_dense_sweeps(backend, kind):
    """exp, log, erf and what is built on them against float64 numpy over 2^18 points (log over
    a geometric sweep of the whole positive range, denormals excluded)."""
    (lo, hi), bound, floor = SWEEPS[kind]
    if kind == "log":
        x = np.geomspace(lo, hi, 1 << 18).astype(np.float32)
    else:
        x = np.concatenate([np.linspace(lo, hi, 1 << 18), np.geomspace(1e-30, 1e-2, 512) * np.sign(lo)])
        x = x.astype(np.float32)
    params = {"elu": (1.0,), "softplus": (1.0, math.inf)}.get(kind, ())
    x_in = nn.Input((1, x.size))
    y = x_in.tracer.emit("f", "activation", convgen.ops.Activation(kind, params), [x_in])
    model = convgen.compile(nn.graph(y, name=kind), backend=backend)
    exact = KINDS[kind].numpy(x.astype(np.float64), *params)
    error = np.abs(model(x[None])[0] - exact) / (np.abs(exact) + floor)
    worst = int(np.argmax(error))
    assert error[worst] <= bound, f"{kind}({x[worst]!r}) off by {error[worst]:.2e}"


SPECIAL_EXPONENTS = [-np.inf, -200.0, -104.0, -103.97, -103.5, -100.0, -88.0, -87.4, -0.0, 0.0, 1.0, 88.72, 88.73, 1e30,
                     np.inf, np.nan]


@pytest.mark.parametrize("batch", [1, 3])
def test_standalone_exp_on_every_tail_length(backend, batch):
    """The exp layer (on AVX-512 16-lane vectors and a masked last vector) at every length mod 16, with a
    run-time batch, the clamps' edges, subnormal results and specials: within the sweep's bound of float64
    (subnormals to their ulp), NaN and inf where numpy has them."""
    rng = np.random.default_rng(batch)
    for length in list(range(1, 34)) + [241]:
        x = rng.uniform(-110.0, 90.0, (batch, length)).astype(np.float32)
        x.reshape(-1)[:len(SPECIAL_EXPONENTS)] = SPECIAL_EXPONENTS[:x.size]
        x_in = nn.Input((1, length))
        model = convgen.compile(nn.graph(nn.exp(x_in), name="exp"), backend=backend, batch=None)
        with np.errstate(over="ignore"):
            exact = np.exp(x.astype(np.float64))
        got = model(x)
        finite = np.isfinite(exact.astype(np.float32))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
        np.testing.assert_array_equal(got[~finite & ~np.isnan(exact)], np.float32(np.inf))
        error = np.abs(got[finite] - exact[finite])
        assert np.all(error <= np.maximum(6e-7 * exact[finite], 2.0 ** -149)), length


FUSED_KINDS = st.sampled_from([
    ("silu", ()), ("gelu", ()), ("gelu_tanh", ()), ("mish", ()), ("elu", (0.3,)), ("celu", (2.0,)),
    ("selu", (1.6732632423543772, 1.0507009873554805)), ("softplus", (2.0, 5.0)), ("softsign", ()),
    ("exp", ()), ("abs", ()), ("erf", ()), ("pow", (2.0,)), ("neg", ()), ("sqrt", ()), ("sign", (1.0,)),
])


@capped_settings(12)
@given(act=FUSED_KINDS, channels=st.integers(1, 9), out_channels=st.integers(1, 19), size=st.integers(3, 13),
       kernel=st.sampled_from([1, 3]), seed=st.integers(0, 99))
def test_activation_fuses_into_the_conv_before_it(backend, act, channels, out_channels, size, kernel, seed):
    rng = np.random.default_rng(seed)
    conv = set_params(nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2),
                      weight=rng.standard_normal((out_channels, channels, kernel, kernel)) * 0.5,
                      bias=rng.standard_normal(out_channels))
    x_in = nn.Input((1, channels, size, size + 2))
    y = x_in.tracer.emit("act", "activation", convgen.ops.Activation(*act), [conv(x_in)])
    model = convgen.compile(nn.graph(y, name="fused"), backend=backend)
    assert [(n.op, n.attrs.activation.kind) for n in model.graph.nodes] == [("conv", act[0])]
    x = rng.standard_normal((1, channels, size, size + 2)).astype(np.float32)
    pre = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")), padding=kernel // 2).numpy()
    expected = KINDS[act[0]].numpy(pre, *act[1])
    assert_close(model(x), expected, rtol=2e-5, atol=2e-5)


# -- ONNX single-node models against onnxruntime ------------------------------------------------

def _node_model(nodes, inputs, outputs, initializers=(), opset=20) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _onnxruntime(model, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options).run(None, feeds)


UNARY_ONNX = ["HardSwish", "Mish", "Softsign", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Erf", "Softplus",
              "Sigmoid", "Sign"]


@capped_settings(4)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), alpha=st.floats(0.1, 3.0),
       gamma=st.floats(0.5, 2.0), exponent=st.sampled_from([2.0, 3.0, 0.5, -1.5, 1.25]), seed=st.integers(0, 99))
def test_onnx_unary_nodes_match_onnxruntime(backend, shape, alpha, gamma, exponent, seed):
    nodes = [helper.make_node(op, ["x"], [op]) for op in UNARY_ONNX]
    nodes += [helper.make_node("Gelu", ["x"], ["gelu"]), helper.make_node("Gelu", ["x"], ["gelu_tanh"], approximate="tanh"),
              helper.make_node("Elu", ["x"], ["elu"], alpha=alpha), helper.make_node("Celu", ["x"], ["celu"], alpha=alpha),
              helper.make_node("Selu", ["x"], ["selu"], alpha=alpha, gamma=gamma),
              helper.make_node("Abs", ["x"], ["ax"]), helper.make_node("Pow", ["ax", "p"], ["pow"])]
    outputs = UNARY_ONNX + ["gelu", "gelu_tanh", "elu", "celu", "selu", "pow"]
    model = _node_model(nodes, [("x", shape)], outputs,
                        [numpy_helper.from_array(np.array(exponent, np.float32), "p")])
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    expected = _onnxruntime(model, {"x": x})
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    for name, out, ref in zip(outputs, actual, expected):
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg=name)
        np.testing.assert_allclose(out[finite], ref[finite], rtol=2e-5, atol=2e-6, err_msg=name)


def test_onnx_sign_of_special_values_matches_onnxruntime(backend):
    """Sign keeps NaN as onnxruntime does (torch.sign gives 0: the DSL's nn.sign does that), +0 for -0."""
    x = np.concatenate([SPECIAL_VALUES, -SPECIAL_VALUES]).astype(np.float32)[None]
    model = _node_model([helper.make_node("Sign", ["x"], ["y"])], [("x", list(x.shape))], ["y"])
    (expected,) = _onnxruntime(model, {"x": x})
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(np.signbit(actual), np.signbit(expected))
    with pytest.raises(convgen.ConvgenError, match="nan_propagates must be 0 or 1"):
        convgen.ops.Activation("sign", (0.5,))


@st.composite
def broadcast_shapes(draw):
    """An output shape and 1 to 4 operand shapes that broadcast to it (dropped leading axes, 1s)."""
    out = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    shapes = []
    for _ in range(draw(st.integers(1, 4))):
        keep = draw(st.integers(0, len(out)))
        shapes.append([d if draw(st.booleans()) else 1 for d in out[len(out) - keep:]] or [1])
    shapes[0] = out
    return shapes


@capped_settings(6)
@given(shapes=broadcast_shapes(), pow_exponent=st.booleans(), seed=st.integers(0, 99))
def test_onnx_min_max_mean_pow_broadcast_as_onnxruntime(backend, shapes, pow_exponent, seed):
    names = [f"x{i}" for i in range(len(shapes))]
    nodes = [helper.make_node(op, names, [op]) for op in ("Min", "Max", "Mean")]
    outputs = ["Min", "Max", "Mean"]
    if len(shapes) >= 2:   # a run-time exponent tensor: the binary pow
        nodes += [helper.make_node("Abs", ["x0"], ["base"]), helper.make_node("Pow", ["base", "x1"], ["Pow"])]
        outputs.append("Pow")
    model = _node_model(nodes, list(zip(names, shapes)), outputs)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    xs[0].reshape(-1)[0] = np.nan   # NaN propagates through Min and Max
    feeds = dict(zip(names, xs))
    expected = _onnxruntime(model, feeds)
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(*xs)
    actual = actual if isinstance(actual, tuple) else (actual,)
    for name, out, ref in zip(outputs, actual, expected):
        assert out.shape == ref.shape, name
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg=name)
        ok = ~np.isnan(ref)
        np.testing.assert_allclose(out[ok], ref[ok], rtol=2e-5, atol=1e-6, err_msg=name)


def test_dsl_minimum_maximum_mean_match_torch(backend, rng):
    a_in = nn.Input((2, 3, 4, 5), name="a")
    b_in = nn.Input((3, 1, 5), name="b", tracer=a_in.tracer)
    graph = nn.graph(nn.minimum(a_in, b_in), nn.maximum(a_in, b_in), nn.mean_n(a_in, b_in, a_in), name="mm")
    a, b = rng.standard_normal((2, 3, 4, 5)).astype(np.float32), rng.standard_normal((3, 1, 5)).astype(np.float32)
    low, high, mean = convgen.compile(graph, backend=backend)(a, b)
    assert_close(low, torch.minimum(t64(a), t64(b)).numpy())
    assert_close(high, torch.maximum(t64(a), t64(b)).numpy())
    assert_close(mean, torch.stack(torch.broadcast_tensors(t64(a), t64(b), t64(a))).mean(0).numpy())


def test_bad_parameters_are_clear_errors():
    with pytest.raises(convgen.ConvgenError, match="approximate"):
        nn.GELU(approximate="fast")
    with pytest.raises(convgen.ConvgenError, match="alpha must not be 0"):
        nn.CELU(0.0)
    with pytest.raises(convgen.ConvgenError, match="finite"):
        nn.pow(nn.Input((1, 2)), math.inf)
    model = _node_model([helper.make_node("Gelu", ["x"], ["y"], approximate="erf")], [("x", [1, 2])], ["y"])
    with pytest.raises(convgen.UnsupportedError, match="approximate='erf'"):
        convgen.from_onnx(model)


# -- multi-node spellings, as torch's exporters write them ---------------------------------------

class _Spellings(torch.nn.Module):
    """A conv, then each activation that exporters may spell as several nodes."""

    def __init__(self):
        super().__init__()
        self.acts = [TF.silu, TF.gelu, lambda t: TF.gelu(t, approximate="tanh"), TF.mish, TF.hardswish,
                     lambda t: t * torch.sigmoid(t), TF.hardsigmoid]
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(3, 6, 3, padding=1) for _ in self.acts)

    def forward(self, x):
        return tuple(act(conv(x)) for act, conv in zip(self.acts, self.convs))


def export(module: torch.nn.Module, args: tuple, dynamo: bool) -> onnx.ModelProto:
    """The module exported by torch's TorchScript exporter at opset 17, or by the default dynamo one."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(module, args, dynamo=True, verbose=False)
            return program.model_proto
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo"])
def test_exported_spellings_become_one_fused_conv_each(backend, dynamo):
    torch.manual_seed(0)
    module = _Spellings().eval()
    x = torch.randn(1, 3, 9, 11)
    model = convgen.compile(convgen.from_onnx(export(module, (x,), dynamo)), backend=backend)
    kinds = sorted(n.attrs.activation.kind for n in model.graph.nodes)
    assert [n.op for n in model.graph.nodes] == ["conv"] * 7
    assert kinds == sorted(["silu", "silu", "gelu", "gelu_tanh", "mish", "hard_swish", "hard_sigmoid"])
    with torch.no_grad():
        expected = module(x)
    for out, ref in zip(model(x.numpy()), expected):
        assert_close(out, ref.numpy(), rtol=2e-5, atol=2e-5)


def test_a_spelling_whose_inner_value_is_read_elsewhere_is_left_alone(backend, rng):
    """x * sigmoid(x) where sigmoid(x) is also an output: both nodes stay (the value is needed)."""
    x_in = nn.Input((1, 4, 5))
    s = nn.sigmoid(x_in)
    graph = nn.graph(x_in * s, s, name="shared")
    model = convgen.compile(graph, backend=backend)
    assert sorted(n.op for n in model.graph.nodes) == ["activation", "mul"]
    x = rng.standard_normal((1, 4, 5)).astype(np.float32)
    silu, sigmoid = model(x)
    assert_close(silu, TF.silu(t64(x)).numpy())
    other = nn.Input((1, 4, 5), name="y", tracer=x_in.tracer)
    graph = nn.graph(other * nn.sigmoid(x_in), name="two_inputs")   # not a function of one value
    assert "mul" in [n.op for n in convgen.compile(graph, backend=backend).graph.nodes]


class _EveryOp(torch.nn.Module):
    """A small module using each op of this family, for the exporters.  The dynamo exporter writes
    Softplus's threshold as Greater -> Where on run-time values, which convgen does not import yet:
    softplus is in the TorchScript export only."""

    def __init__(self, softplus: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.softplus = softplus

    def forward(self, x, z):
        y = self.conv(x)
        outputs = (TF.elu(y, 0.5), torch.selu(y), torch.celu(y, 0.7), TF.softsign(y), torch.exp(y),
                   torch.log(y.abs() + 1), torch.sqrt(y.abs()), y ** 2.5, y ** 3, -y, torch.reciprocal(y), torch.erf(y),
                   torch.minimum(y, z), torch.maximum(y, z), (y + z + y * 2) / 3)
        return outputs + (TF.softplus(y),) if self.softplus else outputs


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo"])
def test_every_op_exported_by_torch_matches_torch(backend, dynamo):
    torch.manual_seed(1)
    module = _EveryOp(softplus=not dynamo).eval()
    x, z = torch.randn(2, 3, 6, 7), torch.randn(1, 1, 7)
    model = convgen.compile(convgen.from_onnx(export(module, (x, z), dynamo)), backend=backend)
    with torch.no_grad():
        expected = module(x, z)
    for i, (out, ref) in enumerate(zip(model(x.numpy(), z.numpy()), expected)):
        ref = ref.numpy()
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg=f"output {i}")
        np.testing.assert_allclose(out[finite], ref[finite], rtol=2e-5, atol=2e-5, err_msg=f"output {i}")


@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_transcendental_kernels_ask_for_the_targets_full_vector_width(backend, vector_bytes):
    """gcc and LLVM tune Intel's AVX-512 cores for 256-bit loops; a kernel with a transcendental
    activation asks for 512 on an AVX-512 target (pragma / function attribute), ReLU and plain kernels
    and AVX2 targets do not.  On an AVX-512 host the library's code then uses zmm registers."""
    target = dataclasses.replace(host(), vector_bytes=vector_bytes)
    x_in = nn.Input((1, 4, 5, 7))
    graph = nn.graph(nn.SiLU()(x_in), nn.ReLU()(x_in), name="width")
    lowered = lower.lower(passes.optimize(graph), target, 1)
    text = c_backend.render_source(lowered) if backend == "c" else llvm_backend.generate(lowered)[0]
    marker = 'prefer-vector-width=512' if backend == "c" else '"prefer-vector-width"="512"'
    assert text.count(marker) == (1 if vector_bytes == 64 else 0)
    if vector_bytes == 64 and "avx512f" in host().features and shutil.which("objdump"):
        big = nn.Input((1, 8, 32, 32))
        model = convgen.compile(nn.graph(nn.SiLU()(big), name="width"), backend=backend)
        code = subprocess.run(["objdump", "-d", str(model.library_path)], capture_output=True, text=True).stdout
        assert "zmm" in code

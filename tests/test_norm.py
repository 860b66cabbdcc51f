"""layer_norm, instance_norm, group_norm (ops/norm.py): the numpy references against torch, the kernels
(both backends, both the contiguous-row and the strided-column paths) against the references over drawn
shapes, axes, eps and groups, the DSL layers against torch's modules, and ONNX LayerNormalization /
InstanceNormalization / GroupNormalization (opsets 17, 18, 21; torch's two exporters) against torch and
onnxruntime."""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import nn, ops

from conftest import assert_close, capped_settings, reference_outputs, t64

eps_ = st.sampled_from([1e-5, 1e-6, 1e-3, 0.5])
seeds = st.integers(0, 2**32 - 1)


def _x(shape, seed, offset=1.0):
    """Inputs with a mean far from 0 relative to their spread: cancellation shows in a naive variance."""
    return (np.random.default_rng(seed).standard_normal(shape) * 2 + offset).astype(np.float32)


def _affine(shape, seed, count):
    rng = np.random.default_rng(seed + 1)
    return [rng.uniform(0.5, 1.5, shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)][:count]


def assert_normalized_close(got, want, x: np.ndarray, grouped: np.ndarray, axes: tuple[int, ...], eps: float,
                            ulps: float = 4):
    """float32 against float64: x - mean loses |x| * 2^-24 before the division by the standard deviation, so
    a group whose values nearly agree (drawn R = 2, say) is computed to |x| / std ulps at best; the
    tolerance grows with that condition (`ulps` of it: more where later ops scale the normalized values)."""
    std = np.sqrt(grouped.astype(np.float64).var(axis=axes) + eps)
    condition = float(np.abs(x).max() / std.min())
    assert_close(got, want, atol=max(1e-5, ulps * 2.0**-24 * condition))


def one_node(op: str, attrs, x_shape, affine: list[np.ndarray]) -> convgen.Graph:
    x_in = nn.Input(x_shape)
    names = [x_in.tracer.constant(f"a{i}", a) for i, a in enumerate(affine)]
    return nn.graph(x_in.tracer.emit("norm", op, attrs, [x_in] + names), name=op)


# -- the references against torch --------------------------------------------------------

ranks = st.lists(st.integers(1, 6), min_size=2, max_size=5)


@capped_settings(30)
@given(shape=ranks, data=st.data(), eps=eps_, seed=seeds)
def test_layer_norm_reference_matches_torch(shape, data, eps, seed):
    begin = data.draw(st.integers(1, len(shape) - 1))
    normalized = tuple(shape[begin:])
    x = _x(shape, seed)
    w, b = _affine(normalized, seed, 2)
    got = ops.run_reference("layer_norm", ops.LayerNormAttrs(begin - len(shape), eps), x, w, b)
    expected = torch.nn.functional.layer_norm(t64(x), normalized, t64(w), t64(b), eps)
    assert_close(got, expected.numpy())


@capped_settings(30)
@given(n=st.integers(1, 3), groups=st.integers(1, 4), per_group=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 5), max_size=3), eps=eps_, seed=seeds)
def test_group_and_instance_norm_references_match_torch(n, groups, per_group, spatial, eps, seed):
    shape = (n, groups * per_group, *spatial)
    assume(per_group * math.prod(spatial) > 1)   # torch refuses a single value per group
    x = _x(shape, seed)
    w, b = _affine((shape[1],), seed, 2)
    got = ops.run_reference("group_norm", ops.GroupNormAttrs(groups, eps), x, w, b)
    assert_close(got, torch.nn.functional.group_norm(t64(x), groups, t64(w), t64(b), eps).numpy())
    if math.prod(spatial) > 1:
        got = ops.run_reference("instance_norm", ops.InstanceNormAttrs(eps), x, w, b)
        assert_close(got, torch.nn.functional.instance_norm(t64(x), weight=t64(w), bias=t64(b), eps=eps).numpy())


# -- the kernels against the references ------------------------------------------------------

@capped_settings(12)
@given(shape=ranks, data=st.data(), eps=eps_, affine=st.integers(0, 2), seed=seeds)
def test_layer_norm_kernels(backend, shape, data, eps, affine, seed):
    """Over trailing axes (rows of R contiguous elements: whole U x VW blocks, a vector, single floats)
    and over inner axes [begin, end) (columns B apart: whole tiles, vectors, single columns)."""
    begin = data.draw(st.integers(1, len(shape) - 1), label="begin")
    end = data.draw(st.integers(begin + 1, len(shape)), label="end")
    if data.draw(st.booleans(), label="long"):   # past one tile of U x 16 lanes along the rows or columns
        shape[-1] = data.draw(st.integers(60, 140), label="last")
    attrs = ops.LayerNormAttrs(begin, eps, None if end == len(shape) else end)
    graph = one_node("layer_norm", attrs, tuple(shape), _affine(tuple(shape[begin:end]), seed, affine))
    x = _x(shape, seed, offset=10.0)
    assert_normalized_close(convgen.compile(graph, backend=backend)(x), reference_outputs(graph, x)[0], x, x,
                            tuple(range(begin, end)), eps)


@capped_settings(10)
@given(n=st.integers(1, 2), groups=st.integers(1, 4), per_group=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 9), min_size=1, max_size=3), eps=eps_, affine=st.integers(0, 2),
       instance=st.booleans(), seed=seeds)
def test_group_and_instance_norm_kernels(backend, n, groups, per_group, spatial, eps, affine, instance, seed):
    shape = (n, groups * per_group, *spatial)
    op, attrs = ("instance_norm", ops.InstanceNormAttrs(eps)) if instance else ("group_norm", ops.GroupNormAttrs(groups, eps))
    graph = one_node(op, attrs, shape, _affine((shape[1],), seed, affine))
    x = _x(shape, seed, offset=10.0)
    grouped = x.reshape(n, shape[1] if instance else groups, -1)
    assert_normalized_close(convgen.compile(graph, backend=backend)(x), reference_outputs(graph, x)[0], x, grouped,
                            (2,), eps)


def test_kernels_on_two_threads_and_a_run_time_batch(backend):
    """Threads share rows (B = 1) and column tiles (B > 1); a batch given at call time."""
    for attrs, shape, affine in [(ops.LayerNormAttrs(1, 1e-5, 2), (1, 24, 40, 40), (24,)),
                                 (ops.GroupNormAttrs(4), (1, 32, 24, 24), (32,))]:
        graph = one_node("layer_norm" if isinstance(attrs, ops.LayerNormAttrs) else "group_norm", attrs, shape,
                         _affine(affine, 0, 2))
        x = _x(shape, 3)
        assert_close(convgen.compile(graph, backend=backend, threads=2)(x), reference_outputs(graph, x)[0])
        batch = np.concatenate([x, _x(shape, 4)])
        model = convgen.compile(graph, backend=backend, batch=None)
        assert_close(model(batch), np.concatenate([reference_outputs(graph, b[None])[0] for b in batch]))


# -- the DSL layers against torch ---------------------------------------------------------

def _randomized(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1.0, 1.5)
    return module.eval()


@pytest.mark.parametrize("ours, theirs, shape", [
    (lambda: nn.LayerNorm(7), lambda: torch.nn.LayerNorm(7), (2, 3, 7)),
    (lambda: nn.LayerNorm((5, 7), eps=1e-3), lambda: torch.nn.LayerNorm((5, 7), eps=1e-3), (2, 3, 5, 7)),
    (lambda: nn.LayerNorm(7, bias=False), lambda: torch.nn.LayerNorm(7, bias=False), (2, 7)),
    (lambda: nn.LayerNorm(7, elementwise_affine=False), lambda: torch.nn.LayerNorm(7, elementwise_affine=False), (3, 7)),
    (lambda: nn.GroupNorm(3, 12), lambda: torch.nn.GroupNorm(3, 12), (2, 12, 5, 6)),
    (lambda: nn.GroupNorm(2, 4, affine=False), lambda: torch.nn.GroupNorm(2, 4, affine=False), (2, 4, 9)),
    (lambda: nn.InstanceNorm1d(5, affine=True), lambda: torch.nn.InstanceNorm1d(5, affine=True), (2, 5, 11)),
    (lambda: nn.InstanceNorm2d(5), lambda: torch.nn.InstanceNorm2d(5), (2, 5, 4, 6)),
    (lambda: nn.InstanceNorm3d(3, affine=True), lambda: torch.nn.InstanceNorm3d(3, affine=True), (1, 3, 2, 3, 4)),
    (lambda: nn.InstanceNorm2d(5, affine=True, track_running_stats=True),
     lambda: torch.nn.InstanceNorm2d(5, affine=True, track_running_stats=True), (2, 5, 3, 3)),
])
def test_dsl_layers_match_torch(ours, theirs, shape, backend, rng):
    torch.manual_seed(0)
    reference = _randomized(theirs())
    if getattr(reference, "running_var", None) is not None:
        reference.running_mean.uniform_(-1, 1)
        reference.running_var.uniform_(0.5, 2)
    layer = ours()
    layer.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x = _x(shape, 7)
    got = convgen.compile(nn.Sequential(layer).to_graph(shape), backend=backend)(x)
    with torch.no_grad():
        assert_close(got, reference.double()(t64(x)).numpy())


def test_dsl_functions_match_torch(backend):
    x_in = nn.Input((2, 6, 4, 4))
    w, b = _affine((6,), 0, 2)
    lw, lb = _affine((4, 4), 1, 2)
    outputs = [nn.layer_norm(x_in, (4, 4), lw, lb, 1e-3), nn.group_norm(x_in, 3, w, b), nn.instance_norm(x_in, w, b),
               nn.group_norm(x_in, 2, bias=b)]
    model = convgen.compile(nn.graph(*outputs, name="functions"), backend=backend)
    x = _x((2, 6, 4, 4), 1)
    expected = [torch.nn.functional.layer_norm(t64(x), (4, 4), t64(lw), t64(lb), 1e-3),
                torch.nn.functional.group_norm(t64(x), 3, t64(w), t64(b)),
                torch.nn.functional.instance_norm(t64(x), weight=t64(w), bias=t64(b)),
                torch.nn.functional.group_norm(t64(x), 2, None, t64(b))]
    for got, want in zip(model(x), expected):
        assert_close(got, want.numpy())


@pytest.mark.parametrize("build, shape, message", [
    (lambda: nn.LayerNorm(5), (2, 3, 4), r"last 1 axes of input \(2, 3, 4\) must be normalized_shape \(5,\)"),
    (lambda: nn.InstanceNorm2d(3), (2, 3, 4), r"must have shape \(N, 3, 2 spatial axes\), got \(2, 3, 4\)"),
    (lambda: nn.GroupNorm(2, 4), (2, 5, 3), r"axis 1 \(channels\): scale must have shape \(5,\), got \(4,\)"),
])
def test_dsl_shape_errors(build, shape, message):
    with pytest.raises(convgen.ShapeError, match=message):
        nn.Sequential(build()).to_graph(shape)


@pytest.mark.parametrize("op, attrs, types, message", [
    ("layer_norm", ops.LayerNormAttrs(3), [(2, 3, 4)], r"normalized axes 3..None \(axes \[3, 3\)\) are out of range for rank 3"),
    ("layer_norm", ops.LayerNormAttrs(1, end_axis=1), [(2, 3, 4)], r"out of range"),
    ("layer_norm", ops.LayerNormAttrs(-1), [(2, 3, 4), (3,)], r"axes \[2, 3\) of input \(2, 3, 4\): scale must have shape \(4,\)"),
    ("group_norm", ops.GroupNormAttrs(4), [(2, 6, 3)], r"6 channels are not divisible into num_groups=4"),
    ("group_norm", ops.GroupNormAttrs(0), [(2, 6, 3)], r"num_groups=0"),
    ("instance_norm", ops.InstanceNormAttrs(), [(2, 6)], r"rank >= 3"),
    ("instance_norm", ops.InstanceNormAttrs(), [(2, 6, 3), (6,), (5,)], r"bias must have shape \(6,\), got \(5,\)"),
])
def test_op_shape_errors(op, attrs, types, message):
    with pytest.raises(convgen.ShapeError, match=message):
        ops.get(op).infer(f"layer 'l' ({op})", attrs, [convgen.TensorType(t) for t in types])


def test_summary_counts_parameters_and_flops():
    nn.manual_seed(0)
    graph = nn.Sequential(nn.GroupNorm(2, 4), nn.LayerNorm((4, 3))).to_graph((1, 4, 4, 3))
    rows = {s.split()[0]: s.split() for s in graph.summary(print_fn=None).splitlines()}
    assert rows["0"][1:5] == ["group_norm", "[1,", "4,", "4,"] and rows["0"][6:8] == ["8", "480"]
    assert rows["1"][6:8] == ["24", "480"]


# -- ONNX ----------------------------------------------------------------------------------------

def onnx_model(op: str, x_shape, inits: dict[str, np.ndarray], opset: int, **attrs) -> bytes:
    node = helper.make_node(op, ["x"] + list(inits), ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def against_onnxruntime(data: bytes, x: np.ndarray, backend: str) -> None:
    expected = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert_close(convgen.compile(convgen.from_onnx(data), backend=backend)(x), expected)


@capped_settings(8)
@given(shape=ranks, data=st.data(), eps=eps_, broadcast=st.booleans(), seed=seeds)
def test_onnx_layer_normalization_matches_onnxruntime(backend, shape, data, eps, broadcast, seed):
    """Any axis (negative too), a scale and bias that broadcast to the normalized shape, B optional."""
    axis = data.draw(st.integers(1, len(shape) - 1))
    normalized = tuple(shape[axis:])
    affine_shape = (1,) * (len(normalized) - 1) + normalized[-1:] if broadcast else normalized
    inits = dict(zip(("scale", "bias"), _affine(affine_shape, seed, data.draw(st.integers(1, 2)))))
    data_ = onnx_model("LayerNormalization", shape, inits, 17, axis=axis - len(shape) * data.draw(st.integers(0, 1)),
                       epsilon=eps)
    against_onnxruntime(data_, _x(shape, seed), backend)


@pytest.mark.parametrize("opset, groups, channels", [(18, 3, 6), (21, 3, 6), (18, 4, 4), (21, 1, 5)])
def test_onnx_group_normalization_both_forms(opset, groups, channels, backend):
    """Opset 18 scales per group, 21 per channel."""
    shape = (2, channels, 4, 5)
    inits = dict(zip(("scale", "bias"), _affine((groups if opset == 18 else channels,), 0, 2)))
    against_onnxruntime(onnx_model("GroupNormalization", shape, inits, opset, num_groups=groups, epsilon=1e-3),
                        _x(shape, 2), backend)


@pytest.mark.parametrize("shape", [(2, 3, 7), (1, 4, 5, 6), (2, 2, 2, 3, 4)])
def test_onnx_instance_normalization_matches_onnxruntime(shape, backend):
    inits = dict(zip(("scale", "bias"), _affine((shape[1],), 0, 2)))
    against_onnxruntime(onnx_model("InstanceNormalization", shape, inits, 17, epsilon=1e-4), _x(shape, 5), backend)


def test_onnx_errors():
    with pytest.raises(convgen.ShapeError, match=r"6 channels are not divisible into num_groups=4"):
        convgen.from_onnx(onnx_model("GroupNormalization", (1, 6, 3), dict(zip(("s", "b"), _affine((6,), 0, 2))), 21,
                                     num_groups=4))
    with pytest.raises(convgen.ShapeError, match=r"scale of shape \(3,\) does not broadcast to \(4,\)"):
        convgen.from_onnx(onnx_model("LayerNormalization", (1, 6, 4), {"s": np.ones(3, np.float32)}, 17))


class _Norms(torch.nn.Module):
    """What torch exports for each: LayerNormalization; InstanceNormalization; GroupNorm as Reshape ->
    InstanceNormalization -> Reshape -> Mul -> Add (both exporters)."""

    def __init__(self) -> None:
        super().__init__()
        self.gn, self.inorm = torch.nn.GroupNorm(2, 8), torch.nn.InstanceNorm2d(8, affine=True)
        self.ln, self.ln2 = torch.nn.LayerNorm(6), torch.nn.LayerNorm((5, 6), eps=1e-3)

    def forward(self, x):
        return self.ln2(self.ln(self.inorm(self.gn(x)) * 2.0) + x)


def torch_export(module: torch.nn.Module, x: torch.Tensor, dynamo: bool) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(module, (x,), dynamo=True, verbose=False,
                                     input_names=["x"]).model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"])
        return buffer.getvalue()


@pytest.fixture(scope="module")
def exported_norms():
    torch.manual_seed(0)
    module = _randomized(_Norms())
    x = torch.from_numpy(_x((2, 8, 5, 6), 9))
    with torch.no_grad():
        expected = module(x).numpy()
    return x.numpy(), expected, {dynamo: torch_export(module, x, dynamo) for dynamo in (False, True)}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo"])
def test_torch_exports_match_torch_and_onnxruntime(dynamo, backend, exported_norms):
    x, expected, files = exported_norms
    data = files[dynamo]
    assert {"LayerNormalization", "InstanceNormalization"} <= {n.op_type for n in onnx.load_from_string(data).graph.node}
    got = convgen.compile(convgen.from_onnx(data), backend=backend)(x)
    assert_close(got, expected)
    assert_close(got, onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])


class _GroupNorms(torch.nn.Module):
    """GroupNorm as torch exports it (reshape -> InstanceNormalization -> reshape -> Mul -> Add), with and
    without affine, on 1-D and 2-D maps."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.GroupNorm(4, 12), torch.nn.GroupNorm(3, 12, affine=False, eps=1e-3)

    def forward(self, x):
        y = self.b(self.a(x))
        return y, self.a(y.flatten(2))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo"])
def test_exported_group_norm_is_one_group_norm(dynamo, backend):
    from convgen.passes import optimize
    torch.manual_seed(0)
    module = _randomized(_GroupNorms())
    x = torch.from_numpy(_x((2, 12, 5, 7), 3))
    with torch.no_grad():
        expected = [t.numpy() for t in module(x)]
    graph = convgen.from_onnx(torch_export(module, x, dynamo))
    assert {n.op for n in graph.nodes} >= {"reshape", "instance_norm", "mul", "add"}
    assert [n.op for n in optimize(graph).nodes if n.op != "reshape"] == ["group_norm"] * 3
    for got, want in zip(convgen.compile(graph, backend=backend)(x.numpy()), expected):
        assert_close(got, want)

"""A residual add fused into the convolution that feeds it (passes/fuse_residual.py, ConvAttrs.residual):
which graphs fuse and which must not (broadcast adds, an activation before the add, other readers of the
conv's output, the skip computed after the conv), and the fused kernels of both backends against torch in
float64 on every conv path (direct with the row and the whole-output epilogue pass, pixels with its tail
tiles, rowwise, depthwise, Winograd F(2/4/6)) over drawn shapes, both operand orders, activations, batch > 1 and two
threads; ResNet from both ONNX exporters against torch and onnxruntime."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import convgen
from convgen import lower, nn, passes, schedule
from convgen.target import host

import torch_cnns
from conftest import assert_close, capped_settings, reference_outputs, t64
from test_winograd import ERROR, _compile_with

ACTIVATIONS = {None: (lambda t: t, lambda y: y), "relu": (nn.relu, torch.relu), "silu": (nn.silu, TF.silu),
               "clip": (lambda t: nn.clip(t, -0.5, 1.5), lambda y: y.clamp(-0.5, 1.5))}


def _residual_graph(conv: nn.Module, x_shape, order: str, act, skip_layer: bool = False, name: str = "res"):
    """act(conv(x) + skip) (order "conv+skip") or act(skip + conv(x)); the skip a graph input, or with
    `skip_layer` the output of a layer (relu of the input: a value in the arena)."""
    def block(x, s):
        y = conv(x)
        s = nn.relu(s) if skip_layer else s
        return ACTIVATIONS[act][0](y + s if order == "conv+skip" else s + y)
    out_shape = conv.to_graph(x_shape).output_types[0].shape
    return convgen.trace(block, x_shape, out_shape, input_names=["x", "skip"], name=name)


def _expected(conv: nn.Module, x: np.ndarray, skip: np.ndarray, act, skip_layer: bool, **conv_args) -> np.ndarray:
    state = conv.state_dict()
    fn = getattr(TF, f"conv{x.ndim - 2}d")
    y = fn(t64(x), t64(state["weight"]), t64(state["bias"]) if "bias" in state else None, **conv_args)
    s = t64(skip).clamp(min=0) if skip_layer else t64(skip)
    return ACTIVATIONS[act][1](y + s).numpy()


def _fused_kernel(model):
    """The one conv kernel, which must have taken the add: no add kernel is left."""
    assert "add" not in {k.op for k in model._lowered.kernels}, [k.op for k in model._lowered.kernels]
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    assert kernel.params["RESIDUAL"] and kernel.arg("r").buffer.kind in ("input", "arena")
    return kernel


def _winograd_schedules(graph, m: int, threads: int) -> dict:
    optimized = passes.optimize(graph)
    (node,) = [n for n in optimized.nodes if n.op == "conv"]
    p = lower.conv_geometry(node, lower.LowerContext(optimized, host(), threads))[0]
    flops = 2 * 9 * p["CG"] * p["OC"] * p["OH"] * p["OW"] * p["N"]
    return {node.name: schedule.winograd_schedule(m, p["CG"], p["OCG"], p["G"], p["OH"], p["OW"], flops, host(),
                                                  threads)}


def _narrow_schedules(graph, threads: int) -> dict:
    """The narrow path's tile for the graph's conv, whatever its channel count (1-3 would run rowwise)."""
    (node,) = [n for n in passes.optimize(graph).nodes if n.op == "conv"]
    out = node.type.shape
    return {node.name: schedule.narrow_tiles(out[1], out[3], out[2], host(), threads)}


# (path, conv factory from drawn cin/cout/size, input shape, torch conv kwargs)
def _case(path: str, n: int, cin: int, cout: int, h: int, w: int, stride: int):
    if path == "direct":      # 3x3 (Winograd off) or a strided 1x1; more channels than the narrow path takes
        k, cout = 1 if stride == 2 and cin % 2 else 3, max(cout, schedule.NARROW_MAX_CHANNELS + 1)
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2), (n, cin, h, w), dict(stride=stride, padding=k // 2)
    if path == "narrow":      # 1-8 output channels, rows of a vector or more, strides down the rows
        cout, w = cout % schedule.NARROW_MAX_CHANNELS + 1, w + host().max_vector_width
        return (nn.Conv2d(cin, cout, 3, stride=(stride, 1), padding=1), (n, cin, h, w),
                dict(stride=(stride, 1), padding=1))
    if path == "pixels":      # a 1-D stride-1 row of at least two vectors: full and tail tiles
        return nn.Conv1d(cin, cout, 3, padding=1), (n, cin, 2 * host().max_vector_width + h * w), dict(padding=1)
    if path == "rowwise":     # depthwise on rows longer than the depthwise kernel takes
        return (nn.Conv2d(cin, cin, 3, padding=1, groups=cin), (n, cin, h, w + schedule.DEPTHWISE_STACKED_MAX_ROW),
                dict(padding=1, groups=cin))
    if path == "depthwise":   # short rows, strided too
        return (nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin), (n, cin, h, w),
                dict(stride=stride, padding=1, groups=cin))
    return nn.Conv2d(cin, cout, 3, padding=1, bias=stride == 1), (n, cin, h, w), dict(padding=1)


@pytest.mark.parametrize("path", ["direct", "pixels", "rowwise", "depthwise", "winograd", "narrow"])
@capped_settings(max_examples=4)
@given(m=st.sampled_from([2, 4, 6]),
       n=st.integers(1, 2), cin=st.integers(1, 24), cout=st.integers(4, 40), h=st.integers(3, 13),
       w=st.integers(3, 13), stride=st.sampled_from([1, 2]), order=st.sampled_from(["conv+skip", "skip+conv"]),
       act=st.sampled_from(list(ACTIVATIONS)), skip_layer=st.booleans(), threads=st.sampled_from([1, 2]))
def test_fused_residual_conv_matches_torch(path, m, n, cin, cout, h, w, stride, order, act, skip_layer, threads):
    nn.manual_seed(cin * 41 + cout)
    conv, x_shape, conv_args = _case(path, n, cin, cout, h, w, stride)
    graph = _residual_graph(conv, x_shape, order, act, skip_layer)
    rng = np.random.default_rng(h * 31 + w)
    x = rng.standard_normal(x_shape).astype(np.float32)
    skip = rng.standard_normal(graph.inputs[1][1].shape).astype(np.float32)
    expected = _expected(conv, x, skip, act, skip_layer, **conv_args)
    for backend in ("c", "llvm"):
        if path == "winograd":
            model = _compile_with(graph, backend, threads, _winograd_schedules(graph, m, threads))
        elif path == "narrow":
            model = _compile_with(graph, backend, threads, _narrow_schedules(graph, threads))
        else:
            model = convgen.compile(graph, backend=backend, threads=threads, winograd=False)
        kernel = _fused_kernel(model)
        assert kernel.template == f"conv_{path}", kernel.template
        assert (kernel.params["activation"] or {}).get("kind") == (None if act is None else act)
        tolerance = ERROR[m] if path == "winograd" else 1e-5
        assert_close(model(x, skip), expected, rtol=1e-4, atol=tolerance)


@pytest.mark.parametrize("backend", ["c", "llvm"])
@pytest.mark.parametrize("shape, threads, whole_pass", [((1, 8, 9, 9), 1, True), ((2, 8, 9, 9), 1, True),
                                                        ((1, 16, 12, 12), 2, False), ((1, 8, 16, 32), 1, False)])
@pytest.mark.parametrize("act", [None, "relu"])
def test_direct_path_adds_the_skip_in_either_epilogue_pass(backend, shape, threads, whole_pass, act):
    """The direct path adds the skip where it applies the activation: over each finished row, or over the
    whole small output of a one-thread layer whose rows end short of a vector."""
    nn.manual_seed(3)
    conv = nn.Conv2d(shape[1], 20, 3, padding=1)
    graph = _residual_graph(conv, shape, "skip+conv", act)
    model = convgen.compile(graph, backend=backend, threads=threads, winograd=False)
    kernel = _fused_kernel(model)
    assert kernel.template == "conv_direct" and kernel.params["ACTIVATION_AFTER"] == whole_pass
    rng = np.random.default_rng(0)
    x, skip = rng.standard_normal(shape).astype(np.float32), rng.standard_normal((shape[0], 20) + shape[2:]).astype(np.float32)
    assert_close(model(x, skip), _expected(conv, x, skip, act, False, padding=1))


# -- which graphs fuse ---------------------------------------------------------------------------

def _ops(graph):
    return [(n.op, n.attrs.residual if n.op == "conv" else None) for n in passes.optimize(graph).nodes]


def _compiled_matches_reference(graph, *shapes):
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    expected = reference_outputs(graph, *inputs)
    for backend in ("c", "llvm"):
        got = convgen.compile(graph, backend=backend)(*inputs)
        for g, e in zip(got if isinstance(got, tuple) else (got,), expected):
            assert_close(g, e)


def test_fused_layer_reads_x_weight_bias_and_skip_and_takes_the_add_activation():
    nn.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    for order in ("conv+skip", "skip+conv"):
        graph = passes.optimize(_residual_graph(conv, (1, 4, 6, 6), order, "relu"))
        (node,) = graph.nodes
        assert node.op == "conv" and node.attrs.residual and node.attrs.activation.kind == "relu"
        x, w, b, skip = node.inputs
        assert (x, skip) == ("x", "skip") and not graph.constants[b].any()   # a bias of zeros where none was
        assert passes.optimize(graph).nodes == graph.nodes                   # a second run changes nothing


def test_broadcast_adds_stay_adds():
    """A skip that broadcasts (per channel, or over the batch) is not the conv output's shape: no fusion."""
    for skip_shape in [(2, 6, 1, 1), (1, 6, 5, 5), (2, 1, 5, 5)]:
        def block(x, s):
            return nn.relu(nn.Conv2d(3, 6, 3, padding=1)(x) + s)
        graph = convgen.trace(block, (2, 3, 5, 5), skip_shape)
        assert ("add", None) in _ops(graph), skip_shape
        _compiled_matches_reference(graph, (2, 3, 5, 5), skip_shape)


def test_activation_before_the_add_other_readers_and_self_adds_do_not_fuse():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    cases = {
        "relu before the add": lambda x: nn.relu(conv(x)) + x,
        "conv output read twice": lambda x: (lambda y: (y + x) * y)(conv(x)),
        "conv output is a graph output": lambda x: (lambda y: (y + x, y))(conv(x)),
        "conv + itself": lambda x: (lambda y: y + y)(conv(x)),
    }
    for what, fn in cases.items():
        graph = convgen.trace(fn, (2, 3, 7, 7), name="no_fusion")
        assert all(not residual for op, residual in _ops(graph) if op == "conv"), what
        _compiled_matches_reference(graph, (2, 3, 7, 7))


def test_skip_computed_after_the_conv_moves_the_fused_layer_to_the_add():
    def block(x, s):
        y = nn.Conv2d(3, 6, 3, padding=1)(x)
        t = nn.MaxPool2d(3, stride=1, padding=1)(s)   # in graph order after the conv
        return nn.relu(y + t)
    graph = convgen.trace(block, (1, 3, 8, 8), (1, 6, 8, 8))
    assert _ops(graph) == [("pool", None), ("conv", True)]
    _compiled_matches_reference(graph, (1, 3, 8, 8), (1, 6, 8, 8))


def test_two_conv_operands_fuse_into_the_later_one_and_chains_of_blocks_fuse():
    """A downsampling block adds two conv outputs: the later conv takes the other as its skip; the fused
    block's output then feeds the next block's conv and skip."""
    def blocks(x):
        a, b = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(4, 8, 1)
        y = nn.relu(a(x) + b(x))
        return nn.relu(nn.Conv2d(8, 8, 3, padding=1)(y) + y)
    graph = convgen.trace(blocks, (2, 4, 9, 9))
    optimized = passes.optimize(graph)
    assert [(n.op, n.attrs.residual, n.attrs.kernel) for n in optimized.nodes] == [
        ("conv", False, (3, 3)), ("conv", True, (1, 1)), ("conv", True, (3, 3))]
    _compiled_matches_reference(graph, (2, 4, 9, 9))


# -- ResNet from ONNX -------------------------------------------------------------------------------

def _export(module, x, dynamo: bool) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (x,), buffer, input_names=["image"], output_names=["scores"])
        else:
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["image"],
                              output_names=["scores"])
    return buffer.getvalue()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_resnet_from_both_exporters_fuses_every_residual_add(dynamo):
    """ResNet-18's layout at width 8 (4 basic blocks, 3 downsampling), batch 2: every add fuses into a conv,
    and both backends match torch and onnxruntime."""
    import onnxruntime
    torch.manual_seed(0)
    module = torch_cnns.randomized(torch_cnns.ResNet())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = module(x).numpy()
    data = _export(module, x, dynamo)
    graph = passes.optimize(convgen.from_onnx(data, input_shapes={"image": (2, 3, 32, 32)}))
    assert "add" not in {n.op for n in graph.nodes}
    assert sum(n.op == "conv" and n.attrs.residual for n in graph.nodes) == 4
    runtime = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    for backend in ("c", "llvm"):
        actual = convgen.compile(graph, backend=backend)(x.numpy())
        assert_close(actual, expected, rtol=1e-4, atol=1e-5)
        assert_close(actual, runtime, rtol=1e-4, atol=1e-5)

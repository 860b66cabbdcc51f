"""ConvTranspose: the shape rule, the numpy reference and both backends' gather kernels against torch
(float64) and onnxruntime; the DSL layer and its ShapeErrors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, note
from hypothesis import strategies as st

import convgen
import convgen.functional as F
from convgen import nn, ops, shapes
from convgen.errors import ShapeError
from convgen.passes import optimize
from convgen.summary import layer_stats

from conftest import assert_close, capped_settings, t64

FUNCTIONAL = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH = {1: TF.conv_transpose1d, 2: TF.conv_transpose2d, 3: TF.conv_transpose3d}
LAYER = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
TORCH_LAYER = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}


@st.composite
def cases(draw, max_ndim: int = 3):
    """Parameters torch accepts: output_padding below the stride or the dilation, an output of >= 1."""
    ndim = draw(st.integers(1, max_ndim))
    groups = draw(st.integers(1, 3))
    per_group_in = draw(st.integers(1, 4))
    per_group_out = draw(st.sampled_from([1, 2, 3, 5, 9, 17]))  # around the 4/8/16-lane vectors
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
    size = tuple(draw(st.integers(1, 7 if ndim < 3 else 4)) for _ in range(ndim))
    full = [(i - 1) * s + d * (k - 1) + 1 + op for i, s, d, k, op in zip(size, stride, dilation, kernel, output_padding)]
    padding = tuple(min(p, (f - 1) // 2) for p, f in zip(padding, full))  # keep the output >= 1
    return dict(ndim=ndim, batch=draw(st.integers(1, 2)), groups=groups, cin=groups * per_group_in,
                cout=groups * per_group_out, kernel=kernel, stride=stride, dilation=dilation,
                output_padding=output_padding, padding=padding, size=size, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def _arrays(c):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["batch"], c["cin"]) + c["size"]).astype(np.float32)
    w = rng.standard_normal((c["cin"], c["cout"] // c["groups"]) + c["kernel"]).astype(np.float32)
    b = rng.standard_normal(c["cout"]).astype(np.float32) if c["bias"] else None
    return x, w, b


def _torch(c, x, w, b):
    return TORCH[c["ndim"]](t64(x), t64(w), None if b is None else t64(b), c["stride"], c["padding"],
                            c["output_padding"], c["groups"], c["dilation"]).numpy()


def _attrs(c) -> ops.ConvTransposeAttrs:
    return ops.ConvTransposeAttrs(c["kernel"], c["stride"], tuple((p, p) for p in c["padding"]), c["dilation"],
                                  c["output_padding"], c["groups"])


@capped_settings(200)
@given(c=cases())
def test_reference_matches_torch(c):
    x, w, b = _arrays(c)
    got = ops.run_reference("conv_transpose", _attrs(c), x, w, b)
    assert_close(got, _torch(c, x, w, b))


@capped_settings(20)
@given(c=cases())
def test_kernel_matches_torch(backend, c):
    note(repr(c))
    x, w, b = _arrays(c)
    got = FUNCTIONAL[c["ndim"]](x, w, b, c["stride"], c["padding"], c["output_padding"], c["groups"], c["dilation"],
                                backend=backend)
    assert_close(got, _torch(c, x, w, b))


@pytest.mark.parametrize("stride, kernel, padding", [(2, 4, 1), (3, 3, 0), (2, 3, 1)])
def test_kernel_on_two_threads_with_compile_time_weights(backend, stride, kernel, padding):
    """A layer big enough for threads, its weights packed at compile time (a DSL constant), a fused ReLU."""
    nn.manual_seed(stride * 10 + kernel)
    layer = nn.ConvTranspose2d(16, 24, kernel, stride=stride, padding=padding, output_padding=stride - 1)
    graph = nn.trace(lambda x: nn.relu(layer(x)), (2, 16, 13, 11))
    assert [n.op for n in optimize(graph).nodes] == ["conv_transpose"]
    model = convgen.compile(graph, backend=backend, threads=2)
    x = np.random.default_rng(stride).standard_normal((2, 16, 13, 11)).astype(np.float32)
    expected = torch.relu(TF.conv_transpose2d(t64(x), t64(layer.param("weight")), t64(layer.param("bias")), stride,
                                              padding, stride - 1))
    assert_close(model(x), expected.numpy())


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_dsl_layer_loads_torch_state_dict(backend, ndim):
    torch.manual_seed(ndim)
    reference = TORCH_LAYER[ndim](6, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1).double()
    layer = LAYER[ndim](6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
    layer.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        "weight": (6, 2, 3, 3, 3)[:2 + ndim], "bias": (4,)}
    shape = (1, 6) + (5, 4, 3)[:ndim]
    x = np.random.default_rng(ndim).standard_normal(shape).astype(np.float32)
    model = convgen.compile(nn.trace(layer, shape), backend=backend)
    assert_close(model(x), reference(t64(x)).detach().numpy())


def test_dsl_output_size_picks_output_padding_as_torch():
    layer, reference = nn.ConvTranspose2d(3, 2, 3, stride=2), torch.nn.ConvTranspose2d(3, 2, 3, stride=2)
    x = nn.Input((1, 3, 5, 6))
    for size in [(11, 13), (12, 14), (1, 2, 12, 13)]:
        expected = reference(torch.zeros(1, 3, 5, 6), output_size=size).shape
        assert layer(x, output_size=size).shape == tuple(expected)
    with pytest.raises(ShapeError, match=r"spatial axis 0 .*output size 13 .*\[11, 12\]"):
        layer(x, output_size=(13, 13))


def test_default_init_has_torch_shapes_and_bounds():
    nn.manual_seed(0)
    layer = nn.ConvTranspose2d(8, 6, (3, 5), groups=2, bias=True)
    w, b = layer.param("weight"), layer.param("bias")
    assert w.shape == (8, 3, 3, 5) and b.shape == (6,)
    bound = 1 / math.sqrt(3 * 3 * 5)  # torch's fan_in: weight.size(1) * kernel
    assert 0.9 * bound < np.abs(w).max() <= bound and np.abs(b).max() <= bound


def test_summary_counts_params_flops_and_receptive_field():
    up = nn.ConvTranspose2d(4, 8, 4, stride=2, padding=1)
    graph = nn.trace(lambda x: nn.Conv2d(8, 8, 3, padding=1)(up(x)), (1, 4, 8, 8))
    text = graph.summary(print_fn=None)
    row = next(line for line in text.splitlines() if "conv_transpose" in line)
    assert "[1, 8, 16, 16]" in row and "520" in row  # 4*8*4*4 weights + 8 bias
    stats = layer_stats(graph)
    assert stats[0].flops == 2 * (4 * 8 * 8) * 8 * 16 + 8 * 16 * 16
    # stride 2, kernel 4: an output reads 2 inputs; outputs lie half an input apart; then a 3x3 conv
    assert stats[0].field == ((2, 2), (0.5, 0.5))
    assert stats[1].field == ((3, 3), (0.5, 0.5))


# -- shapes and errors ----------------------------------------------------------------------------

@capped_settings(200)
@given(c=cases(), extra=st.integers(0, 3))
def test_output_padding_rule_matches_torch(c, extra):
    """torch refuses output_padding that is not smaller than the stride or the dilation; so does convgen."""
    op = tuple(o + extra for o in c["output_padding"])
    x, w, b = _arrays(c)
    try:
        expected = TORCH[c["ndim"]](t64(x), t64(w), None, c["stride"], c["padding"], op, c["groups"],
                                    c["dilation"]).shape
    except RuntimeError:
        expected = None
    try:
        shapes.check_output_padding("layer", op, c["stride"], c["dilation"])
        got = shapes.transposed_output_shape("layer", c["size"], c["kernel"], c["stride"],
                                             tuple((p, p) for p in c["padding"]), c["dilation"], op)
    except ShapeError:
        got = None
    assert got == (None if expected is None else tuple(expected[2:]))


def test_output_padding_too_large_names_layer_axis_and_numbers():
    with pytest.raises(ShapeError, match=r"ConvTranspose2d: spatial axis 1 .*output_padding 2 .*stride 2 .*dilation 1"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=(1, 2))
    with pytest.raises(ShapeError, match=r"conv_transpose1d: spatial axis 0 .*output_padding 1 .*stride 1"):
        F.conv_transpose1d(np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 3), np.float32), output_padding=1)


def test_negative_output_size_names_layer_axis_and_numbers():
    x = nn.Input((1, 2, 3, 1))
    layer = nn.ConvTranspose2d(2, 2, 1, padding=(0, 1))
    with pytest.raises(ShapeError, match=r"layer 'convtranspose2d\d*' \(ConvTranspose2d\): spatial axis 1 .*= -1"):
        layer(x)


def test_channel_and_weight_mismatches_are_shape_errors():
    x = nn.Input((1, 3, 4, 4))
    with pytest.raises(ShapeError, match="input has 3 channels, the layer expects 4"):
        nn.ConvTranspose2d(4, 2, 3)(x)
    with pytest.raises(ShapeError, match="not divisible by groups=2"):
        nn.ConvTranspose2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="weight must have rank 4"):
        F.conv_transpose2d(np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ShapeError, match=r"bias must have shape \(4,\)"):
        F.conv_transpose2d(np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 2, 3, 3), np.float32),
                           np.zeros(3, np.float32), groups=2)


# -- ONNX: output_shape and auto_pad resolve to pads here, checked against onnxruntime --------------

def _onnxruntime_conv_transpose(x, w, **attributes):
    import onnxruntime as ort
    from onnx import TensorProto, helper
    ort.set_default_logger_severity(4)  # the refusals tested below would print errors
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attributes)
    graph = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, w.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x, "w": w})[0]


@capped_settings(30)
@given(size=st.lists(st.integers(1, 6), min_size=2, max_size=2), kernel=st.lists(st.integers(1, 4), min_size=2,
       max_size=2), stride=st.lists(st.integers(1, 3), min_size=2, max_size=2),
       mode=st.sampled_from(["SAME_UPPER", "SAME_LOWER", "NOTSET"]), grow=st.lists(st.integers(-3, 2), min_size=2,
       max_size=2), explicit=st.booleans(), seed=st.integers(0, 999))
def test_output_shape_and_auto_pad_match_onnxruntime(size, kernel, stride, mode, grow, explicit, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2) + tuple(size)).astype(np.float32)
    w = rng.standard_normal((2, 3) + tuple(kernel)).astype(np.float32)
    natural = [(i - 1) * s + k for i, s, k in zip(size, stride, kernel)]
    attributes = dict(strides=stride, kernel_shape=kernel)
    if mode != "NOTSET":
        attributes["auto_pad"] = mode
    if explicit:  # output_shape given: pads placed by auto_pad's rule (NOTSET: as SAME_LOWER)
        out_shape = [max(1, n + g) for n, g in zip(natural, grow)]
        attributes["output_shape"] = out_shape
        try:
            pads, output_padding = shapes.transposed_pads_for_output("layer", size, out_shape, kernel, stride,
                                                                     (1, 1), (0, 0), mode)
        except ShapeError:  # larger than natural + stride - 1: onnxruntime refuses it too
            with pytest.raises(Exception, match="inconsistent"):
                _onnxruntime_conv_transpose(x, w, **attributes)
            return
    else:
        pads, output_padding = shapes.transposed_auto_pads("layer", size, kernel, stride, (1, 1), (0, 0), mode)
    expected = _onnxruntime_conv_transpose(x, w, **attributes)
    attrs = ops.ConvTransposeAttrs(tuple(kernel), tuple(stride), pads, (1, 1), output_padding)
    assert_close(ops.run_reference("conv_transpose", attrs, x, w), expected)


def test_asymmetric_pads_kernel_matches_onnxruntime(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 4)).astype(np.float32)
    expected = _onnxruntime_conv_transpose(x, w, strides=[2, 3], pads=[0, 2, 1, 1], dilations=[2, 1],
                                           output_padding=[1, 0], group=2)
    attrs = ops.ConvTransposeAttrs((3, 4), (2, 3), ((0, 1), (2, 1)), (2, 1), (1, 0), 2)
    graph = convgen.Graph("t", (("x", convgen.TensorType(x.shape)),), (convgen.Node(
        "up", "conv_transpose", attrs, ("x", "w"), ("y",),
        ops.get("conv_transpose").infer("up", attrs, [convgen.TensorType(x.shape), convgen.TensorType(w.shape)])),),
        ("y",), {"w": w})
    assert_close(convgen.compile(graph, backend=backend)(x), expected)


@pytest.mark.parametrize("groups", [1, 2])
def test_batch_norm_folds_into_conv_transpose_as_torch_eval(backend, groups):
    """A DCGAN generator block: ConvTranspose2d -> BatchNorm2d -> ReLU becomes one kernel."""
    torch.manual_seed(groups)
    reference = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=groups, bias=False),
                                    torch.nn.BatchNorm2d(6), torch.nn.ReLU()).double().eval()
    with torch.no_grad():
        reference[1].running_mean.uniform_(-1, 1), reference[1].running_var.uniform_(0.5, 2)
        reference[1].weight.uniform_(-2, 2), reference[1].bias.uniform_(-1, 1)
    block = nn.Sequential(nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=groups, bias=False),
                          nn.BatchNorm2d(6), nn.ReLU())
    block.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    graph = nn.trace(block, (2, 4, 5, 7))
    assert [n.op for n in optimize(graph).nodes] == ["conv_transpose"]
    x = np.random.default_rng(groups).standard_normal((2, 4, 5, 7)).astype(np.float32)
    assert_close(convgen.compile(graph, backend=backend)(x), reference(t64(x)).detach().numpy())

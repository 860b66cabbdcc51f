"""convgen.shapes against torch: the output-size formula, padding forms, and the ShapeErrors.

Every property here draws the window parameters with hypothesis and asks torch
(on tiny zero tensors) what size it produces, or whether it refuses.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import nn, ops, shapes
from convgen.errors import ConvgenError, ShapeError
from convgen.ir import TensorType

# torch's padding="same" with an even kernel warns that it copies the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

CONV = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}
MAX_POOL = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
AVG_POOL = {1: TF.avg_pool1d, 2: TF.avg_pool2d, 3: TF.avg_pool3d}
LABEL = "layer 'probe' (Test)"


def torch_pad(x: torch.Tensor, pairs) -> torch.Tensor:
    """(begin, end) per spatial axis -> torch's flat pad list (last axis first)."""
    flat: list[int] = []
    for begin, end in reversed(tuple(pairs)):
        flat += [begin, end]
    return TF.pad(x, flat)


def t64(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


@st.composite
def windows(draw, max_in: int = 12, max_kernel: int = 5, max_stride: int = 4, max_dilation: int = 3,
            max_pad: int = 4):
    """One spatial axis: in, kernel, stride, dilation, pad_begin, pad_end (any, possibly output < 1)."""
    return (draw(st.integers(1, max_in)), draw(st.integers(1, max_kernel)), draw(st.integers(1, max_stride)),
            draw(st.integers(1, max_dilation)), draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad)))


def ours(axes, ceil_mode=False):
    """convgen's output shape, or None when it raises ShapeError."""
    try:
        return tuple(shapes.window_output_size(i, k, s, pb, pe, d, LABEL, axis, ceil_mode)
                     for axis, (i, k, s, d, pb, pe) in enumerate(axes))
    except ShapeError:
        return None


def theirs(fn):
    """torch's output spatial shape, or None when torch refuses the shape."""
    try:
        return tuple(fn().shape[2:])
    except RuntimeError:
        return None


# -- the output-size formula against torch -----------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(axes=st.integers(1, 3).flatmap(lambda n: st.lists(windows(), min_size=n, max_size=n)))
def test_conv_output_size_matches_torch_with_asymmetric_pads(axes):
    ndim = len(axes)
    x = torch.zeros((1, 1) + tuple(a[0] for a in axes))
    w = torch.zeros((1, 1) + tuple(a[1] for a in axes))
    stride, dilation = tuple(a[2] for a in axes), tuple(a[3] for a in axes)
    pads = tuple((a[4], a[5]) for a in axes)
    expected = theirs(lambda: CONV[ndim](torch_pad(x, pads), w, stride=stride, dilation=dilation))
    assert ours(axes) == expected


@settings(max_examples=60, deadline=None)
@given(axes=st.integers(1, 3).flatmap(lambda n: st.lists(windows(), min_size=n, max_size=n)))
def test_conv_output_size_matches_torch_with_symmetric_padding_argument(axes):
    ndim = len(axes)
    axes = [(i, k, s, d, pb, pb) for i, k, s, d, pb, _ in axes]
    x = torch.zeros((1, 1) + tuple(a[0] for a in axes))
    w = torch.zeros((1, 1) + tuple(a[1] for a in axes))
    expected = theirs(lambda: CONV[ndim](x, w, stride=tuple(a[2] for a in axes), padding=tuple(a[4] for a in axes),
                                         dilation=tuple(a[3] for a in axes)))
    assert ours(axes) == expected
    if expected is not None:
        attrs = ops.ConvAttrs(tuple(a[1] for a in axes), tuple(a[2] for a in axes),
                              tuple((a[4], a[5]) for a in axes), tuple(a[3] for a in axes))
        (out,) = ops.get("conv").infer(LABEL, attrs, [TensorType(tuple(x.shape)), TensorType(tuple(w.shape))])
        assert out.shape == (1, 1) + expected


@st.composite
def pool_axes(draw, dilated: bool):
    """Pool windows torch accepts apart from the output size: symmetric pad <= kernel // 2."""
    ndim = draw(st.integers(1, 3))
    axes = []
    for _ in range(ndim):
        k = draw(st.integers(1, 5))
        p = draw(st.integers(0, k // 2))
        d = draw(st.integers(1, 3)) if dilated else 1
        axes.append((draw(st.integers(1, 12)), k, draw(st.integers(1, 4)), d, p, p))
    return axes


@settings(max_examples=60, deadline=None)
@given(axes=pool_axes(dilated=True), ceil_mode=st.booleans())
def test_max_pool_output_size_matches_torch(axes, ceil_mode):
    ndim = len(axes)
    x = torch.zeros((1, 1) + tuple(a[0] for a in axes))
    expected = theirs(lambda: MAX_POOL[ndim](x, tuple(a[1] for a in axes), tuple(a[2] for a in axes),
                                             tuple(a[4] for a in axes), tuple(a[3] for a in axes),
                                             ceil_mode=ceil_mode))
    assert ours(axes, ceil_mode) == expected


@settings(max_examples=60, deadline=None)
@given(axes=pool_axes(dilated=False), ceil_mode=st.booleans(), count_include_pad=st.booleans())
def test_avg_pool_output_size_matches_torch(axes, ceil_mode, count_include_pad):
    ndim = len(axes)
    x = torch.zeros((1, 1) + tuple(a[0] for a in axes))
    try:
        expected = tuple(AVG_POOL[ndim](x, tuple(a[1] for a in axes), tuple(a[2] for a in axes),
                                        tuple(a[4] for a in axes), ceil_mode=ceil_mode,
                                        count_include_pad=count_include_pad).shape[2:])
    except RuntimeError as error:
        expected = None
        if ndim == 3 and "smaller than kernel size" in str(error):
            # avg_pool3d alone also refuses an input smaller than the kernel, padding or not; the size is
            # the one the 1-D and 2-D average pools (and the max pools) give
            expected = theirs(lambda: MAX_POOL[3](x, tuple(a[1] for a in axes), tuple(a[2] for a in axes),
                                                  tuple(a[4] for a in axes), ceil_mode=ceil_mode))
    assert ours(axes, ceil_mode) == expected
    if expected is not None:
        attrs = ops.PoolAttrs("avg", tuple(a[1] for a in axes), tuple(a[2] for a in axes),
                              tuple((a[4], a[5]) for a in axes), (1,) * ndim, ceil_mode, count_include_pad)
        (out,) = ops.get("pool").infer(LABEL, attrs, [TensorType(tuple(x.shape))])
        assert out.shape == (1, 1) + expected


def test_ceil_mode_last_window_must_start_inside_input_or_left_padding():
    # in 5, k 2, s 2, pad 1: ceil would give 4 windows, but the 4th starts at 6 >= 5 + 1
    assert shapes.window_output_size(5, 2, 2, 1, 1, 1, LABEL, 0, ceil_mode=True) == 3
    assert tuple(TF.max_pool1d(torch.zeros(1, 1, 5), 2, 2, 1, ceil_mode=True).shape) == (1, 1, 3)
    # in 6, k 3, s 2, no pad: ceil gives 3, the last window starts at 4 < 6 and is kept
    assert shapes.window_output_size(6, 3, 2, 0, 0, 1, LABEL, 0, ceil_mode=True) == 3
    assert shapes.window_output_size(6, 3, 2, 0, 0, 1, LABEL, 0, ceil_mode=False) == 2


def torch_pool_output_size(i, k, s, d, pb, pe, ceil_mode):
    """aten's pooling_output_shape (Pool.h), with the begin pad as torch's pad_l; < 1 means torch refuses."""
    span = i + pb + pe - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= i + pb:
        out -= 1
    return out


@settings(max_examples=80, deadline=None)
@given(axis=windows(), ceil_mode=st.booleans())
def test_window_output_size_is_torchs_formula(axis, ceil_mode):
    i, k, s, d, pb, pe = axis
    span = i + pb + pe - d * (k - 1) - 1
    if span < 0 and ceil_mode:
        return  # the window overhangs the input: see test_ceil_mode_window_larger_than_the_input_matches_torch
    expected = torch_pool_output_size(i, k, s, d, pb, pe, ceil_mode)
    if expected < 1:
        with pytest.raises(ShapeError):
            shapes.window_output_size(i, k, s, pb, pe, d, LABEL, 0, ceil_mode)
        return
    out = shapes.window_output_size(i, k, s, pb, pe, d, LABEL, 0, ceil_mode)
    assert out == expected
    floor = span // s + 1
    assert ceil_mode or out == floor
    if ceil_mode and max(pb, pe) <= (d * (k - 1) + 1) // 2:  # within the pool padding limit
        assert out in (floor, floor + 1)
        assert out == floor or span % s != 0
        assert (out - 1) * s < i + pb  # the last window starts inside the input or its left padding


@pytest.mark.parametrize("fn, size, kernel, stride, padding, out", [
    (TF.max_pool1d, 3, 4, 3, 0, 1),   # one window [0, 4) over an input of 3: starts inside it
    (TF.max_pool1d, 1, 2, 2, 0, 1),
    (TF.avg_pool1d, 3, 4, 3, 0, 1),
    (TF.max_pool1d, 2, 5, 2, 1, 1),   # padded size 4 < kernel 5, stride 2 covers the overhang of 1
])
def test_ceil_mode_window_larger_than_the_input_matches_torch(fn, size, kernel, stride, padding, out):
    """Under ceil_mode torch (and onnxruntime) accept a window that overhangs the right end, as long as it
    starts inside the input: out = ceil((in + 2p - k) / s) + 1 = 1 here."""
    x = torch.arange(1.0, size + 1).reshape(1, 1, size)
    assert tuple(fn(x, kernel, stride, padding, ceil_mode=True).shape) == (1, 1, out)
    assert shapes.window_output_size(size, kernel, stride, padding, padding, 1, LABEL, 0, ceil_mode=True) == out
    kind = "max" if fn is TF.max_pool1d else "avg"
    attrs = ops.PoolAttrs(kind, (kernel,), (stride,), ((padding, padding),), (1,), ceil_mode=True)
    (inferred,) = ops.get("pool").infer(LABEL, attrs, [TensorType((1, 1, size))])
    assert inferred.shape == (1, 1, out)
    np.testing.assert_allclose(ops.run_reference("pool", attrs, x.numpy()),
                               fn(x, kernel, stride, padding, ceil_mode=True).numpy(), rtol=1e-6)


# -- "same" padding ---------------------------------------------------------------------------------

@st.composite
def same_case(draw):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    return dict(ndim=ndim, size=tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))),
                kernel=tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim))),
                dilation=tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim))),
                groups=groups, in_channels=groups * draw(st.integers(1, 2)),
                out_channels=groups * draw(st.integers(1, 2)), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None)
@given(case=same_case())
def test_same_padding_at_stride_1_keeps_size_and_matches_torch(case):
    ndim, size, kernel, dilation = case["ndim"], case["size"], case["kernel"], case["dilation"]
    stride = (1,) * ndim
    for mode in ("same", "same_upper", "SAME_UPPER"):
        pads = shapes.resolve_padding(mode, size, kernel, stride, dilation, LABEL)
        assert shapes.window_output_shape(LABEL, size, kernel, stride, pads, dilation) == size
        for (pb, pe), k, d in zip(pads, kernel, dilation):
            assert pb + pe == d * (k - 1) and pe - pb in (0, 1)  # torch puts the odd pad at the end
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((2, case["in_channels"]) + size).astype(np.float32)
    w = rng.standard_normal((case["out_channels"], case["in_channels"] // case["groups"]) + kernel).astype(np.float32)
    attrs = ops.ConvAttrs(kernel, stride, pads, dilation, case["groups"])
    got = ops.run_reference("conv", attrs, x, w)
    expected = CONV[ndim](t64(x), t64(w), padding="same", dilation=dilation, groups=case["groups"]).numpy()
    assert got.shape == expected.shape == (2, case["out_channels"]) + size
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 20), kernel=st.integers(1, 6), stride=st.integers(1, 5), dilation=st.integers(1, 3))
def test_same_upper_and_lower_give_ceil_of_in_over_stride(size, kernel, stride, dilation):
    (upper,) = shapes.resolve_padding("same_upper", (size,), (kernel,), (stride,), (dilation,), LABEL)
    (lower,) = shapes.resolve_padding("same_lower", (size,), (kernel,), (stride,), (dilation,), LABEL)
    assert shapes.resolve_padding("same", (size,), (kernel,), (stride,), (dilation,), LABEL) == (upper,)
    assert lower == upper[::-1]
    assert upper[1] - upper[0] in (0, 1)  # SAME_UPPER: the odd pad at the end; SAME_LOWER at the beginning
    for pb, pe in (upper, lower):
        assert shapes.window_output_size(size, kernel, stride, pb, pe, dilation, LABEL, 0) == math.ceil(size / stride)
    # the total pad is the least that makes ceil(in/stride) windows fit
    out = math.ceil(size / stride)
    assert sum(upper) == max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - size)


@settings(max_examples=20, deadline=None)
@given(size=st.lists(st.integers(1, 9), min_size=2, max_size=2), kernel=st.lists(st.integers(1, 4), min_size=2,
       max_size=2), stride=st.lists(st.integers(1, 3), min_size=2, max_size=2),
       lower=st.booleans(), seed=st.integers(0, 999))
def test_same_upper_and_lower_match_onnxruntime(size, kernel, stride, lower, seed):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    auto_pad = "SAME_LOWER" if lower else "SAME_UPPER"
    dilation = [1, 1]  # onnxruntime refuses dilation with auto_pad SAME_*
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2) + tuple(size)).astype(np.float32)
    w = rng.standard_normal((3, 2) + tuple(kernel)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=stride, dilations=dilation,
                            kernel_shape=kernel)
    graph = helper.make_graph([node], "same", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                               helper.make_tensor_value_info("w", TensorProto.FLOAT, w.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x, "w": w})
    pads = shapes.resolve_padding(auto_pad, tuple(size), tuple(kernel), tuple(stride), tuple(dilation), LABEL)
    got = ops.run_reference("conv", ops.ConvAttrs(tuple(kernel), tuple(stride), pads, tuple(dilation)), x, w)
    assert got.shape == expected.shape == (1, 3) + tuple(math.ceil(i / s) for i, s in zip(size, stride))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_padding_forms_resolve_to_pairs():
    args = ((8, 8), (3, 3), (1, 1), (1, 1), LABEL)
    assert shapes.resolve_padding(2, *args) == ((2, 2), (2, 2))
    assert shapes.resolve_padding((1, 2), *args) == ((1, 1), (2, 2))
    assert shapes.resolve_padding([1, 2], *args) == ((1, 1), (2, 2))
    assert shapes.resolve_padding(((0, 1), (2, 3)), *args) == ((0, 1), (2, 3))
    assert shapes.resolve_padding("valid", *args) == ((0, 0), (0, 0))
    assert shapes.resolve_padding("VALID", *args) == ((0, 0), (0, 0))
    assert shapes.resolve_padding(np.int64(1), *args) == ((1, 1), (1, 1))
    assert shapes.resolve_padding(((1, 0),), (8,), (2,), (1,), (1,), LABEL) == ((1, 0),)
    # even kernel: SAME_UPPER pads (0, 1), SAME_LOWER (1, 0)
    assert shapes.resolve_padding("same", (8,), (2,), (1,), (1,), LABEL) == ((0, 1),)
    assert shapes.resolve_padding("same_lower", (8,), (2,), (1,), (1,), LABEL) == ((1, 0),)


# -- ShapeError: names the layer, the axis and the numbers ----------------------------------------

def test_shape_error_is_a_value_error_and_a_convgen_error():
    assert issubclass(ShapeError, ValueError) and issubclass(ShapeError, ConvgenError)
    assert convgen.ShapeError is ShapeError and convgen.ConvgenError is ConvgenError
    with pytest.raises(ValueError):
        shapes.window_output_size(1, 3, 1, 0, 0, 1, LABEL, 0)
    with pytest.raises(ConvgenError):
        shapes.window_output_size(1, 3, 1, 0, 0, 1, LABEL, 0)


@settings(max_examples=60, deadline=None)
@given(axes=st.integers(1, 3).flatmap(lambda n: st.lists(windows(max_in=6, max_pad=2), min_size=n, max_size=n)),
       ceil_mode=st.booleans())
def test_output_below_one_raises_naming_layer_axis_and_numbers(axes, ceil_mode):
    bad = [a for a, axis in enumerate(axes) if torch_pool_output_size(*axis, ceil_mode) < 1]
    if not bad:
        assert ours(axes, ceil_mode) is not None
        return
    first = bad[0]
    i, k, s, d, pb, pe = axes[first]
    with pytest.raises(ShapeError) as info:
        shapes.window_output_shape(LABEL, [a[0] for a in axes], [a[1] for a in axes], [a[2] for a in axes],
                                   [(a[4], a[5]) for a in axes], [a[3] for a in axes], ceil_mode)
    message = str(info.value)
    assert message.startswith(LABEL)
    assert f"spatial axis {first}" in message and f"tensor axis {first + 2}" in message
    assert f"input size {i}" in message and f"({pb}, {pe})" in message
    assert f"dilated kernel {d * (k - 1) + 1}" in message and f"kernel {k}" in message
    assert "< 1" in message


def test_conv_infer_output_below_one_names_layer():
    attrs = ops.ConvAttrs((5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1))
    with pytest.raises(ShapeError, match=r"layer 'c1' \(conv\): spatial axis 1 \(tensor axis 3\): input size 4"):
        ops.get("conv").infer("layer 'c1' (conv)", attrs, [TensorType((1, 1, 8, 4)), TensorType((2, 1, 5, 5))])


@pytest.mark.parametrize("in_channels, out_channels, groups, what, n", [
    (6, 8, 4, "in_channels", 6),
    (8, 6, 4, "out_channels", 6),
    (3, 3, 2, "in_channels", 3),
])
def test_channels_not_divisible_by_groups(in_channels, out_channels, groups, what, n):
    message = rf"axis 1 \(channels\): {what}={n} is not divisible by groups={groups}"
    with pytest.raises(ShapeError, match=r"^Conv2d: " + message):
        nn.Conv2d(in_channels, out_channels, 3, groups=groups)
    # the op's own inference says the same, naming the layer
    attrs = ops.ConvAttrs((3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), groups)
    w = TensorType((out_channels, max(1, in_channels // groups), 3, 3))
    with pytest.raises(ShapeError, match=r"^layer 'g' \(conv\): " + message):
        ops.get("conv").infer("layer 'g' (conv)", attrs, [TensorType((1, in_channels, 8, 8)), w])


def test_channel_mismatch_names_layer_and_both_counts():
    attrs = ops.ConvAttrs((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.raises(ShapeError, match=r"^layer 'c' \(conv\): axis 1 \(channels\): input has 3 channels, "
                                         r"the layer expects 4$"):
        ops.get("conv").infer("layer 'c' (conv)", attrs, [TensorType((1, 3, 8, 8)), TensorType((8, 4, 3, 3))])
    attrs = ops.ConvAttrs((3,), (1,), ((0, 0),), (1,), groups=2)
    with pytest.raises(ShapeError, match=r"input has 6 channels, the layer expects 8"):
        ops.get("conv").infer("layer 'c' (conv)", attrs, [TensorType((1, 6, 8)), TensorType((4, 4, 3))])


def test_dsl_channel_mismatch_names_the_sequential_index():
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Conv2d(5, 3, 3))
    with pytest.raises(ShapeError) as info:
        net.to_graph((1, 1, 32, 32))
    message = str(info.value)
    assert "layer '1'" in message and "channels" in message
    assert "Conv2d" in message and "6" in message and "5" in message


def test_dsl_output_below_one_names_the_layer():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, (1, 5)))
    with pytest.raises(ShapeError, match=r"layer '2' \(Conv2d\): spatial axis 1 \(tensor axis 3\): input size 3"):
        net.to_graph((1, 1, 8, 8))


@settings(max_examples=60, deadline=None)
@given(kernel=st.integers(1, 6), dilation=st.integers(1, 3), begin=st.integers(0, 8), end=st.integers(0, 8))
def test_pool_padding_at_most_half_the_dilated_window(kernel, dilation, begin, end):
    limit = (dilation * (kernel - 1) + 1) // 2
    if max(begin, end) <= limit:
        shapes.check_pool_padding(LABEL, (kernel,), (dilation,), ((begin, end),))
        return
    with pytest.raises(ShapeError) as info:
        shapes.check_pool_padding(LABEL, (kernel,), (dilation,), ((begin, end),))
    message = str(info.value)
    assert message.startswith(LABEL) and "spatial axis 0" in message
    assert f"padding ({begin}, {end})" in message and f"at most half the window, {limit}" in message
    assert f"kernel {kernel}, dilation {dilation}" in message


@settings(max_examples=40, deadline=None)
@given(kernel=st.integers(1, 6), dilation=st.integers(1, 3), begin=st.integers(0, 12), end=st.integers(0, 12))
def test_onnx_pool_padding_below_the_dilated_window(kernel, dilation, begin, end):
    """pad_limit "window" (ONNX): any pad that leaves every window overlapping the input."""
    limit = dilation * (kernel - 1)
    if max(begin, end) <= limit:
        shapes.check_pool_padding(LABEL, (kernel,), (dilation,), ((begin, end),), "window")
        return
    with pytest.raises(ShapeError, match=f"less than the window, at most {limit}"):
        shapes.check_pool_padding(LABEL, (kernel,), (dilation,), ((begin, end),), "window")


def test_pool_infer_rejects_pad_over_half_kernel():
    attrs = ops.PoolAttrs("max", (3, 3), (1, 1), ((1, 1), (0, 2)), (1, 1))
    with pytest.raises(ShapeError, match=r"^layer 'p' \(pool\): spatial axis 1 \(tensor axis 3\): padding \(0, 2\) "
                                         r"is larger than the kernel allows: at most half the window, 1"):
        ops.get("pool").infer("layer 'p' (pool)", attrs, [TensorType((1, 1, 8, 8))])
    with pytest.raises(ShapeError, match=r"layer '0' \(MaxPool2d\).*padding \(2, 2\)"):
        nn.Sequential(nn.MaxPool2d(3, padding=2)).to_graph((1, 1, 8, 8))
    # torch refuses it too
    with pytest.raises(RuntimeError):
        TF.max_pool2d(torch.zeros(1, 1, 8, 8), 3, 1, 2)


@pytest.mark.parametrize("padding, axis, pair", [
    (-1, 0, "(-1, -1)"),
    ((0, -2), 1, "(-2, -2)"),
    (((0, 0), (1, -3)), 1, "(1, -3)"),
    (((-1, 0), (0, 0)), 0, "(-1, 0)"),
])
def test_negative_padding_raises(padding, axis, pair):
    with pytest.raises(ShapeError) as info:
        shapes.resolve_padding(padding, (8, 8), (3, 3), (1, 1), (1, 1), LABEL)
    message = str(info.value)
    assert message.startswith(LABEL) and f"spatial axis {axis}" in message
    assert f"padding must be >= 0, got {pair}" in message


@pytest.mark.parametrize("padding", ["full", "causal", "", "same upper", "samee"])
def test_unknown_padding_string_raises(padding):
    with pytest.raises(ShapeError, match=r"^layer 'probe' \(Test\): unknown padding mode " + re.escape(repr(padding))):
        shapes.resolve_padding(padding, (8, 8), (3, 3), (1, 1), (1, 1), LABEL)
    with pytest.raises(ShapeError, match=r"layer '0' \(Conv2d\): unknown padding mode"):
        nn.Sequential(nn.Conv2d(1, 1, 3, padding=padding)).to_graph((1, 1, 8, 8))


@pytest.mark.parametrize("padding", [(1, 2, 3), ((1, 2, 3), (0, 0)), 1.5, None, True])
def test_malformed_padding_raises(padding):
    with pytest.raises(ShapeError, match=r"^layer 'probe' \(Test\): padding"):
        shapes.resolve_padding(padding, (8, 8), (3, 3), (1, 1), (1, 1), LABEL)


@pytest.mark.parametrize("kernel, stride, dilation", [(0, 1, 1), (3, 0, 1), (3, 1, 0)])
def test_nonpositive_kernel_stride_dilation_raise(kernel, stride, dilation):
    with pytest.raises(ShapeError, match=rf"kernel \({kernel}\), stride \({stride}\) and dilation \({dilation}\)"):
        shapes.window_output_size(8, kernel, stride, 0, 0, dilation, LABEL, 0)


@pytest.mark.parametrize("value", [True, [2, True], (False, 3), [np.True_, 2]])
def test_booleans_are_not_sizes(value):
    """True == 1 in Python, so a flag passed where a size belongs would otherwise become a 1."""
    with pytest.raises(ShapeError, match="must be an int or a tuple of 2 ints"):
        shapes.as_tuple(value, 2, "stride", "layer 'p'")
    with pytest.raises(ShapeError):
        nn.Conv2d(1, 1, 3, stride=value)

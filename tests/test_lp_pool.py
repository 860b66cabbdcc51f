"""Lp pooling: torch's F.lp_pool / LPPool (x^p, the ceil_mode rescaling, its NaNs) and ONNX
LpPool / GlobalLpPool (|x|^p, pads, dilations) against torch and onnxruntime, on both backends."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, note
from hypothesis import strategies as st

import convgen
import convgen.functional as F
from convgen import nn, ops
from convgen.errors import ShapeError
from convgen.summary import layer_stats

from conftest import assert_close, capped_settings, t64

FUNCTIONAL = {1: F.lp_pool1d, 2: F.lp_pool2d, 3: F.lp_pool3d}
TORCH = {1: TF.lp_pool1d, 2: TF.lp_pool2d, 3: TF.lp_pool3d}
NORMS = [1, 2, 3, 1.5, 0.5, 4.0, float("inf")]


@st.composite
def torch_cases(draw):
    ndim = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    size = tuple(k + draw(st.integers(0, 5)) for k in kernel)  # torch refuses inputs smaller than the kernel
    return dict(ndim=ndim, kernel=kernel, stride=draw(st.one_of(st.none(), st.just(stride))), size=size,
                p=draw(st.sampled_from(NORMS)), ceil_mode=draw(st.booleans()),
                signs=draw(st.sampled_from(["positive", "mixed"])), seed=draw(st.integers(0, 2**16)))


def _input(c) -> np.ndarray:
    x = np.random.default_rng(c["seed"]).standard_normal((2, 3) + c["size"]).astype(np.float32)
    return np.abs(x) + 0.1 if c["signs"] == "positive" else x


def _torch(c, x):
    kernel = c["kernel"][0] if c["ndim"] == 1 else c["kernel"]  # lp_pool1d takes an int kernel
    stride = c["stride"][0] if c["ndim"] == 1 and c["stride"] else c["stride"]
    return TORCH[c["ndim"]](t64(x), c["p"], kernel, stride, c["ceil_mode"]).numpy()


def _assert_close_with_nans(got, expected):
    """The same NaN positions (a negative window sum or a negative x^p for non-integral p), the rest close."""
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    assert_close(np.where(nan, 0, got), np.where(nan, 0, expected), rtol=2e-4)


@capped_settings(200)
@given(c=torch_cases())
def test_reference_matches_torch_including_nan(c):
    x = _input(c)
    attrs = ops.LpPoolAttrs(float(c["p"]), c["kernel"], c["stride"] or c["kernel"], ((0, 0),) * c["ndim"],
                            (1,) * c["ndim"], c["ceil_mode"])
    _assert_close_with_nans(ops.run_reference("lp_pool", attrs, x), _torch(c, x))


@capped_settings(20)
@given(c=torch_cases())
def test_kernel_matches_torch_including_nan(backend, c):
    note(repr(c))
    x = _input(c)
    got = FUNCTIONAL[c["ndim"]](x, c["p"], c["kernel"], c["stride"], c["ceil_mode"], backend=backend)
    _assert_close_with_nans(got, _torch(c, x))


def test_where_torch_gives_nan(backend):
    """p = 1 is a plain window sum (negative allowed); odd p: NaN for a negative sum; p = 1.5: NaN as soon as
    one tap is negative; even p never."""
    x = np.array([[[-1.0, -2.0, 3.0, -0.5]]], np.float32)
    for p, expected in [(1, [-3.0, 2.5]), (3, [np.nan, 26.875 ** (1 / 3)]), (1.5, [np.nan, np.nan]),
                        (2, [5 ** 0.5, 9.25 ** 0.5])]:
        got = F.lp_pool1d(x, p, 2, backend=backend)
        np.testing.assert_allclose(got.ravel(), expected, rtol=1e-6)
        np.testing.assert_allclose(TF.lp_pool1d(torch.from_numpy(x), p, 2).numpy().ravel(), expected, rtol=1e-6)


def test_dsl_layers_and_summary(backend):
    layer = nn.LPPool2d(2, (2, 3), stride=(1, 2), ceil_mode=True)
    graph = nn.trace(lambda x: nn.GlobalLpPool(3)(layer(x)), (1, 4, 7, 8))
    stats = layer_stats(graph)
    assert [s.shape for s in stats] == [(1, 4, 6, 4), (1, 4, 1, 1)]
    assert stats[0].field == ((2, 3), (1, 2)) and stats[0].flops == 4 * 6 * 4 * (2 * 6 + 1)
    x = np.random.default_rng(0).standard_normal((1, 4, 7, 8)).astype(np.float32)
    pooled = torch.nn.LPPool2d(2, (2, 3), stride=(1, 2), ceil_mode=True)(t64(x))
    expected = pooled.abs().pow(3).sum(dim=(2, 3), keepdim=True).pow(1 / 3)
    assert_close(convgen.compile(graph, backend=backend)(x), expected.numpy())


def test_bad_norms_and_windows_are_refused():
    with pytest.raises(ShapeError, match="p must be > 0, got -1"):
        nn.LPPool2d(-1, 2)
    with pytest.raises(ShapeError, match="p must be > 0, got -inf"):
        F.lp_pool2d(np.ones((1, 1, 4, 4), np.float32), float("-inf"), 2)
    with pytest.raises(ShapeError, match="p must be a number"):
        nn.GlobalLpPool("2")
    with pytest.raises(ShapeError, match=r"spatial axis 1 .*input size 2 .*kernel 3"):
        nn.trace(nn.LPPool2d(2, 3), (1, 1, 5, 2))
    attrs = ops.LpPoolAttrs(2.0, (3,), (1,), ((2, 0),), (1,), convention="onnx")
    with pytest.raises(ShapeError, match=r"padding \(2, 0\) is larger than the kernel allows"):
        ops.get("lp_pool").infer("layer", attrs, [convgen.TensorType((1, 1, 8))])


# -- ONNX LpPool / GlobalLpPool against onnxruntime ----------------------------------------------

def _onnxruntime(op: str, x: np.ndarray, **attributes) -> np.ndarray:
    import onnxruntime as ort
    from onnx import TensorProto, helper
    ort.set_default_logger_severity(3)  # its shape inference disagrees with its LpPool kernel under ceil_mode
    node = helper.make_node(op, ["x"], ["y"], **attributes)
    graph = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _graph(op: str, attrs, shape) -> convgen.Graph:
    out = ops.get(op).infer("layer", attrs, [convgen.TensorType(shape)])
    return convgen.Graph(op, (("x", convgen.TensorType(shape)),), (convgen.Node("layer", op, attrs, ("x",), ("y",),
                                                                                  out),), ("y",))


@capped_settings(12)
@given(kernel=st.lists(st.integers(1, 3), min_size=2, max_size=2), stride=st.lists(st.integers(1, 3), min_size=2,
       max_size=2), dilation=st.lists(st.integers(1, 2), min_size=2, max_size=2), pads=st.lists(st.integers(0, 1),
       min_size=4, max_size=4), p=st.integers(1, 3), extra=st.lists(st.integers(0, 4), min_size=2, max_size=2),
       ceil_mode=st.booleans(), seed=st.integers(0, 999))
def test_onnx_lp_pool_matches_onnxruntime(backend, kernel, stride, dilation, pads, p, extra, ceil_mode, seed):
    pads = [min(q, (d * (k - 1) + 1) // 2) for q, k, d in zip(pads, kernel * 2, dilation * 2)]
    size = tuple(d * (k - 1) + 1 + e for k, d, e in zip(kernel, dilation, extra))
    x = np.random.default_rng(seed).standard_normal((2, 3) + size).astype(np.float32)
    expected = _onnxruntime("LpPool", x, kernel_shape=kernel, strides=stride, dilations=dilation, pads=pads, p=p,
                            ceil_mode=int(ceil_mode))
    attrs = ops.LpPoolAttrs(float(p), tuple(kernel), tuple(stride), ((pads[0], pads[2]), (pads[1], pads[3])),
                            tuple(dilation), ceil_mode, convention="onnx")
    assert_close(ops.run_reference("lp_pool", attrs, x), expected)
    assert_close(convgen.compile(_graph("lp_pool", attrs, x.shape), backend=backend)(x), expected)


def test_infinite_norm_is_the_max_of_abs_with_nan_winning(backend):
    x = np.array([[[-3.0, 1.0, np.nan, 2.0, -0.5]]], np.float32)
    expected = TF.lp_pool1d(torch.from_numpy(x), float("inf"), 2, ceil_mode=True).numpy()
    np.testing.assert_array_equal(expected, [[[3.0, np.nan, 0.5]]])
    np.testing.assert_array_equal(F.lp_pool1d(x, float("inf"), 2, ceil_mode=True, backend=backend), expected)
    graph = nn.trace(nn.GlobalLpPool(float("inf")), (1, 1, 5))
    np.testing.assert_array_equal(convgen.compile(graph, backend=backend)(np.abs(x[..., :2]).repeat(3, -1)[..., :5]
                                                                          * -1), [[[3.0]]])


@pytest.mark.parametrize("p, shape", [(2, (2, 3, 5, 7)), (1, (1, 4, 9)), (3, (1, 2, 3, 4, 5))])
def test_global_lp_pool_matches_onnxruntime(backend, p, shape):
    x = np.random.default_rng(p).standard_normal(shape).astype(np.float32)
    expected = _onnxruntime("GlobalLpPool", x, p=p)
    attrs = ops.GlobalLpPoolAttrs(float(p))
    assert_close(ops.run_reference("global_lp_pool", attrs, x), expected)
    assert_close(convgen.compile(_graph("global_lp_pool", attrs, x.shape), backend=backend)(x), expected)

"""Reductions.  ONNX Reduce* against onnxruntime: run-time spatial ReduceMean/ReduceMax as global pools, every
other run-time reduction (all nine ops, any axes: channel, batch, mixed, all) through the reduce kernel, on
both backends, axes as attribute (opset 13) and as input (opset 18), negative axes, keepdims; every Reduce
op folded when its data is an initializer.  The DSL's x.mean/sum/amax/amin/prod/logsumexp against torch
(float64), NaN propagation, large values in logsumexp, a run-time batch."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import nn
from conftest import assert_close, capped_settings, t64
from convgen.onnx.convert_reductions import KIND as REDUCERS


def reduce_model(op: str, shape, axes, keepdims: int, opset: int, constant=None) -> bytes:
    axes_as_input = opset >= (13 if op == "ReduceSum" else 18)
    inputs, inits, attrs = ["x"], [], {"keepdims": keepdims}
    if axes_as_input and axes is not None:
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        inputs.append("axes")
    elif axes is not None:
        attrs["axes"] = list(axes)
    if constant is not None:
        inits.append(numpy_helper.from_array(constant, "x"))
    node = helper.make_node(op, inputs, ["y"], **attrs)
    graph_inputs = [] if constant is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if constant is not None:   # a graph needs a run-time input: add it to the folded reduction
        node = helper.make_node(op, inputs, ["r"], **attrs)
        graph_inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])]
        nodes = [node, helper.make_node("Add", ["r", "z"], ["y"])]
    else:
        nodes = [node]
    graph = helper.make_graph(nodes, "g", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def run_both(data: bytes, feeds: dict, backend: str):
    expected = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    actual = convgen.compile(convgen.from_onnx(data), backend=backend)(*feeds.values())
    return actual, expected


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(["ReduceMean", "ReduceMax"]), spatial=st.lists(st.integers(1, 7), min_size=1, max_size=3),
       channels=st.integers(1, 5), keepdims=st.integers(0, 1), negative=st.booleans(),
       opset=st.sampled_from([13, 18]))
def test_spatial_reductions_are_global_pools(op, spatial, channels, keepdims, negative, opset, backend):
    shape = [2, channels] + spatial
    rank = len(shape)
    axes = [a - rank if negative else a for a in range(2, rank)][::-1]
    x = np.random.default_rng(len(spatial)).standard_normal(shape).astype(np.float32)
    actual, expected = run_both(reduce_model(op, shape, axes, keepdims, opset), {"x": x}, backend)
    assert_close(actual, expected)


@pytest.mark.parametrize("op", sorted(REDUCERS))
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([-1, 0], 0), (None, 0)])
def test_every_reduction_folds_like_onnxruntime(op, axes, keepdims):
    constant = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    data = reduce_model(op, None, axes, keepdims, 18, constant=constant)
    z = np.array([0.25], np.float32)
    actual, expected = run_both(data, {"z": z}, "c")
    assert_close(actual, expected)


def test_noop_with_empty_axes_passes_through(backend):
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    actual, expected = run_both(data, {"x": x}, backend)
    assert_close(actual, expected)


def test_out_of_range_axis_is_a_shape_error():
    with pytest.raises(convgen.ShapeError, match="axis 4"):
        convgen.from_onnx(reduce_model("ReduceMean", [1, 2, 3, 4], [4], 1, 18))


@st.composite
def reductions(draw):
    """A shape of rank 1-4 (the innermost axis sometimes past a vector), its reduced axes (None: every axis)."""
    rank = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    shape[-1] = draw(st.sampled_from([shape[-1], 17, 37]))
    axes = draw(st.one_of(st.none(), st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True)))
    return shape, axes


def _data(op: str, shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if op in ("ReduceProd", "ReduceLogSum"):   # near 1: long products stay in range, sums positive
        return rng.uniform(0.8, 1.25, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@capped_settings(16)
@given(op=st.sampled_from(sorted(REDUCERS)), case=reductions(), keepdims=st.integers(0, 1), negative=st.booleans(),
       opset=st.sampled_from([13, 18]), seed=st.integers(0, 2 ** 16))
def test_run_time_reductions_match_onnxruntime(op, case, keepdims, negative, opset, seed, backend):
    shape, axes = case
    if axes is not None and negative:
        axes = [a - len(shape) for a in axes]
    x = _data(op, shape, seed)
    actual, expected = run_both(reduce_model(op, shape, axes, keepdims, opset), {"x": x}, backend)
    assert_close(actual, expected)


@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0], 0), ([1, 3], 0), ([0, 2], 1), (None, 0)])
def test_channel_batch_and_mixed_axes_use_the_reduce_kernel(axes, keepdims, backend):
    """1x..: the channel axis of an NCHW map, the batch axis, mixed axes, every axis (a scalar)."""
    x = _data("ReduceMean", (3, 19, 5, 7), 0)
    data = reduce_model("ReduceMean", [3, 19, 5, 7], axes, keepdims, 18)
    assert [n.op for n in convgen.from_onnx(data).nodes] == ["reduce"]
    actual, expected = run_both(data, {"x": x}, backend)
    assert actual.shape == expected.shape
    assert_close(actual, expected)


TORCH_REDUCTIONS = ["mean", "sum", "amax", "amin", "prod", "logsumexp"]


def _torch_reduce(method: str, x, dim, keepdim: bool):
    import torch
    if method == "prod":   # torch.prod takes one dim: one axis at a time, the last first
        dims = range(x.ndim) if dim is None else sorted(d % x.ndim for d in ((dim,) if isinstance(dim, int) else dim))
        for d in sorted(dims, reverse=True):
            x = torch.prod(x, d, keepdim=keepdim)
        return x
    if dim is None:
        dim = tuple(range(x.ndim))
    return getattr(torch, method)(x, dim, keepdim=keepdim)


@capped_settings(12)
@given(method=st.sampled_from(TORCH_REDUCTIONS), case=reductions(), keepdim=st.booleans(), as_int=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_dsl_reductions_match_torch(method, case, keepdim, as_int, seed, backend):
    shape, axes = case
    dim = axes[0] - len(shape) if as_int and axes else (tuple(axes) if axes else None)
    x = _data("ReduceProd" if method == "prod" else "", shape, seed)
    traced = nn.Input(tuple(shape))
    model = convgen.compile(nn.graph(getattr(traced, method)(dim, keepdim), name="r"), backend=backend)
    assert_close(model(x), _torch_reduce(method, t64(x), dim, keepdim).numpy())


@pytest.mark.parametrize("method", ["amax", "amin", "sum", "logsumexp"])
def test_nan_propagates_like_torch(method, backend):
    x = _data("", (2, 5, 37), 3)
    x[0, 1, 20] = x[1, 3, 0] = np.nan   # inside the vector part and in the first lane
    fn = getattr(nn, method)
    traced = nn.Input((2, 5, 37))
    model = convgen.compile(nn.graph(fn(traced, -1), fn(traced, 1), name="nan"), backend=backend)
    for got, dim in zip(model(x), (-1, 1)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(_torch_reduce(method, t64(x), dim, False).numpy()))


def test_logsumexp_of_large_values_does_not_overflow(backend):
    x = _data("", (2, 7, 40), 4) * 30 + 200   # exp(200) overflows float32; exp(x - max) does not
    x[1, 2, :] = -np.inf                         # a row of -inf: -inf, as torch
    graph = nn.graph(nn.logsumexp(nn.Input((2, 7, 40)), -1), name="lse")
    got, expected = convgen.compile(graph, backend=backend)(x), _torch_reduce("logsumexp", t64(x), -1, False).numpy()
    assert got[1, 2] == expected[1, 2] == -np.inf
    got[1, 2] = expected[1, 2] = 0.0
    assert_close(got, expected)


def test_reductions_with_a_run_time_batch(backend):
    x = nn.Input((1, 6, 4, 9))
    graph = nn.graph(x.mean(1, keepdim=True), x.amax((1, 3)), name="batched")
    model = convgen.compile(graph, backend=backend, batch=None)
    data = _data("", (5, 6, 4, 9), 5)
    mean, peak = model(data)
    assert_close(mean, data.astype(np.float64).mean(1, keepdims=True))
    assert_close(peak, data.max((1, 3)))
    with pytest.raises(convgen.UnsupportedError, match="keep the batch"):
        convgen.compile(nn.graph(x.sum(0), name="b"), backend=backend, batch=None)


def test_bad_dims_are_shape_errors():
    x = nn.Input((2, 3, 4))
    with pytest.raises(convgen.ShapeError, match="dim 3 is out of range"):
        x.mean(3)
    with pytest.raises(convgen.ShapeError, match="twice"):
        x.sum((1, -2))


@capped_settings(16)
@given(method=st.sampled_from(TORCH_REDUCTIONS), case=reductions(), keepdim=st.booleans(), batch=st.integers(1, 3),
       run_time_batch=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_reductions_on_two_threads_match_torch(method, case, keepdim, batch, run_time_batch, seed, backend):
    """Every layer given two threads (the work threshold lowered to nothing): blocks of the outermost kept
    loop (a vector-multiple share of a kept innermost row, a share of an outer loop), or one block when
    nothing is kept; samples inside each block, a run-time batch too."""
    from convgen import schedule
    shape, axes = case
    shape = [batch] + shape
    axes = None if axes is None else [a + 1 for a in axes]   # the batch axis kept: it may be a run-time value
    dim = tuple(axes) if axes else tuple(range(1, len(shape)))
    x = _data("ReduceProd" if method == "prod" else "", shape, seed)
    traced = nn.Input(tuple([1] + shape[1:]) if run_time_batch else tuple(shape))
    graph = nn.graph(getattr(traced, method)(dim, keepdim), name="r2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schedule, "MIN_FLOPS_PER_THREAD", 1)
        model = convgen.compile(graph, backend=backend, threads=2, batch=None if run_time_batch else batch)
    (kernel,) = [k for k in model._lowered.kernels if k.op in ("reduce", "global_pool")]
    p = kernel.params
    assert p["THREADS"] == (2 if p["BLOCKS"] > 1 else 1) and p["BLOCKS"] <= 2
    if p["PAR"] == len(p["DIMS"]) - 1 and p["BLOCKS"] > 1:
        assert p["BLOCK"] % p["LANES"] == 0
    assert_close(model(x), _torch_reduce(method, t64(x), dim, keepdim).numpy())


INTEGER_TYPES = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}   # ReduceMax/Min's 8-bit types


@pytest.mark.parametrize("dtype", sorted(INTEGER_TYPES))
@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("axes", [[1], [2, 3], [0, 3]])
def test_max_and_min_of_small_integers_are_exact(op, dtype, axes, backend):
    """8-bit integers are exact in float32, and so are their max and min (the channel, spatial (global
    pool) and mixed-axes kernels); the result is the input's type, as onnxruntime's."""
    info = np.iinfo(dtype)
    x = np.random.default_rng(len(axes)).integers(info.min, info.max, (2, 3, 5, 4), endpoint=True).astype(dtype)
    node = helper.make_node(op, ["x"], ["y"], axes=axes, keepdims=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", INTEGER_TYPES[dtype], x.shape)],
                              [helper.make_tensor_value_info("y", INTEGER_TYPES[dtype], None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    actual, expected = run_both(data, {"x": x}, backend)
    assert actual.dtype == expected.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(actual, expected)


def test_integer_sums_and_wide_integers_are_refused():
    """Sums of integers would round in float32 (and ONNX's wrap); int32 does not fit float32 at all."""
    for op, elem in (("ReduceSum", TensorProto.INT8), ("ReduceMax", TensorProto.INT32)):
        node = helper.make_node(op, ["x"], ["y"], keepdims=0)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, (2, 3))],
                                  [helper.make_tensor_value_info("y", elem, None)])
        with pytest.raises(convgen.UnsupportedError, match="element type int(8|32)"):
            convgen.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))

"""gemm (ONNX Gemm) and matmul (numpy / ONNX MatMul) on the linear kernel: references against torch
and onnxruntime, kernels on both backends with constant and run-time operands, the DSL's @."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

import convgen
from convgen import nn, ops
from convgen.ir import TensorType

from conftest import assert_close, capped_settings, one_layer_graph, reference_outputs, t64

C_SHAPES = {"none": None, "scalar": (), "row": (1, -1), "vector": (-1,), "column": (-2, 1), "full": (-2, -1)}


def gemm_case(rng, m, k, n, trans_a, trans_b, c_kind):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    shape = C_SHAPES[c_kind]
    c = None if shape is None else rng.standard_normal(tuple({-1: n, -2: m}.get(d, d) for d in shape)).astype(np.float32)
    return a, b, c


def torch_gemm(attrs: ops.GemmAttrs, a, b, c) -> np.ndarray:
    ta, tb = t64(a), t64(b)
    y = attrs.alpha * ((ta.T if attrs.trans_a else ta) @ (tb.T if attrs.trans_b else tb))
    return (y if c is None else y + attrs.beta * t64(c)).numpy()


def onnx_gemm(attrs: ops.GemmAttrs, a, b, c) -> np.ndarray:
    names = ["a", "b"] + ([] if c is None else ["c"])
    node = helper.make_node("Gemm", names, ["y"], alpha=attrs.alpha, beta=attrs.beta, transA=int(attrs.trans_a),
                            transB=int(attrs.trans_b))
    inputs = [helper.make_tensor_value_info(nm, TensorProto.FLOAT, v.shape) for nm, v in zip(names, (a, b, c))]
    graph = helper.make_graph([node], "gemm", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, (a, b, c))))[0]


gemm_params = dict(m=st.integers(1, 9), k=st.integers(1, 20), n=st.integers(1, 37), trans_a=st.booleans(),
                   trans_b=st.booleans(), c_kind=st.sampled_from(list(C_SHAPES)), alpha=st.sampled_from([1.0, 0.5]),
                   beta=st.sampled_from([1.0, -2.0]), seed=st.integers(0, 2**32 - 1))


@capped_settings(30)
@given(**gemm_params)
def test_gemm_reference_matches_torch_and_onnxruntime(m, k, n, trans_a, trans_b, c_kind, alpha, beta, seed):
    a, b, c = gemm_case(np.random.default_rng(seed), m, k, n, trans_a, trans_b, c_kind)
    attrs = ops.GemmAttrs(alpha, beta, trans_a, trans_b)
    arrays = (a, b) if c is None else (a, b, c)
    got = ops.run_reference("gemm", attrs, *arrays)
    assert_close(got, torch_gemm(attrs, a, b, c))
    assert_close(got, onnx_gemm(attrs, a, b, c))
    assert ops.get("gemm").infer("t", attrs, [TensorType(x.shape) for x in arrays])[0].shape == (m, n)


@capped_settings(12)
@given(constant_b=st.booleans(), constant_c=st.booleans(), **gemm_params)
def test_gemm_kernels_match_torch(backend, m, k, n, trans_a, trans_b, c_kind, alpha, beta, seed, constant_b, constant_c):
    a, b, c = gemm_case(np.random.default_rng(seed), m, k, n, trans_a, trans_b, c_kind)
    attrs = ops.GemmAttrs(alpha, beta, trans_a, trans_b)
    arrays = [a, b] + ([] if c is None else [c])
    constant = [False, constant_b] + ([] if c is None else [constant_c or c.ndim == 0])  # inputs have an axis
    graph, runtime = one_layer_graph("gemm", attrs, arrays, constant)
    got = convgen.compile(graph, backend=backend)(*runtime)
    assert_close(got, torch_gemm(attrs, a, b, c))
    assert_close(got, reference_outputs(graph, *runtime)[0])


@pytest.mark.parametrize("a_shape, b_shape", [
    ((7,), (7, 5)), ((3, 7), (7, 5)), ((2, 3, 4, 7), (7, 9)), ((3, 7), (7,)), ((7,), (7,)), ((2, 3, 7), (1, 7, 5)),
])
@pytest.mark.parametrize("constant_b", [False, True])
def test_matmul_kernels_match_torch(backend, a_shape, b_shape, constant_b, rng):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    graph, runtime = one_layer_graph("matmul", ops.MatMulAttrs(), [a, b], [False, constant_b])
    got = convgen.compile(graph, backend=backend)(*runtime)
    expected = torch.matmul(t64(a), t64(b)).numpy()
    assert got.shape == expected.shape == graph.output_types[0].shape
    assert_close(got, expected)
    assert_close(got, reference_outputs(graph, *runtime)[0])


def test_dsl_matmul_with_fused_activation(backend, rng):
    """x @ W (constant) + bias -> relu: the relu fuses into the matmul; @ with a run-time right operand."""
    w = rng.standard_normal((6, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    x_in = nn.Input((3, 6), name="x")
    v_in = nn.Input((4, 2), name="v", tracer=x_in.tracer)
    hidden = nn.relu(x_in @ w)
    graph = nn.graph(hidden + bias, nn.matmul(hidden, v_in), np.ones((2, 3), np.float32) @ x_in, name="mm")
    model = convgen.compile(graph, backend=backend)
    assert [n.op for n in model.graph.nodes].count("activation") == 0
    x = rng.standard_normal((3, 6)).astype(np.float32)
    v = rng.standard_normal((4, 2)).astype(np.float32)
    th = torch.relu(t64(x) @ t64(w))
    expected = (th + t64(bias), th @ t64(v), torch.ones(2, 3, dtype=torch.float64) @ t64(x))
    for got, want in zip(model(x=x, v=v), expected):
        assert_close(got, want.numpy())


def test_batched_right_operand_is_refused_at_compile_time(backend):
    a_in = nn.Input((2, 3, 4), name="a")
    b_in = nn.Input((2, 4, 5), name="b", tracer=a_in.tracer)
    graph = nn.graph(a_in @ b_in, name="batched")
    assert graph.output_types[0].shape == (2, 3, 5)
    with pytest.raises(convgen.UnsupportedError, match=r"B of shape \(2, 4, 5\) is a batch of matrices"):
        convgen.compile(graph, backend=backend)


@pytest.mark.parametrize("op, attrs, shapes_, message", [
    ("gemm", ops.GemmAttrs(), [(3, 4), (5, 6)], r"inner sizes differ: A \(3, 4\) has K=4, B \(5, 6\) has K=5"),
    ("gemm", ops.GemmAttrs(trans_a=True), [(3, 4), (5, 6)], r"A\^T \(3, 4\) has K=3"),
    ("gemm", ops.GemmAttrs(), [(3, 4), (4, 6), (2, 6)], r"C of shape \(2, 6\) does not broadcast to \(3, 6\)"),
    ("gemm", ops.GemmAttrs(), [(3, 4, 1), (4, 6)], r"A must be a matrix"),
    ("matmul", ops.MatMulAttrs(), [(3, 4), (5, 6)], r"inner sizes differ"),
    ("matmul", ops.MatMulAttrs(), [(2, 3, 4), (3, 4, 6)], r"cannot broadcast sizes \[2, 3\]"),
])
def test_product_shape_errors(op, attrs, shapes_, message):
    with pytest.raises(convgen.ShapeError, match=message):
        ops.get(op).infer(f"layer 'p' ({op})", attrs, [TensorType(s) for s in shapes_])

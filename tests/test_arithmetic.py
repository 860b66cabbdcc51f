"""add, sub, mul, div, prelu and n-ary sum with numpy broadcasting: references against torch, compiled
kernels (both backends) against torch and the references, runtime and constant operands, the DSL's
operators, and activation fusion into the arithmetic."""
from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convgen
from convgen import nn, ops, shapes
from convgen.ir import TensorType

from conftest import assert_close, capped_settings, one_layer_graph, reference_outputs, t64

TORCH_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
             "prelu": lambda a, b: torch.where(a < 0, a * b, a)}


@st.composite
def broadcast_shapes(draw, operands: int = 2):
    """Operand shapes cut from one shape (leading axes dropped, axes set to 1), and their broadcast."""
    out = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    shapes_ = []
    for _ in range(operands):
        shape = list(out[draw(st.integers(0, len(out))):])
        for a in range(len(shape)):
            if draw(st.booleans()):
                shape[a] = 1
        shapes_.append(tuple(shape))
    return np.broadcast_shapes(*shapes_), shapes_


def operand_values(rng: np.random.Generator, shape, op: str, index: int) -> np.ndarray:
    """Normal values; divisors kept away from 0 so float32 and float64 quotients stay close."""
    x = rng.standard_normal(shape).astype(np.float32)
    if op == "div" and index == 1:
        x = (np.sign(x) + (x == 0)) * (0.5 + np.abs(x))
    return x.astype(np.float32)


# -- references ---------------------------------------------------------------------------------

@capped_settings(40)
@given(case=broadcast_shapes(), op=st.sampled_from(list(TORCH_OPS)), seed=st.integers(0, 2**32 - 1))
def test_reference_and_shape_rule_match_torch(case, op, seed):
    out, (sa, sb) = case
    rng = np.random.default_rng(seed)
    a, b = operand_values(rng, sa, op, 0), operand_values(rng, sb, op, 1)
    got = ops.run_reference(op, ops.BinaryAttrs(), a, b)
    expected = TORCH_OPS[op](t64(a), t64(b)).numpy()
    assert got.shape == expected.shape == out
    assert_close(got, expected)
    (inferred,) = ops.get(op).infer("t", ops.BinaryAttrs(), [TensorType(sa), TensorType(sb)])
    assert inferred.shape == np.broadcast_shapes(sa, sb)


def test_broadcast_strides_and_collapsed_loops():
    assert shapes.broadcast_strides((3, 1, 1), (2, 3, 4, 5)) == (0, 1, 0, 0)
    assert shapes.broadcast_strides((), (2, 3)) == (0, 0)
    out = (2, 3, 4, 5)
    dims, strides = shapes.collapse_axes(out, [shapes.contiguous_strides(out), (0, 1, 0, 0)])
    assert dims == (2, 3, 20) and strides == ((60, 20, 1), (0, 1, 0))
    assert shapes.collapse_axes((1, 1), [(1, 1)]) == ((1,), ((0,),))


@pytest.mark.parametrize("shapes_, message", [
    ([(2, 3), (4, 3)], r"axis 0 \(axis -2 from the end\): cannot broadcast sizes \[2, 4\]"),
    ([(5,), (2, 3, 4)], r"axis 2 .*sizes \[4, 5\].*\(5,\), \(2, 3, 4\)"),
])
def test_incompatible_shapes_are_a_shape_error(shapes_, message):
    with pytest.raises(convgen.ShapeError, match=message):
        ops.get("mul").infer("layer 'm' (mul)", ops.BinaryAttrs(), [TensorType(s) for s in shapes_])


def test_operand_counts_are_checked():
    with pytest.raises(convgen.ShapeError, match="expects 2 inputs, got 3"):
        ops.get("sub").infer("t", ops.BinaryAttrs(), [TensorType((2,))] * 3)
    with pytest.raises(convgen.ShapeError, match="expects 1 to"):
        ops.get("sum").infer("t", ops.BinaryAttrs(), [])


# -- compiled kernels ---------------------------------------------------------------------------

def _graph(op: str, values: list[np.ndarray], constant: list[bool]):
    """One `op` layer; `values` change in place: a run-time scalar becomes shape (1,), as graph inputs
    have an axis."""
    values[:] = [v if c or v.ndim else v.reshape(1) for v, c in zip(values, constant)]
    return one_layer_graph(op, ops.BinaryAttrs(), values, constant)


@capped_settings(20)
@given(case=broadcast_shapes(), op=st.sampled_from(list(TORCH_OPS)), constant=st.sampled_from([(0, 0), (0, 1), (1, 0)]),
       seed=st.integers(0, 2**32 - 1))
def test_binary_kernels_match_torch_and_reference(backend, case, op, constant, seed):
    out, operand_shapes = case
    rng = np.random.default_rng(seed)
    values = [operand_values(rng, s, op, i) for i, s in enumerate(operand_shapes)]
    graph, runtime = _graph(op, values, list(map(bool, constant)))
    got = convgen.compile(graph, backend=backend)(*runtime)
    assert_close(got, TORCH_OPS[op](t64(values[0]), t64(values[1])).numpy())
    assert_close(got, reference_outputs(graph, *runtime)[0], rtol=1e-6, atol=1e-7)


@capped_settings(10)
@given(case=broadcast_shapes(operands=4), constant=st.lists(st.booleans(), min_size=4, max_size=4),
       seed=st.integers(0, 2**32 - 1))
def test_sum_of_many_broadcast_operands(backend, case, constant, seed):
    out, operand_shapes = case
    constant[0] = False
    rng = np.random.default_rng(seed)
    values = [operand_values(rng, s, "sum", i) for i, s in enumerate(operand_shapes)]
    graph, runtime = _graph("sum", values, constant)
    got = convgen.compile(graph, backend=backend)(*runtime)
    expected = t64(values[0]) + t64(values[1]) + t64(values[2]) + t64(values[3])
    assert_close(got, expected.numpy())
    assert_close(got, reference_outputs(graph, *runtime)[0])  # float32 partial sums may cancel


def test_sum_of_one_operand_is_a_copy(backend, rng):
    x_in = nn.Input((2, 3, 4))
    model = convgen.compile(nn.graph(nn.add_n(x_in) * 1.0, nn.add_n([x_in]), name="one"), backend=backend)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for got in model(x):
        np.testing.assert_array_equal(got, x)


def test_dsl_operators_with_tensors_arrays_and_scalars(backend, rng):
    x_in = nn.Input((2, 4, 3, 5), name="x")
    s_in = nn.Input((4, 1, 1), name="s", tracer=x_in.tracer)
    bias = rng.standard_normal((4, 1, 1)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, (1, 5)).astype(np.float32)
    outputs = [x_in * s_in + bias, 2.0 - x_in / scale, bias * x_in, scale / (x_in * x_in + 1.0), -x_in - 3,
               nn.sub(nn.mul(x_in, 0.5), nn.div(s_in, 4.0)), 1 + x_in]
    model = convgen.compile(nn.graph(*outputs, name="dsl"), backend=backend)
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    s = rng.standard_normal((4, 1, 1)).astype(np.float32)
    tx, ts, tb, tc = t64(x), t64(s), t64(bias), t64(scale)
    expected = [tx * ts + tb, 2.0 - tx / tc, tb * tx, tc / (tx * tx + 1.0), -tx - 3, tx * 0.5 - ts / 4.0, 1 + tx]
    for got, want in zip(model(x=x, s=s), expected):
        assert_close(got, want.numpy())


def test_division_by_zero_and_special_values_as_torch(backend):
    specials = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-30, 3e38], np.float32)
    a = np.repeat(specials, specials.size).reshape(1, specials.size, specials.size)
    b = np.tile(specials, specials.size).reshape(1, specials.size, specials.size)
    a_in = nn.Input(a.shape, name="a")
    b_in = nn.Input(b.shape, name="b", tracer=a_in.tracer)
    model = convgen.compile(nn.graph(a_in / b_in, a_in * b_in, a_in - b_in, name="special"), backend=backend)
    for got, want in zip(model(a=a, b=b), (torch.from_numpy(a) / torch.from_numpy(b),
                                           torch.from_numpy(a) * torch.from_numpy(b),
                                           torch.from_numpy(a) - torch.from_numpy(b))):
        np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_activation_fuses_into_arithmetic(backend, op, rng):
    """conv -> (x OP per-pixel constant) -> relu6: the clip becomes the arithmetic kernel's epilogue
    (a per-pixel constant does not fold into the conv)."""
    conv = nn.Conv2d(3, 6, 3, padding=1)
    constant = rng.uniform(0.5, 2.0, (5, 7)).astype(np.float32)
    x_in = nn.Input((2, 3, 5, 7))
    graph = nn.graph(nn.relu6(getattr(nn, op)(conv(x_in), constant)), name="fused")
    model = convgen.compile(graph, backend=backend)
    assert [n.op for n in model.graph.nodes] == ["conv", op]
    assert model.graph.nodes[1].attrs.activation == ops.Activation("clip", (0.0, 6.0))
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    y = TF.conv2d(t64(x), t64(conv.param("weight")), t64(conv.param("bias")), padding=1)
    assert_close(model(x), TF.relu6(TORCH_OPS[op](y, t64(constant))).numpy())
    assert_close(model(x), reference_outputs(model.graph, x)[0])


def test_non_numeric_operand_is_a_type_error():
    x_in = nn.Input((1, 2))
    with pytest.raises(TypeError, match="must be a Tensor, a number or a numeric array"):
        x_in * "two"
    with pytest.raises(convgen.ShapeError, match="cannot broadcast"):
        x_in + np.ones((3,), np.float32)


def test_summary_keeps_the_receptive_field_through_a_constant_scale():
    x_in = nn.Input((1, 3, 16, 16))
    y = nn.Conv2d(3, 4, 3)(x_in) * np.ones((4, 1, 1), np.float32)
    from convgen.summary import layer_stats
    assert layer_stats(nn.graph(nn.MaxPool2d(2)(y)))[-1].field == ((4, 4), (2, 2))


@pytest.mark.parametrize("slopes", [1, 4])
def test_prelu_layer_matches_torch_including_specials(backend, slopes, rng):
    layer = nn.PReLU(slopes)
    layer.register_parameter("weight", rng.uniform(-1, 1, slopes).astype(np.float32))
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    x.flat[:5] = [np.nan, -np.inf, np.inf, -0.0, -1e30]
    model = convgen.compile(nn.Sequential(nn.Conv2d(4, 4, 1), layer).to_graph(x.shape, name="prelu"), backend=backend)
    conv = torch.nn.Conv2d(4, 4, 1)
    conv.weight.data, conv.bias.data = (torch.from_numpy(model.graph.constants[v]) for v in model.graph.nodes[0].inputs[1:])
    torch_layer = torch.nn.PReLU(slopes)
    torch_layer.weight.data = torch.from_numpy(layer.param("weight"))
    with torch.no_grad():
        expected = torch_layer(conv(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(convgen.ShapeError, match="3 slopes for an input of shape"):
        nn.prelu(nn.Input((1, 4, 2)), np.ones(3, np.float32))

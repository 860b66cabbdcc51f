"""Run-time comparisons, logic and Where (ops.binary's greater ... where, templates/strided.c.j2's table,
backends/llvm/strided.py): ONNX graphs against onnxruntime, torch's dynamo spellings of Softplus,
Threshold and Hardshrink against torch (Softplus matched back to one activation fused into the conv),
both backends."""
from __future__ import annotations

import io

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen import ops, passes

from conftest import assert_close, capped_settings

COMPARISONS = ["Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual"]


def _values(rng, shape):
    """Few distinct values (ties for Equal), a NaN and infinities."""
    x = rng.integers(-2, 3, size=shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, size=min(3, flat.size))] = rng.choice([np.nan, np.inf, -np.inf], size=min(3, flat.size))
    return x


@given(compare=st.sampled_from(COMPARISONS), logic=st.sampled_from(["", "Not", "And", "Or", "Xor"]),
       shapes=st.sampled_from([((2, 3, 4), (3, 4)), ((2, 1, 4), (2, 3, 1)), ((1, 5), (5,)), ((3, 2), (1,))]),
       constant_other=st.booleans(), seed=st.integers(0, 2 ** 16))
@capped_settings(20)
def test_comparisons_logic_and_where_match_onnxruntime(compare, logic, shapes, constant_other, seed, backend):
    rng = np.random.default_rng(seed)
    (xs, ys), y = shapes, None
    x, y = _values(rng, xs), _values(rng, ys)
    nodes = [helper.make_node(compare, ["x", "y"], ["c0"])]
    if logic == "Not":
        nodes.append(helper.make_node("Not", ["c0"], ["c"]))
    elif logic:
        nodes += [helper.make_node("Less", ["y", "x"], ["c1"]), helper.make_node(logic, ["c0", "c1"], ["c"])]
    condition = "c" if logic else "c0"
    nodes.append(helper.make_node("Where", [condition, "x", "y"], ["out"]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)]
    initializers = [numpy_helper.from_array(y, "y")] if constant_other else []
    if not constant_other:
        inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, y.shape))
    graph = helper.make_graph(nodes, "compare", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": x} if constant_other else {"x": x, "y": y}
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(**feeds)
    np.testing.assert_array_equal(actual, expected)


def test_the_references_are_numpys():
    a = np.array([1.0, np.nan, 2.0, -1.0], np.float32)
    b = np.array([1.0, 1.0, np.nan, 0.0], np.float32)
    attrs = ops.BinaryAttrs()
    for op, fn in [("greater", np.greater), ("less", np.less), ("equal", np.equal), ("not_equal", np.not_equal),
                   ("greater_equal", np.greater_equal), ("less_equal", np.less_equal)]:
        np.testing.assert_array_equal(ops.run_reference(op, attrs, a, b), fn(a, b).astype(np.float32))
    np.testing.assert_array_equal(ops.run_reference("where", attrs, np.array([1, 0, np.nan, 0], np.float32), a, b),
                                  np.array([1.0, 1.0, 2.0, 0.0], np.float32))


def test_a_bool_output_is_bool(backend):
    """The 0/1 a comparison holds inside the model comes out as the bool the model declares (NaN compares false)."""
    node = helper.make_node("Greater", ["x", "y"], ["c"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, (4,)) for n in "xy"],
                              [helper.make_tensor_value_info("c", TensorProto.BOOL, None)])
    compiled = convgen.compile(convgen.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])),
                               backend=backend)
    c = compiled(np.array([1, 2, np.nan, -1], np.float32), np.array([0, 3, 0, -2], np.float32))
    assert c.dtype == np.bool_ and c.tolist() == [True, False, False, True]


DYNAMO_SPELLINGS = {"softplus": torch.nn.Softplus(), "softplus beta 2 threshold 5": torch.nn.Softplus(2.0, 5.0),
                    "softplus beta 0.5 threshold 3": torch.nn.Softplus(0.5, 3.0),
                    "threshold": torch.nn.Threshold(0.1, 20.0), "hardshrink": torch.nn.Hardshrink(0.7)}


@pytest.mark.parametrize("name", sorted(DYNAMO_SPELLINGS))
def test_torch_dynamo_where_spellings_match_torch(name, backend):
    """Softplus as Where(beta*x > threshold, x, Softplus(beta*x)/beta): one softplus(beta, threshold) fused
    into the conv; Threshold and Hardshrink as a comparison and a where layer."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), DYNAMO_SPELLINGS[name]).eval()
    x = torch.randn(2, 3, 9, 9) * 4
    buffer = io.BytesIO(torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto.SerializeToString())
    graph = convgen.from_onnx(buffer.getvalue())
    if name.startswith("softplus"):
        (conv,) = passes.optimize(graph).nodes
        assert conv.op == "conv" and conv.attrs.activation.kind == "softplus"
    with torch.no_grad():
        expected = module(x).numpy()
    assert_close(convgen.compile(graph, backend=backend)(x.numpy()), expected, rtol=1e-5, atol=1e-6)

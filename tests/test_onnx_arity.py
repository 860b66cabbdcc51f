"""Node arity at import: a node with more inputs or outputs than its op defines at the model's opset
(or fewer than it requires) is a ModelFormatError naming the node, the op and the counts."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import convgen
from test_onnx_import import make_model

W = np.ones((4, 3, 3, 3), np.float32)
B = np.zeros(4, np.float32)


def _conv(inputs: list[str], outputs: list[str] = ["y"]):  # noqa: B006 (read only)
    node = helper.make_node("Conv", inputs, outputs, name="conv", pads=[1, 1, 1, 1])
    return make_model([node], [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], [("w", W), ("b", B), ("e", B)])


@pytest.mark.parametrize("inputs, count", [(["x", "w", "b", "e"], 4), (["x"], 1)])
def test_conv_with_too_many_or_too_few_inputs_names_node_op_and_counts(inputs, count):
    with pytest.raises(convgen.ModelFormatError,
                       match=rf"node 'conv' \(Conv\) \(#0\) has {count} inputs; Conv at opset 17 takes 2 to 3"):
        convgen.from_onnx(_conv(inputs))


def test_relu_with_two_outputs_is_refused():
    model = make_model([helper.make_node("Relu", ["x"], ["y", "z"], name="act")], [("x", [1, 2])], [("y", [1, 2])])
    with pytest.raises(convgen.ModelFormatError, match=r"'act' \(Relu\) \(#0\) has 2 outputs; Relu at opset 17 takes 1$"):
        convgen.from_onnx(model)


def test_variadic_op_with_no_input_is_refused_and_many_are_accepted():
    empty = make_model([helper.make_node("Sum", [], ["y"], name="s")], [("x", [1, 2])], [("y", [1, 2])])
    with pytest.raises(convgen.ModelFormatError, match=r"'s' \(Sum\) \(#0\) has 0 inputs; Sum at opset 17 takes at least 1"):
        convgen.from_onnx(empty)
    many = make_model([helper.make_node("Sum", ["x"] * 5, ["y"], name="s")], [("x", [1, 2])], [("y", [1, 2])])
    x = np.arange(2, dtype=np.float32).reshape(1, 2)
    np.testing.assert_array_equal(convgen.compile(convgen.from_onnx(many))(x), 5 * x)


def test_trailing_empty_optional_inputs_are_left_out_not_counted():
    model = _conv(["x", "w", ""])
    x = np.ones((1, 3, 8, 8), np.float32)
    assert convgen.compile(convgen.from_onnx(model))(x).shape == (1, 4, 8, 8)
    clip = make_model([helper.make_node("Clip", ["x", "", ""], ["y"], name="c")], [("x", [1, 2])], [("y", [1, 2])])
    convgen.from_onnx(clip)


def test_arity_is_checked_at_the_models_opset():
    """The schema consulted is the one at the model's opset (13 here, not the newest)."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", [1, 2])], [("y", [1, 2])], opset=13)
    model.graph.node.append(helper.make_node("Relu", ["x", "x"], ["z"], name="two"))
    with pytest.raises(convgen.ModelFormatError, match=r"'two' \(Relu\) \(#1\) has 2 inputs; Relu at opset 13 takes 1$"):
        convgen.from_onnx(model)

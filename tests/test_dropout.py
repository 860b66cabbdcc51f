"""ONNX Dropout at inference, its mask output included (SqueezeNet, VGG-19 and AlexNet as onnx ships them
name the mask and leave it unread): the output is the input, the mask all true.  Oracle: onnxruntime
(opset 12+), onnx's reference evaluator for older opsets."""
from __future__ import annotations

import glob

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import convgen
from conftest import assert_close


def dropout_model(opset: int, mask_use: str) -> onnx.ModelProto:
    """x -> Relu -> Dropout(y, mask); mask_use "unread": mask dangling; "multiplied": y * Cast(mask, float)."""
    inputs = ["r"] + (["ratio", "training"] if opset >= 12 else [])
    attrs = {"ratio": 0.3} if opset < 12 else {}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Dropout", inputs, ["d", "mask"], **attrs)]
    out = "d"
    if mask_use == "multiplied":
        nodes += [helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["d", "m"], ["y"])]
        out = "y"
    inits = [numpy_helper.from_array(np.array(0.3, np.float32), "ratio"),
             numpy_helper.from_array(np.array(False), "training")] if opset >= 12 else []
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [7, 10, 13])
@pytest.mark.parametrize("mask_use", ["unread", "multiplied"])
def test_dropout_with_mask_is_identity_at_inference(opset, mask_use, backend, rng):
    model = dropout_model(opset, mask_use)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    if opset >= 12:
        expected = onnxruntime.InferenceSession(model.SerializeToString(),
                                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    else:  # onnxruntime's opset 7-11 kernel writes an all-false mask; onnx's reference (and opset 12+) all true
        expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    graph = convgen.from_onnx(model)
    assert [n.op for n in graph.nodes] == ["activation"] + (["mul"] if mask_use == "multiplied" else [])
    assert_close(convgen.compile(graph, backend=backend)(x), expected)


LIGHT = glob.glob(onnx.__path__[0] + "/backend/test/data/light/light_*.onnx")


@pytest.mark.parametrize("name", ["squeezenet", "vgg19", "bvlc_alexnet", "inception_v1"])
def test_light_models_with_dropout_masks_import(name):
    """onnx's shipped models whose Dropout names its mask import (h15z's tests run them against onnxruntime)."""
    path = next(p for p in LIGHT if p.endswith(f"light_{name}.onnx"))
    model = onnx.load(path)
    assert any(n.op_type == "Dropout" and len(n.output) == 2 for n in model.graph.node)
    graph = convgen.from_onnx(model)
    assert graph.output_types[0].shape[:2] == (1, 1000)

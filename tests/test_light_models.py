"""ONNX's shipped `light` models (onnx/backend/test/data/light: full-size 224x224 SqueezeNet, VGG-19,
ResNet-50, DenseNet-121, Inception-v1/v2, ShuffleNet, AlexNet, ZFNet-512, opset 9) against onnxruntime
on the same file.

The files carry no weights: every parameter is a ConstantOfShape filled with 0.02, which makes every
channel alike (and hides indexing bugs). The test replaces each with seeded random values fit for the
input it feeds (He-scaled weights, small biases, positive batch-norm scales and variances), and ends
the graph at the logits (the final Softmax would squash differences below any tolerance), then runs a
random image. Each network compiles on one backend (SqueezeNet on both) to keep CI time small: see CASES.
"""
from __future__ import annotations

import glob

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

import convgen
from conftest import assert_close

LIGHT = onnx.__path__[0] + "/backend/test/data/light/light_{}.onnx"
# model -> the backends it runs on.  Compiling dominates (gcc -O3 or LLVM O3 of tens of distinct layer
# kernels at 224x224: 5-30 s a model on the loaded 2-core host; LLVM's took 1.1-3x C's, DenseNet-121's 91 s
# against 29 s), so every model runs once, SqueezeNet (the cheapest) on both, ShuffleNet on LLVM.
CASES = {"squeezenet": ("c", "llvm"), "bvlc_alexnet": ("c",), "zfnet512": ("c",), "shufflenet": ("llvm",),
         "inception_v1": ("c",), "inception_v2": ("c",), "resnet50": ("c",), "densenet121": ("c",),
         "vgg19": ("c",)}


def random_parameter(rng: np.random.Generator, shape: tuple[int, ...], consumer: onnx.NodeProto, index: int,
                     graph: onnx.GraphProto) -> np.ndarray:
    """Values for one parameter, by what reads it."""
    op = consumer.op_type
    if op == "Unsqueeze":   # a per-channel scale (Mul) or shift (Add) reshaped to broadcast
        op = next(n.op_type for n in graph.node if consumer.output[0] in n.input)
        index = 1 if op == "Mul" else 2
    if op in ("Conv", "Gemm", "Reshape") and index != 2 or op == "Mul":
        if op == "Mul":
            return rng.uniform(0.5, 1.5, shape)
        transposed = op == "Gemm" and not any(a.name == "transB" and a.i for a in consumer.attribute)
        fan_in = shape[0] if transposed else int(np.prod(shape[1:]))
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / max(1, fan_in)))
    if op == "BatchNormalization" and index in (1, 4):   # scale, variance
        return rng.uniform(0.5, 1.5, shape)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)   # biases, shifts, means


def randomized(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """The model with each ConstantOfShape parameter replaced by a seeded random initializer."""
    rng = np.random.default_rng(seed)
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept, added, shapes = [], [], set()
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = tuple(int(d) for d in initializers[node.input[0]])
        shapes.add(node.input[0])
        consumer, index = next((n, k) for n in graph.node for k, i in enumerate(n.input) if i == node.output[0])
        values = random_parameter(rng, shape, consumer, index, graph).astype(np.float32, copy=False)
        added.append(numpy_helper.from_array(values, node.output[0]))
    if kept[-1].op_type == "Softmax":
        graph.output[0].name = kept.pop().input[0]
    del graph.node[:]
    graph.node.extend(kept)
    unread = [t for t in graph.initializer if t.name not in shapes]
    del graph.initializer[:]
    graph.initializer.extend(unread + added)
    # IR version 3 lists every initializer among the graph's inputs too
    inputs = [i for i in graph.input if i.name not in shapes]
    inputs += [onnx.helper.make_tensor_value_info(t.name, onnx.TensorProto.FLOAT, t.dims) for t in added]
    del graph.input[:]
    graph.input.extend(inputs)
    return model


def test_every_light_model_is_a_case():
    shipped = {p.split("light_")[-1][:-len(".onnx")] for p in glob.glob(LIGHT.format("*"))}
    assert shipped == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_light_model_matches_onnxruntime(name):
    model = randomized(onnx.load(LIGHT.format(name)))
    data = model.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    x = np.random.default_rng(1).standard_normal(feed.shape).astype(np.float32, copy=False)
    expected = session.run(None, {feed.name: x})[0]
    assert expected.std() > 0.1, "the random weights give a degenerate output"
    graph = convgen.from_onnx(data)
    del model, data
    for backend in CASES[name]:
        assert_close(convgen.compile(graph, backend=backend)(x), expected, rtol=1e-3, atol=1e-4)

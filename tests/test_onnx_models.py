"""Real CNN architectures built in torch, exported to ONNX, imported and compiled by convgen.

Exported with torch.onnx.export(dynamo=False) (the TorchScript exporter: it runs offline; the
dynamo exporter needs onnxscript), at the default opset 17 with torch's constant folding, and
at opsets 9 and 13 (and 7 and 22 for some) without it and with a symbolic batch axis (fixed at import with
input_shapes), so the models also carry BatchNormalization nodes and the Shape/Gather/Unsqueeze/
Concat shape arithmetic that convgen folds at import; opset 9 goes through onnx's version
converter.  Oracles: torch itself, and onnxruntime running the same
file.  onnxruntime has had ceil_mode average-pool divisor bugs at opset <= 18: where it
disagrees with torch on such a model, torch and the ONNX spec win (the test says which).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import convgen
import torch_cnns
from conftest import assert_close

ARCHITECTURES = {
    "resnet": (torch_cnns.ResNet, (1, 3, 32, 32)),
    "mobilenet_v2": (torch_cnns.MobileNetV2, (1, 3, 32, 32)),
    "densenet_block": (torch_cnns.DenseBlock, (2, 8, 8, 8)),
    "inception": (torch_cnns.Inception, (1, 8, 9, 9)),
    "shufflenet_unit": (torch_cnns.ShuffleUnit, (1, 12, 6, 6)),
    "conv1d": (torch_cnns.Conv1dNet, (2, 2, 33)),
    "conv3d": (torch_cnns.Conv3dNet, (1, 1, 9, 10, 11)),
}
EXPORTS = [(17, True), (13, False), (9, False)]   # (opset, torch's constant folding)
# (opset 9 exports average pools with padding as Pad + AveragePool)
CASES = [(name, opset, fold) for name in sorted(ARCHITECTURES) for opset, fold in EXPORTS]
# the ends of the supported opset range, 7 (version-converted) and 22
CASES += [("resnet", 7, False), ("shufflenet_unit", 7, False), ("mobilenet_v2", 22, False), ("inception", 22, True)]


def export(module: torch.nn.Module, x: torch.Tensor, opset: int, fold: bool) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=opset, do_constant_folding=fold,
                          input_names=["image"], output_names=["scores"],
                          dynamic_axes=None if fold else {"image": {0: "batch"}, "scores": {0: "batch"}})
    return buffer.getvalue()


def has_ceil_mode_average_pool(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "AveragePool" and any(a.name == "ceil_mode" and a.i for a in n.attribute)
               for n in model.graph.node)


@pytest.fixture(scope="module")
def exported():
    """Each architecture once: module, input, expected output, and its ONNX files by export."""
    cache = {}

    def get(name: str, opset: int, fold: bool):
        if name not in cache:
            build, shape = ARCHITECTURES[name]
            torch.manual_seed(0)
            module = torch_cnns.randomized(build())
            x = torch.randn(shape)
            with torch.no_grad():
                cache[name] = (module, x, module(x).numpy(), {})
        module, x, expected, files = cache[name]
        if (opset, fold) not in files:
            files[opset, fold] = export(module, x, opset, fold)
        return x.numpy(), expected, files[opset, fold]
    return get


@pytest.mark.parametrize("name,opset,fold", CASES)
def test_architecture_matches_torch_and_onnxruntime(name, opset, fold, backend, exported):
    x, expected, data = exported(name, opset, fold)
    model = onnx.load_from_string(data)
    compiled = convgen.compile(convgen.from_onnx(data, input_shapes={"image": x.shape}), backend=backend)
    actual = compiled(x)
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    runtime = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    if np.allclose(runtime, expected, rtol=1e-4, atol=1e-5):
        assert_close(actual, runtime, rtol=1e-4, atol=1e-5)
    else:  # onnxruntime's known ceil_mode average-pool divisor bug: torch and the ONNX spec win
        assert has_ceil_mode_average_pool(model), "onnxruntime disagrees with torch on a model without " \
                                                  "ceil_mode average pools"


def test_folded_shape_arithmetic_leaves_no_layers(exported):
    """Exported without torch's folding, MobileNetV2's x.view(x.size(0), -1) arrives as Shape, Gather,
    Unsqueeze, Concat and Reshape nodes; convgen folds them at import into one flatten."""
    _, _, data = exported("mobilenet_v2", 13, False)
    op_types = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= op_types
    graph = convgen.from_onnx(data, input_shapes={"image": (1, 3, 32, 32)})
    assert {n.op for n in graph.nodes} == {"conv", "batch_norm", "activation", "add", "global_pool", "reshape",
                                           "gemm"}


def test_initializers_become_constants(exported):
    _, _, data = exported("resnet", 17, True)
    graph = convgen.from_onnx(data)
    assert graph.input_names == ("image",)
    initializers = onnx.load_from_string(data).graph.initializer
    assert sum(v.size for v in graph.constants.values()) == sum(np.prod(t.dims) for t in initializers)


DYNAMO = ["resnet", "mobilenet_v2", "conv1d", "conv3d"]


@pytest.mark.parametrize("name", DYNAMO)
def test_default_dynamo_export_matches_torch(name, exported, tmp_path):
    """torch.onnx.export's default (dynamo) exporter writes global pooling as ReduceMean/ReduceMax over
    the spatial axes (opset 18+, axes as an input); convgen imports them as the global pools."""
    x, expected, _ = exported(name, 17, True)
    build, _ = ARCHITECTURES[name]
    torch.manual_seed(0)
    module = torch_cnns.randomized(build())
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), verbose=False)
    assert {n.op_type for n in onnx.load(str(path)).graph.node} & {"ReduceMean", "ReduceMax"}
    graph = convgen.from_onnx(str(path))   # the path: torch keeps the weights in a file beside it
    for backend in ("c", "llvm"):
        assert_close(convgen.compile(graph, backend=backend)(x), expected, rtol=1e-4, atol=1e-5)

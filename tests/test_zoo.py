"""The model zoo (tests/zoo_models.py): each network exported with both of torch's exporters — the
TorchScript one (dynamo=False, opset 17) and the default (dynamo) one — imported, compiled on both
backends and compared with torch and with onnxruntime running the same file, within 1e-3 relative and
1e-4 x the output's scale absolute.

Exports are slow (the dynamo exporter takes 1-8 s per model), so each (model, exporter) is exported
once per session and both backends run in the one test.
"""
from __future__ import annotations

import io
import warnings

import onnxruntime
import pytest
import torch

import convgen
import zoo_models
from conftest import BACKENDS, assert_close

EXPORTERS = ["torchscript", "dynamo"]
# torch's TorchScript exporter itself refuses adaptive pooling whose output size does not divide the
# input ("output size that are not factor of input size"): that model is exported by dynamo only.
CASES = [(name, exporter) for name in sorted(zoo_models.ZOO) for exporter in EXPORTERS
         if (name, exporter) != ("vgg_head_uneven", "torchscript")]
# Ops another helper is adding this session (TEAM.md); strict, so each mark goes when its op lands.
MISSING: dict[tuple[str, str], str] = {}


def export(module: torch.nn.Module, x: torch.Tensor, exporter: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)
            return buffer.getvalue()
        return torch.onnx.export(module, (x,)).model_proto.SerializeToString()   # torch's default


@pytest.fixture(scope="session")
def zoo_exports():
    """(input, torch's output, ONNX bytes) per (model, exporter), each exported once."""
    cache: dict[tuple[str, str], tuple] = {}

    def get(name: str, exporter: str):
        if (name, exporter) not in cache:
            module, x = zoo_models.build(name)
            with torch.no_grad():
                expected = module(x).numpy()
            cache[name, exporter] = (x.numpy(), expected, export(module, x, exporter))
        return cache[name, exporter]
    return get


def case_params():
    for name, exporter in CASES:
        missing = MISSING.get((name, exporter))
        marks = [pytest.mark.xfail(raises=convgen.UnsupportedError, strict=True,
                                   reason=f"{missing} is not imported yet")] if missing else []
        yield pytest.param(name, exporter, marks=marks, id=f"{name}-{exporter}")


@pytest.mark.parametrize("name,exporter", list(case_params()))
def test_zoo_model_matches_torch_and_onnxruntime(name, exporter, zoo_exports):
    x, expected, data = zoo_exports(name, exporter)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    runtime = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert_close(runtime, expected, rtol=1e-3, atol=1e-4)    # the file is right: both oracles agree
    graph = convgen.from_onnx(data)
    for backend in BACKENDS:
        actual = convgen.compile(graph, backend=backend)(x)
        assert_close(actual, expected, rtol=1e-3, atol=1e-4)
        assert_close(actual, runtime, rtol=1e-3, atol=1e-4)

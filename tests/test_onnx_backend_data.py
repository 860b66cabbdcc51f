"""ONNX's own stored backend test models (onnx/backend/test/data/pytorch-converted and pytorch-operator,
mostly opset 6, raised to opset 13 with onnx's version converter) of the window-op families: every
model whose nodes include a convolution or a pool, on both backends, against the stored outputs."""
from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import convgen

WINDOW_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
              "GlobalLpPool"}
DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def window_models() -> list[str]:
    found = []
    for kind in ("pytorch-converted", "pytorch-operator"):
        for directory in sorted(glob.glob(os.path.join(DATA, kind, "*"))):
            ops = {n.op_type for n in onnx.load(os.path.join(directory, "model.onnx")).graph.node}
            if ops & WINDOW_OPS:
                found.append(os.path.join(kind, os.path.basename(directory)))
    return found


MODELS = window_models()


def tensors(directory: str, prefix: str) -> list[np.ndarray]:
    return [numpy_helper.to_array(onnx.load_tensor(p)) for p in sorted(glob.glob(os.path.join(directory, prefix)))]


def test_the_data_has_old_opset_window_models():
    assert len(MODELS) >= 40
    opsets = {onnx.load(os.path.join(DATA, m, "model.onnx")).opset_import[0].version for m in MODELS}
    assert min(opsets) < 7


@pytest.mark.parametrize("name", MODELS)
def test_stored_model_matches_its_outputs(name, backend):
    directory = os.path.join(DATA, name)
    compiled = convgen.compile(convgen.from_onnx(os.path.join(directory, "model.onnx")), backend=backend)
    data_sets = sorted(glob.glob(os.path.join(directory, "test_data_set_*")))
    assert data_sets
    for data_set in data_sets:
        outputs = compiled(*tensors(data_set, "input_*.pb"))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        expected = tensors(data_set, "output_*.pb")
        assert len(outputs) == len(expected)
        for actual, want in zip(outputs, expected):
            assert actual.shape == want.shape
            np.testing.assert_allclose(actual, want, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(want).max())))

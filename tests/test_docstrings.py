"""Every docstring example (`>>>`) in the convgen package runs and shows what it says.

The examples assume the names a user has after

    import numpy as np
    import convgen
    import convgen.functional as F
    from convgen import nn

(as numpy's docs assume `np`); anything else they import themselves.  One test per docstring, so
xdist spreads them; each compiles into its own fresh cache directory and seeds its own parameters.
"""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil

import numpy as np
import pytest

import convgen

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
OPTIONAL = {"onnx"}   # packages of an extra: their modules' examples are skipped where they are missing


def _namespace() -> dict:
    import convgen.functional
    return {"np": np, "convgen": convgen, "F": convgen.functional, "nn": convgen.nn}


def _module_names() -> list[str]:
    found = (info.name for info in pkgutil.walk_packages(convgen.__path__, "convgen."))
    return ["convgen"] + sorted(name for name in found if not name.endswith("__main__"))  # __main__ runs the CLI


def _doctests() -> list:
    finder, params = doctest.DocTestFinder(), []
    for name in _module_names():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name not in OPTIONAL:
                raise
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"needs {error.name}")))
            continue
        for test in finder.find(module, name, extraglobs=_namespace()):
            if test.examples:
                params.append(pytest.param(test, id=test.name))
    return params


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS)
def test_docstring_examples(test: doctest.DocTest, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path / "cache"))   # compiles as on a fresh machine
    monkeypatch.setattr(convgen.nn.params, "_rng", np.random.default_rng(0))  # restored after: examples may reseed
    report: list[str] = []
    result = doctest.DocTestRunner(optionflags=OPTIONS).run(test, out=report.append)
    assert result.failed == 0, "".join(report)


# The entry points a user meets first: each shows an example (inherited docstrings count, as in help()).
EXAMPLES = (["convgen", "convgen.compile", "convgen.load", "convgen.trace", "convgen.Graph", "convgen.Graph.summary",
             "convgen.from_onnx"]
            + [f"convgen.CompiledModel{method}" for method in ("", ".__call__", ".save", ".show_code", ".summary")]
            + [f"convgen.functional.{op}{n}d" for op in ("conv", "conv_transpose", "max_pool", "avg_pool", "lp_pool")
               for n in (1, 2, 3)]
            + [f"convgen.nn.{name}" for name in ("Module", "Sequential", "Input", "graph", "Linear", "cat", "matmul")]
            + [f"convgen.nn.{layer}{n}d" for layer in ("Conv", "ConvTranspose", "MaxPool", "AvgPool", "BatchNorm")
               for n in (1, 2, 3)])
# A docstring of their own (a line will do); the activation layers share the example of their base class.
DOCSTRINGS = ["convgen.nn._ActivationLayer", "convgen.nn.Tracer", "convgen.nn.check_norm"] + [
    f"convgen.nn.{name}" for name in ("ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "Sigmoid", "Tanh", "Hardswish", "add",
                                      "sub", "mul", "div", "clip", "flatten", "hardswish", "leaky_relu", "permute",
                                      "relu", "relu6", "reshape", "sigmoid", "tanh", "transpose")]


def _resolve(path: str):
    """The object at a dotted path below `convgen`, through its attributes (lazy ones included)."""
    obj = convgen
    for attr in path.split(".")[1:]:
        obj = getattr(obj, attr)
    return obj


def _needs_onnx(path: str) -> list:
    missing = "onnx" in path and importlib.util.find_spec("onnx") is None
    return [pytest.mark.skipif(missing, reason="needs onnx")]


@pytest.mark.parametrize("path", [pytest.param(p, marks=_needs_onnx(p)) for p in EXAMPLES])
def test_public_api_has_an_example(path: str) -> None:
    assert ">>>" in (inspect.getdoc(_resolve(path)) or ""), f"{path}: no docstring example"


@pytest.mark.parametrize("path", DOCSTRINGS)
def test_public_api_has_a_docstring(path: str) -> None:
    assert (_resolve(path).__doc__ or "").strip(), f"{path}: no docstring of its own"

"""Shared test fixtures.

BACKENDS lists every code generator; tests that compile take the `backend`
fixture so each new backend runs the whole suite.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# benchmarks/convnext.py (plain torch models shared with the benchmarks) imports as `convnext`; appended,
# so no benchmark script shadows a module the tests import
sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))

BACKENDS = ["c", "llvm"]

settings.register_profile(
    "convgen", deadline=None, max_examples=40, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", parent=settings.get_profile("convgen"), max_examples=40, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "convgen")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """float32 kernels against float64 references: relative to the size of the values."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def capped_settings(max_examples: int | None = None) -> settings:
    """The loaded profile, at most `max_examples`, and the `backend` fixture allowed under @given."""
    base = settings.default
    return settings(base, max_examples=min(base.max_examples, max_examples or base.max_examples),
                    suppress_health_check=list(base.suppress_health_check) + [HealthCheck.function_scoped_fixture])


def t64(a):
    """A float64 torch tensor (torch in double precision as the oracle)."""
    import torch
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def torch_pad(x, pairs):
    """Per-side zero padding, (begin, end) per spatial axis, in F.pad's last-axis-first order."""
    import torch.nn.functional as TF
    flat = []
    for begin, end in reversed(pairs):
        flat += [begin, end]
    return TF.pad(x, flat)


def reference_outputs(graph, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run `graph` op by op through the numpy references."""
    from convgen import ops
    values = dict(zip(graph.input_names, inputs))
    values.update(graph.constants)
    for node in graph.nodes:
        result = ops.run_reference(node.op, node.attrs, *(values[v] for v in node.inputs))
        results = result if isinstance(result, tuple) else (result,)
        values.update(zip(node.outputs, results))
    return tuple(values[v] for v in graph.outputs)


def pytest_terminal_summary(terminalreporter) -> None:
    """ONNX node-test conformance: passed cases per op type and backend (refused ones not counted)."""
    counts: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("passed", []):
        op = dict(report.user_properties).get("onnx_op")
        if op is None or report.when != "call":
            continue
        backend = next((b for b in BACKENDS if f"[{b}-" in report.nodeid or f"-{b}]" in report.nodeid), "?")
        counts.setdefault(op, {}).setdefault(backend, 0)
        counts[op][backend] += 1
    if counts:
        terminalreporter.section("ONNX node tests passed per op")
        for op in sorted(counts):
            terminalreporter.write_line(f"{op:20s} " + "  ".join(f"{b}: {counts[op].get(b, 0)}" for b in BACKENDS))


def one_layer_graph(op: str, attrs, arrays, constant):
    """A graph of one `op` layer reading `arrays`, each a graph input or (where `constant`) a graph
    constant.  Returns the graph and its run-time inputs, in order."""
    from convgen import nn
    tracer = nn.Input((1,)).tracer  # a fresh trace; its placeholder input is not part of the graph
    tracer.inputs.clear()
    values, runtime = [], []
    for i, (array, is_constant) in enumerate(zip(arrays, constant)):
        if is_constant:
            values.append(tracer.constant(f"c{i}", array))
        else:
            values.append(tracer.input(array.shape, f"x{i}"))
            runtime.append(array)
    return nn.graph(tracer.emit(op, op, attrs, values), name=op), runtime


def load_program(relative_path: str, module_name: str):
    """A program of the repository outside the package (e.g. benchmarks/bench.py), imported for its functions."""
    path = Path(__file__).resolve().parent.parent / relative_path
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module

"""Autotuning: every candidate schedule computes the same convolution (torch in float64 is the oracle),
tune=True builds with a measured winner, and the winner is cached on disk per layer signature."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convgen
from convgen import lower, nn, passes, tune
from convgen.target import host

from conftest import assert_close, t64

LAYERS = [
    # (DSL module, input shape): 2-D rows (direct and pixels candidates), a 1x1, a strided 1-D layer
    (nn.Sequential(nn.Conv2d(5, 20, 3, padding=1), nn.ReLU()), (1, 5, 6, 37)),
    (nn.Sequential(nn.Conv2d(6, 9, 1)), (2, 6, 5, 7)),
    (nn.Sequential(nn.Conv1d(4, 12, 3, stride=2, padding=1)), (1, 4, 41)),
]


def _torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    conv = module[0]
    state = conv.state_dict()
    fn = getattr(TF, f"conv{x.ndim - 2}d")
    y = fn(t64(x), t64(state["weight"]), t64(state["bias"]), stride=conv.stride, padding=conv.padding)
    return (torch.relu(y) if len(module) > 1 else y).numpy()


@pytest.mark.parametrize("module, shape", LAYERS, ids=[str(s) for _, s in LAYERS])
def test_every_candidate_schedule_matches_torch(backend, module, shape):
    graph = passes.optimize(module.to_graph(shape, name="cand"))
    (node,) = [n for n in graph.nodes if n.op == "conv"]
    options = tune.candidates(graph, node, host(), 1)
    assert len(options) > 2 and options[0] == lower.conv_geometry(node, lower.LowerContext(graph, host(), 1))[1]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = _torch(module, x)
    from convgen import backends
    from convgen.runtime import CompiledModel
    for candidate in options:
        lowered = lower.lower(graph, host(), 1, schedules={node.name: candidate})
        library, source = backends.get(backend)(lowered)
        model = CompiledModel(library, lowered.prefix, source=source, graph=graph, lowered=lowered)
        assert_close(model(x), expected)


def test_tune_measures_once_and_caches_the_winner(backend, tmp_path, monkeypatch):
    module, shape = LAYERS[0]
    graph = module.to_graph(shape, name="tuned")
    calls = []
    real_time = tune._time
    monkeypatch.setattr(tune, "_time", lambda *a: calls.append(a[1]) or real_time(*a))
    model = convgen.compile(graph, backend=backend, threads=1, cache_dir=tmp_path, tune=True)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    assert_close(model(x), _torch(module, x))
    table = json.loads((tmp_path / "tuning.json").read_text())
    (winner,) = table.values()
    assert len(calls) >= 3 and winner in [tune.dataclasses.asdict(c[next(iter(c))]) for c in calls]
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    assert kernel.template == f"conv_{winner['path']}" and kernel.params["THREADS"] == winner["threads"]
    measured = len(calls)
    convgen.compile(graph, backend=backend, threads=1, cache_dir=tmp_path, tune=True)
    assert len(calls) == measured  # the second compile reads the winner from the cache


def test_repeated_layers_are_measured_once(tmp_path, monkeypatch):
    """Same signature (the fused ReLU aside): one measurement serves both layers."""
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    graph = block.to_graph((1, 4, 9, 9), name="twice")
    counted = []
    monkeypatch.setattr(tune, "_measure_layer", lambda graph, node, *a: counted.append(node.name)
                        or tune.candidates(graph, node, host(), 1)[0])
    schedules = tune.tune_graph(passes.optimize(graph), host(), 1, "c", cache_dir=tmp_path)
    assert len(schedules) == 2 and len(counted) == 1

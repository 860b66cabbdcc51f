"""benchmarks/kernel_times.py: the instrumented forward times every kernel call and still computes the graph."""
from __future__ import annotations

import ctypes

import numpy as np

import convgen
from convgen import lower, nn, passes
from convgen.backends import c as c_backend
from convgen.runtime import CompiledModel
from convgen.target import host

from conftest import load_program


def test_instrumented_forward_times_each_kernel_and_matches_the_model(tmp_path):
    kernel_times = load_program("benchmarks/kernel_times.py", "kernel_times")
    graph = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Hardswish(), nn.Conv2d(8, 8, 3, groups=8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).to_graph((1, 3, 12, 12), name="net")
    optimized = passes.optimize(graph)
    lowered = lower.lower(optimized, host(), 1)
    source, layers = kernel_times.instrumented(c_backend.render_source(lowered))
    assert layers == [k.layer for k in lowered.kernels]
    library = tmp_path / f"{lowered.prefix}.so"
    c_backend.compile_source(source, lowered.weights, library)
    model = CompiledModel(library, lowered.prefix, source=source, graph=optimized, lowered=lowered)
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(model(x), convgen.compile(graph, threads=1)(x), rtol=1e-6, atol=1e-6)
    handle = ctypes.CDLL(str(library))
    times = (ctypes.c_double * len(layers)).in_dll(handle, "convgen_kernel_us")
    assert all(t >= 0 for t in times) and sum(times) > 0
    clock = kernel_times.clock_cost_us(handle)   # an empty region: the clock's own cost, taken off each kernel
    assert 0 < clock < sum(times) + 1e3

"""Memory: the liveness-planned arena, and what summary() reports."""
from __future__ import annotations

import pytest

import convgen
from convgen import lower, nn, passes
from convgen.memory import Interval, plan_arena
from convgen.summary import peak_activation_bytes
from convgen.target import host

from models import resnet18


@pytest.fixture(scope="module")
def resnet18_direct():
    """ResNet-18's optimized graph and its lowering with every convolution direct."""
    graph = passes.optimize(resnet18().to_graph((1, 3, 224, 224), name="resnet18"))
    return graph, lower.lower(graph, host(), 2, winograd=False)


def test_resnet18_fits_in_weights_plus_two_largest_activations(resnet18_direct):
    """The whole compiled ResNet-18 with direct convolutions (weights blob + workspace arena + caller's input
    and output) stays within 1.2 x (weights + the two largest activations)."""
    graph, model = resnet18_direct
    weights = sum(v.nbytes for v in graph.constants.values())
    largest = sorted([t.nbytes for _, t in graph.inputs] + [t.nbytes for n in graph.nodes for t in n.types])[-2:]
    io = sum(t.nbytes for _, t in graph.inputs) + sum(graph.type_of(v).nbytes for v in graph.outputs)
    total = len(model.weights) + model.workspace_bytes + io
    assert total <= 1.2 * (weights + sum(largest))
    assert model.workspace_bytes < 3 * peak_activation_bytes(graph)


def test_resnet18_winograd_weights_grow_by_at_most_the_transform_points(resnet18_direct):
    """A Winograd F(m x m, 3 x 3) layer stores (m + 2)^2 transformed taps for 9 (F(4): 4x): the blob grows by
    at most that, and the arena stays within 3 x the peak live activations."""
    graph, direct = resnet18_direct
    fast = lower.lower(graph, host(), 2)
    assert len(direct.weights) <= len(fast.weights) <= 36 / 9 * 1.05 * len(direct.weights)
    assert fast.workspace_bytes < 3 * peak_activation_bytes(graph)


def test_fused_residual_skip_stays_alive_and_apart_from_the_output(resnet18_direct):
    """Each of ResNet-18's 8 residual adds fused into a conv: the skip it reads is planned live until that conv
    (an arena buffer no value written before it overlaps) and shares no bytes with the conv's input or output."""
    graph, model = resnet18_direct
    fused = [k for k in model.kernels if k.op == "conv" and k.params["RESIDUAL"]]
    assert len(fused) == 8 and "add" not in {k.op for k in model.kernels}
    for i, k in enumerate(model.kernels):
        spans = {a.name: (a.buffer.offset, a.buffer.offset + _nbytes(graph, model, k, a.name))
                 for a in k.args if a.buffer.kind == "arena"}
        if k in fused:
            r = spans["r"]
            assert all(r[1] <= s[0] or s[1] <= r[0] for name, s in spans.items() if name != "r"), k.layer
            # no kernel between the skip's producer and this conv writes over it
            producer = max(j for j, other in enumerate(model.kernels[:i])
                           if any(a.is_output and a.buffer == k.arg("r").buffer for a in other.args))
            for other in model.kernels[producer + 1:i]:
                for a in other.args:
                    if a.is_output and a.buffer.kind == "arena":
                        end = a.buffer.offset + _nbytes(graph, model, other, a.name)
                        assert end <= r[0] or r[1] <= a.buffer.offset, (k.layer, other.layer)


def _nbytes(graph, model, kernel, arg: str) -> int:
    """Bytes of a conv kernel's x / r / y argument (the arena values this test looks at)."""
    node = graph.node(kernel.layer)
    value = {"x": node.inputs[0], "y": node.output, "r": node.inputs[-1]}.get(arg)
    return graph.type_of(value).nbytes if value else 0


def test_arena_reuses_memory_of_dead_values():
    offsets, size = plan_arena([Interval("a", 100, 0, 1), Interval("b", 100, 1, 2), Interval("c", 100, 2, 3)])
    assert offsets["a"] == offsets["c"] != offsets["b"] and size == 128 * 2


def test_compiled_summary_reports_arena_and_weights(backend):
    graph = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).to_graph((1, 1, 8, 8))
    for batch, per in (("graph", ""), (None, " per sample")):
        model = convgen.compile(graph, backend=backend, batch=batch)
        text = model.summary(print_fn=None)
        assert f"workspace arena {model.workspace_bytes:,} bytes{per}" in text
        assert f"weights {model.weights_bytes:,} bytes (embedded)" in text and model.weights_bytes > 0

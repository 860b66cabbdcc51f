"""Fuse an activation layer into the layer that produces its input."""
from __future__ import annotations

from dataclasses import replace

from ..ir import Graph, Node

FUSIBLE = ("conv", "conv_transpose", "locally_connected", "linear", "gemm", "matmul", "batch_norm", "add", "sub",
           "mul", "div", "sum", "prelu", "min", "max", "pow")


def _fusible(graph: Graph, producer: Node | None) -> bool:
    return (producer is not None and producer.op in FUSIBLE and producer.attrs.activation is None
            and len(producer.outputs) == 1 and len(graph.consumers(producer.output)) == 1
            and producer.output not in graph.outputs)


def fuse_activations(graph: Graph) -> Graph:
    """producer -> activation becomes the producer with an activation epilogue."""
    fused: dict[str, Node] = {}
    dropped: set[str] = set()
    for act in graph.nodes:
        if act.op != "activation":
            continue
        producer = graph.producer(act.inputs[0])
        if producer is not None and producer.name in fused:
            continue  # already took an activation
        if not _fusible(graph, producer):
            continue
        fused[producer.name] = replace(producer, attrs=replace(producer.attrs, activation=act.attrs),
                                       outputs=act.outputs)
        dropped.add(act.name)
    if not fused:
        return graph
    return graph.with_nodes(fused.get(n.name, n) for n in graph.nodes if n.name not in dropped)

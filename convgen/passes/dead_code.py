"""Drop nodes whose outputs nothing reads."""
from __future__ import annotations

from ..ir import Graph


def eliminate_dead_nodes(graph: Graph) -> Graph:
    live = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            keep.append(node)
            live.update(node.inputs)
    if len(keep) == len(graph.nodes):
        return graph
    nodes = list(reversed(keep))
    return graph.with_read_constants(nodes)

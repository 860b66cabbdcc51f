"""The first pass: every node's declared output types are what its op infers from its inputs.

Graphs from the DSL pass by construction; hand-built graphs and imported model files may not
(an unknown op, the wrong number of inputs, attributes of the wrong kind, a declared shape that
disagrees with the op's shape rule).  Lowering trusts the types, so this is where such a graph
stops, with the layer named.
"""
from __future__ import annotations

from .. import ops
from ..errors import ConvgenError, ShapeError
from ..ir import Graph, Node


def _inferred(graph: Graph, node: Node) -> tuple:
    layer = f"layer {node.name!r} ({node.op})"
    op = ops.get(node.op)
    types = [graph.type_of(v) for v in node.inputs]
    try:
        return tuple(op.infer(layer, node.attrs, types))
    except ConvgenError:
        raise
    except (AttributeError, TypeError, IndexError, KeyError, ValueError) as e:
        # attributes of another op's class, or inputs the rule cannot read: say so rather than crash
        raise ShapeError(f"{layer}: attributes {node.attrs!r} or inputs {[str(t) for t in types]} do not fit "
                         f"the op ({type(e).__name__}: {e})") from e


def verify_types(graph: Graph) -> Graph:
    for node in graph.nodes:
        inferred = _inferred(graph, node)
        if inferred != tuple(node.types) or len(node.outputs) != len(inferred):
            raise ShapeError(f"layer {node.name!r} ({node.op}): declares outputs "
                             f"{[str(t) for t in node.types]} but its inputs give {[str(t) for t in inferred]}")
    return graph

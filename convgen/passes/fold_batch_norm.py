"""Fold an inference batch-norm into the convolution that feeds it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import Graph, Node
from ..ops.elementwise import batch_norm_scale_shift


def _foldable(graph: Graph, conv: Node | None, bn: Node) -> bool:
    return (conv is not None and conv.op == "conv" and conv.attrs.activation is None
            and len(graph.consumers(conv.output)) == 1 and conv.output not in graph.outputs
            and all(v in graph.constants for v in conv.inputs[1:] + bn.inputs[1:]))


def fold_batch_norm(graph: Graph) -> Graph:
    """conv -> batch_norm becomes one conv with scaled weights and a shifted bias."""
    constants = dict(graph.constants)
    replaced: dict[str, Node] = {}
    dropped: set[str] = set()
    for bn in graph.nodes:
        if bn.op != "batch_norm":
            continue
        conv = graph.producer(bn.inputs[0])
        if not _foldable(graph, conv, bn):
            continue
        scale, shift = batch_norm_scale_shift(bn.attrs.eps, *(graph.constants[v] for v in bn.inputs[1:]))
        weight = graph.constants[conv.inputs[1]].astype(np.float64)
        bias = graph.constants[conv.inputs[2]].astype(np.float64) if len(conv.inputs) == 3 else 0.0
        w_name, b_name = f"{conv.name}.weight+{bn.name}", f"{conv.name}.bias+{bn.name}"
        constants[w_name] = (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(np.float32)
        constants[b_name] = (bias * scale + shift).astype(np.float32)
        replaced[conv.name] = replace(conv, inputs=(conv.inputs[0], w_name, b_name),
                                      outputs=bn.outputs, attrs=replace(conv.attrs, activation=bn.attrs.activation))
        dropped.add(bn.name)
    if not replaced:
        return graph
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    used = {v for n in nodes for v in n.inputs}
    return graph.with_nodes(nodes, constants={k: v for k, v in constants.items() if k in used})

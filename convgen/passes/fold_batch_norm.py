"""Fold an inference batch-norm into the convolution (or transposed convolution) that feeds it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import Graph, Node
from ..ops.elementwise import batch_norm_scale_shift


def _foldable(graph: Graph, conv: Node | None, bn: Node) -> bool:
    return (conv is not None and conv.op in ("conv", "conv_transpose") and conv.attrs.activation is None
            and len(graph.consumers(conv.output)) == 1 and conv.output not in graph.outputs
            and all(v in graph.constants for v in conv.inputs[1:] + bn.inputs[1:]))


def _scaled_weight(conv: Node, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each output channel's weights times its scale: axis 0 of a conv's (OC, C/g, *k); axis 1, within
    each group, of a transposed conv's (C, OC/g, *k)."""
    spatial = (1,) * (weight.ndim - 2)
    if conv.op == "conv":
        return weight * scale.reshape((-1, 1) + spatial)
    groups = conv.attrs.groups
    channels, per_group = weight.shape[:2]
    grouped = weight.reshape((groups, channels // groups, per_group) + weight.shape[2:])
    return (grouped * scale.reshape((groups, 1, per_group) + spatial)).reshape(weight.shape)


def fold_batch_norm(graph: Graph) -> Graph:
    """conv (or conv_transpose) -> batch_norm becomes one layer with scaled weights and a shifted bias."""
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
        constants[w_name] = _scaled_weight(conv, weight, scale).astype(np.float32)
        constants[b_name] = (bias * scale + shift).astype(np.float32)
        replaced[conv.name] = replace(conv, inputs=(conv.inputs[0], w_name, b_name),
                                      outputs=bn.outputs, attrs=replace(conv.attrs, activation=bn.attrs.activation))
        dropped.add(bn.name)
    if not replaced:
        return graph
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    return graph.with_read_constants(nodes, constants)

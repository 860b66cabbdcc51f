"""torch's export of nn.GroupNorm back to one group_norm.

Both of torch 2.13's exporters write GroupNorm(G, C) as

    reshape (N, G, -1) -> instance_norm(scale_G, bias_G) -> reshape (N, C, ...) [-> mul(w) [-> add(b)]]

with w and b per channel (C, 1, ...).  That is group_norm(G) with scale repeat(scale_G) * w and bias
repeat(bias_G) * w + b: one kernel reading and writing the tensor once instead of three.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import ops
from ..ir import Graph, Node
from .channels_last_norm import only_consumer
from .fold_scale_shift import per_channel


def _affine_step(graph: Graph, node: Node | None, op: str, shape) -> tuple[Node, np.ndarray] | None:
    """`node` when it is `op` (mul or add) of the chain value and a per-channel constant, with the constant."""
    if node is None or node.op != op or node.attrs.activation is not None or len(node.inputs) != 2:
        return None
    constant = [v for v in node.inputs if v in graph.constants]
    if len(constant) != 1:
        return None
    values = per_channel(graph.constants[constant[0]], shape)
    return None if values is None else (node, values)


def _fused(graph: Graph, first: Node) -> tuple[Node, list[Node], dict, Node | None] | None:
    """The group_norm replacing the pattern that starts at reshape `first`, the nodes it replaces, its
    constants, and the reshape to (N, C, ...) it reads (None: it reads the input of `first`)."""
    norm = only_consumer(graph, first.output)
    if (first.type.ndim != 3 or norm is None or norm.op != "instance_norm" or len(norm.inputs) != 3
            or not all(v in graph.constants for v in norm.inputs[1:])):
        return None
    back = only_consumer(graph, norm.output)
    if back is None or back.op != "reshape" or back.type.ndim < 2 or back.type.shape[0] != first.type.shape[0]:
        return None
    x, groups = back.type, first.type.shape[1]
    channels = x.shape[1]
    if groups < 1 or channels % groups:
        return None
    scale = np.repeat(graph.constants[norm.inputs[1]].astype(np.float64), channels // groups)
    bias = np.repeat(graph.constants[norm.inputs[2]].astype(np.float64), channels // groups)
    replaced, last = [first, norm, back], back
    for op in ("mul", "add"):
        step = _affine_step(graph, only_consumer(graph, last.output), op, x.shape)
        if step is None:
            continue
        last, values = step
        replaced.append(last)
        scale, bias = (scale * values, bias * values) if op == "mul" else (scale, bias + values)
    names = (f"{norm.name}.group_scale", f"{norm.name}.group_bias")
    constants = dict(zip(names, (scale.astype(np.float32), bias.astype(np.float32))))
    # the input itself, or (exported after a flatten) a view of it in the (N, C, ...) shape
    view = None if graph.type_of(first.inputs[0]).shape == x.shape else replace(
        first, attrs=ops.ReshapeAttrs(x.shape), types=(x,))
    source = first.inputs[0] if view is None else view.output
    fused = Node(norm.name, "group_norm", ops.GroupNormAttrs(groups, norm.attrs.eps), (source, *names),
                 last.outputs, (x,) if last is back else last.types)
    return fused, replaced, constants, view


def fuse_group_norm(graph: Graph) -> Graph:
    for node in graph.nodes:
        found = _fused(graph, node) if node.op == "reshape" else None
        if found is None:
            continue
        fused, replaced, constants, view = found
        kept = {replaced[-1].name: fused, **({view.name: view} if view else {})}
        gone = {n.name for n in replaced} - set(kept)
        nodes = [kept.get(n.name, n) for n in graph.nodes if n.name not in gone]
        return fuse_group_norm(graph.with_read_constants(nodes, {**graph.constants, **constants}))
    return graph

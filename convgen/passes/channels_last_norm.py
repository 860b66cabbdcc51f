"""Channels-last blocks back in NCHW: no transposes around a LayerNorm over the channels.

ConvNeXt (and torch code like it) permutes NCHW to channels-last, normalizes over the last axis, and
permutes back, often with pointwise layers between (torch's export of its block):

    transpose(0,2,3,1) -> layer_norm(last axis) [-> matmul/linear(W) -> add(b) -> gelu -> matmul/linear
    -> add -> mul(layer scale)] -> transpose(0,3,1,2)

Every layer in the chain works along the last axis or elementwise, so the chain computes the same in
NCHW: the LayerNorm over axis 1 (ops.norm's end_axis; a kernel whose statistics run down columns
of the plane), a matmul or linear over the last axis as a 1x1 convolution, constants along the last
axis reshaped to (C, 1, 1).  Both copies go; fold_scale_shift then folds the biases and the layer scale
into the 1x1 convolutions and fuse_activations the GELU.  Any other chain is left as it is.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import ops, shapes
from ..ir import Graph, Node, TensorType

POINTWISE = ("add", "sub", "mul", "div")


def _to_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def _to_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


def _nchw(t: TensorType) -> TensorType:
    return TensorType(tuple(t.shape[a] for a in _to_first(t.ndim)), t.dtype)


def only_consumer(graph: Graph, value: str) -> Node | None:
    """The one layer reading `value`, which is no graph output; else None."""
    users = graph.consumers(value)
    return users[0] if len(users) == 1 and value not in graph.outputs else None


def _last_axis_constant(array: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """A constant that varies at most along the last axis, as its NCHW form (C, 1, ...); else None."""
    if array.ndim == 0:
        return array
    if array.ndim > rank or any(d != 1 for d in array.shape[:-1]) or array.shape[-1] not in (1, channels):
        return None
    return array.reshape((-1,) + (1,) * (rank - 2))


def _rewrite(graph: Graph, node: Node, constants: dict) -> Node | None:
    """`node` of a channels-last chain, in NCHW (None: it has no NCHW form here)."""
    rank = node.type.ndim
    types = (_nchw(node.type),)
    if node.op == "activation":
        return replace(node, types=types)
    if node.op == "layer_norm":
        begin, end = shapes.normalized_axes(node.name, rank, node.attrs.axis, node.attrs.end_axis)
        if (begin, end) != (rank - 1, rank):
            return None
        return replace(node, attrs=replace(node.attrs, axis=1, end_axis=2), types=types)
    if node.op in ("matmul", "linear") and node.attrs.activation is None:
        w = graph.constants.get(node.inputs[1])
        if w is None or w.ndim != 2:
            return None
        weight = w.T if node.op == "matmul" else w   # (out, in): matmul's B is (in, out)
        name = f"{node.name}.weight_1x1"
        constants[name] = np.ascontiguousarray(weight.reshape(weight.shape + (1,) * (rank - 2)))
        spatial = rank - 2
        attrs = ops.ConvAttrs((1,) * spatial, (1,) * spatial, ((0, 0),) * spatial, (1,) * spatial)
        return replace(node, op="conv", attrs=attrs, inputs=(node.inputs[0], name, *node.inputs[2:]), types=types)
    if node.op in POINTWISE and len(node.inputs) == 2:
        side = [i for i, v in enumerate(node.inputs) if v in graph.constants]
        if len(side) != 1:
            return None
        reshaped = _last_axis_constant(graph.constants[node.inputs[side[0]]], rank, node.type.shape[-1])
        if reshaped is None:
            return None
        name = f"{node.name}.nchw"
        constants[name] = reshaped
        inputs = list(node.inputs)
        inputs[side[0]] = name
        return replace(node, inputs=tuple(inputs), types=types)
    return None


def _chain(graph: Graph, first: Node) -> tuple[list[Node], Node] | None:
    """The layers from the transpose `first` to the transpose back, or None."""
    rank = first.type.ndim
    chain, node = [], only_consumer(graph, first.output)
    if node is None or node.op != "layer_norm":
        return None
    while node is not None:
        if node.op == "transpose" and node.attrs.perm == _to_first(rank):
            return (chain, node) if chain else None
        if len(node.outputs) != 1 or node.type.ndim != rank:
            return None
        chain.append(node)
        node = only_consumer(graph, node.output)
    return None


def channels_last_norm(graph: Graph) -> Graph:
    for first in graph.nodes:
        if first.op != "transpose" or first.type.ndim < 3 or first.attrs.perm != _to_last(first.type.ndim):
            continue
        found = _chain(graph, first)
        if found is None:
            continue
        chain, last = found
        constants: dict = {}
        rewritten = [_rewrite(graph, n, constants) for n in chain]
        if any(n is None for n in rewritten):
            continue
        # the chain reads the transpose's input and writes the value the transpose back wrote
        rewritten[0] = replace(rewritten[0], inputs=tuple(first.inputs[0] if v == first.output else v
                                                          for v in rewritten[0].inputs))
        rewritten[-1] = replace(rewritten[-1], outputs=last.outputs)
        by_name = {n.name: n for n in rewritten}
        nodes = [by_name.get(n.name, n) for n in graph.nodes if n.name not in (first.name, last.name)]
        return channels_last_norm(graph.with_read_constants(nodes, {**graph.constants, **constants}))
    return graph

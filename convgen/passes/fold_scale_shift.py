"""Fold per-channel constant arithmetic into the convolution that feeds it.

conv -> (x * s, x / s, x + t, x - t, t - x) with s, t constants that vary at most along the
channels (a scalar, or (C, 1, 1) for 2-D) becomes one conv with scaled weights and a shifted
bias, as ONNX exports of `conv(x) * scale + shift` and of folded normalizations produce.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import Graph, Node

FOLDABLE = ("add", "sub", "mul", "div")


def per_channel(constant: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant as one value per output channel, or None when it varies along another axis
    (or would change the output's shape by broadcasting)."""
    rank = len(out_shape)
    if constant.ndim > rank:
        return None
    shape = (1,) * (rank - constant.ndim) + constant.shape
    if any(d != 1 for a, d in enumerate(shape) if a != 1) or shape[1] not in (1, out_shape[1]):
        return None
    return np.broadcast_to(constant.reshape(-1).astype(np.float64), (out_shape[1],))


def _affine(node: Node, conv_first: bool, constant: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """y = scale * conv + shift for this node, or None when the op does not fold that way round."""
    zeros, ones = np.zeros_like(constant), np.ones_like(constant)
    if node.op == "add":
        return ones, constant
    if node.op == "mul":
        return constant, zeros
    if node.op == "sub":
        return (ones, -constant) if conv_first else (-ones, constant)
    if node.op == "div" and conv_first and np.all(constant != 0):
        return 1.0 / constant, zeros
    return None


def _fold_one(graph: Graph, node: Node) -> tuple[Node, dict[str, np.ndarray], str] | None:
    """The conv that replaces `node` and its conv producer, its new constants, and the conv's name."""
    if node.op not in FOLDABLE or node.attrs.activation is not None:
        return None
    producers = [graph.producer(v) for v in node.inputs]
    sides = [i for i, p in enumerate(producers) if p is not None and p.op == "conv"]
    if len(sides) != 1 or node.inputs[1 - sides[0]] not in graph.constants:
        return None
    conv = producers[sides[0]]
    if (conv.attrs.activation is not None or len(graph.consumers(conv.output)) != 1 or conv.output in graph.outputs
            or not all(v in graph.constants for v in conv.inputs[1:])):
        return None
    constant = per_channel(graph.constants[node.inputs[1 - sides[0]]], conv.type.shape)
    # infinities and NaN would meet the weights' zeros: inf * 0 is NaN where x * inf is not
    affine = None if constant is None or not np.all(np.isfinite(constant)) else _affine(node, sides[0] == 0, constant)
    if affine is None:
        return None
    scale, shift = affine
    weight = graph.constants[conv.inputs[1]].astype(np.float64)
    bias = graph.constants[conv.inputs[2]].astype(np.float64) if len(conv.inputs) == 3 else 0.0
    w_name, b_name = f"{conv.name}.weight*{node.name}", f"{conv.name}.bias*{node.name}"
    constants = {w_name: (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(np.float32),
                 b_name: (bias * scale + shift).astype(np.float32)}
    return replace(conv, inputs=(conv.inputs[0], w_name, b_name), outputs=node.outputs), constants, conv.name


def fold_scale_shift(graph: Graph) -> Graph:
    """Fold until nothing folds: conv * s + t folds in two steps."""
    while True:
        for node in graph.nodes:
            folded = _fold_one(graph, node)
            if folded is not None:
                break
        else:
            return graph
        conv, new_constants, conv_name = folded
        nodes = [conv if n.name == node.name else n for n in graph.nodes if n.name != conv_name]
        graph = graph.with_read_constants(nodes, {**graph.constants, **new_constants})

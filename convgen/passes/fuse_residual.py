"""Fuse a residual add into the convolution that produces one of its operands.

conv -> add(conv's output, skip) becomes one conv whose epilogue adds `skip` before its activation
(ConvAttrs.residual; a following activation then fuses as usual): ResNet's `relu(bn2(conv2(x)) + identity)`
runs as one kernel instead of a conv, a pass over memory for the add and one for the relu.  The skip
tensor must have the conv output's shape (a broadcast add stays an add), the conv no activation of its
own (relu(conv) + skip is not relu(conv + skip)) and no other reader of its output.  The skip is never
a constant: fold_batch_norm and fold_scale_shift, which fold only into convs whose every input but x is
one, then leave a residual conv alone (bn(conv + skip) would scale the skip too).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import Graph, Node

ADDS = ("add", "sum")


def _fusible_conv(graph: Graph, producer: Node | None, add: Node) -> bool:
    return (producer is not None and producer.op == "conv" and producer.attrs.activation is None
            and not producer.attrs.residual and producer.type == add.type
            and producer.output not in graph.outputs and graph.consumers(producer.output) == [add])


def _choose(graph: Graph, add: Node, position: dict[str, int]) -> tuple[Node, str] | None:
    """The conv operand to fuse into and the other operand (the skip), or None.  Of two fusible convs
    (a downsampling block adds two conv outputs), the later one: its skip is already computed where it
    stands, so the fused layer keeps its place."""
    if add.op not in ADDS or len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
        return None
    candidates = []
    for side in (0, 1):
        conv, skip = graph.producer(add.inputs[side]), add.inputs[1 - side]
        if skip in graph.constants or graph.type_of(skip) != add.type or not _fusible_conv(graph, conv, add):
            continue
        candidates.append((position[conv.name], conv, skip))
    return max(candidates, key=lambda c: c[0])[1:] if candidates else None


def _fused(graph: Graph, conv: Node, add: Node, skip: str, constants: dict[str, np.ndarray]) -> Node:
    inputs = conv.inputs
    if len(inputs) == 2:  # the residual input is the fourth: give the conv a bias of zeros
        bias = f"{conv.name}.bias"
        while bias in constants or any(bias in n.outputs for n in graph.nodes) or bias in graph.input_names:
            bias += "_"
        constants[bias] = np.zeros(conv.type.shape[1], np.float32)
        inputs += (bias,)
    attrs = replace(conv.attrs, residual=True, activation=add.attrs.activation)
    return replace(conv, attrs=attrs, inputs=inputs + (skip,), outputs=add.outputs)


def fuse_residual_adds(graph: Graph) -> Graph:
    """Every conv -> add(skip) that fuses becomes one conv layer, placed where the add was (its skip is
    computed by then, and nothing between read the conv's output, the add being its only reader)."""
    position = {n.name: i for i, n in enumerate(graph.nodes)}
    constants = dict(graph.constants)
    fused: dict[str, Node] = {}   # add's name -> the fused conv
    dropped: set[str] = set()     # the convs that moved into them
    for add in graph.nodes:
        choice = _choose(graph, add, position)
        if choice is None:
            continue
        conv, skip = choice
        fused[add.name] = _fused(graph, conv, add, skip, constants)
        dropped.add(conv.name)
    if not fused:
        return graph
    return graph.with_read_constants((fused.get(n.name, n) for n in graph.nodes if n.name not in dropped), constants)

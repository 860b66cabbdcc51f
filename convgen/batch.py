"""The batch axis: give a graph another batch size, or check that it can take any batch.

A graph is traced at one batch size; `rebatch` re-infers every shape for another (through each
op's own shape rule, so no shape arithmetic lives here).  `compile(graph, batch=None)` builds
kernels whose batch loop bound is a run-time argument; that is only right when every value's
leading axis is the batch, which `check_batch_axis` verifies by inferring the graph at two
batch sizes.
"""
from __future__ import annotations

from dataclasses import replace

from . import ops
from .errors import UnsupportedError
from .ir import Graph, TensorType


def rebatch(graph: Graph, batch: int) -> Graph:
    """The same graph with every input's leading axis set to `batch`, and shapes inferred again."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive int (or None for a batch given at call time), got {batch!r}")
    for name, t in graph.inputs:
        if t.ndim == 0:
            raise UnsupportedError(f"graph {graph.name!r}: input {name!r} is a scalar; it has no batch axis")
    inputs = tuple((name, TensorType((batch, *t.shape[1:]), t.dtype)) for name, t in graph.inputs)
    types = dict(inputs)
    types.update({k: TensorType(v.shape) for k, v in graph.constants.items()})
    nodes = []
    for node in graph.nodes:
        out_types = ops.get(node.op).infer(f"layer {node.name!r} ({node.op})", node.attrs,
                                           [types[v] for v in node.inputs])
        types.update(zip(node.outputs, out_types))
        nodes.append(replace(node, types=tuple(out_types)))
    return replace(graph, inputs=inputs, nodes=tuple(nodes), constants=dict(graph.constants))


def check_batch_axis(graph: Graph) -> None:
    """Raise UnsupportedError unless every input, intermediate and output has the batch as its leading
    axis (its shape at batch 2 is its shape at batch 1 with the first axis doubled)."""
    one, two = rebatch(graph, 1), rebatch(graph, 2)
    values = [name for name, _ in one.inputs] + [v for n in one.nodes for v in n.outputs]
    for value in values:
        a, b = one.type_of(value).shape, two.type_of(value).shape
        if not a or a[0] != 1 or b != (2, *a[1:]):
            layer = one.producer(value)
            where = f"layer {layer.name!r} ({layer.op})" if layer else f"input {value!r}"
            raise UnsupportedError(f"batch=None: {where} makes a value of shape {list(a)} at batch 1 and "
                                   f"{list(b)} at batch 2; every value must keep the batch as its first axis "
                                   "(compile with a fixed batch instead)")
    for value in one.outputs:
        if value in one.constants:
            raise UnsupportedError(f"batch=None: output {value!r} is a constant, which has no batch axis")

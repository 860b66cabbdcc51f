"""Lowering of slice and expand (convgen/ops/movement.py) to the strided copy kernel."""
from __future__ import annotations

from . import shapes
from .errors import UnsupportedError
from .ir import Node
from .lower import KernelSpec, LowerContext, _strided_loops, lowering


def _copy(node: Node, ctx: LowerContext, in_strides: tuple[int, ...], offset: int, batch_axis_read: bool) -> KernelSpec:
    # with a run-time batch, sample n of the output must read sample n of the input, at its own stride
    if ctx.dynamic_batch and not batch_axis_read:
        raise UnsupportedError(f"layer {node.name!r} ({node.op}) moves data across the batch axis; "
                               "compile it with a fixed batch")
    p = _strided_loops(node.type.shape, [in_strides], [in_strides[0]] if ctx.dynamic_batch else None, [offset])
    p.update(OP="copy", activation=None)
    return KernelSpec("strided", p, [("x0", node.inputs[0])], [("y", node.output)])


@lowering("slice")
def lower_slice(node: Node, ctx: LowerContext) -> KernelSpec:
    a, x = node.attrs, ctx.type(node.inputs[0])
    contiguous = shapes.contiguous_strides(x.shape)
    strides = tuple(c * s for c, s in zip(contiguous, a.steps))
    offset = sum(c * f for c, f in zip(contiguous, a.first))
    whole_batch = a.first[0] == 0 and a.steps[0] == 1 and a.counts[0] == x.shape[0]
    return _copy(node, ctx, strides, offset, whole_batch)


@lowering("expand")
def lower_expand(node: Node, ctx: LowerContext) -> KernelSpec:
    x = ctx.type(node.inputs[0])
    strides = shapes.broadcast_strides(x.shape, node.type.shape)
    same_batch = x.ndim == node.type.ndim and x.shape[0] == node.type.shape[0]
    return _copy(node, ctx, strides, 0, same_batch)

"""Lowering of the element-type conversions (convgen/ops/cast.py) to templates/convert.c.j2's kernels."""
from __future__ import annotations

import math

from . import dtypes
from .ir import Node
from .lower import KernelSpec, LowerContext, _batch_and_inner, _batch_outside, lowering
from .ops.cast import channel_axis


def _limits(dtype: str) -> dict:
    info = dtypes.get(dtype)
    return dict(LOW=int(info.low), HIGH=int(info.high)) if info.kind in ("int", "uint") else dict(LOW=0, HIGH=0)


@lowering("cast")
def lower_cast(node: Node, ctx: LowerContext) -> KernelSpec:
    source = ctx.type(node.inputs[0]).dtype
    p = dict(**_batch_and_inner(node.type), FROM=source, TO=node.type.dtype, **_limits(node.type.dtype))
    return KernelSpec("cast", p, [("x", node.inputs[0])], [("y", node.output)])


def _channel_loops(node: Node, ctx: LowerContext) -> dict:
    """N x OUTER x C x INNER: scale and zero point index c (C = 1 for one scale per tensor)."""
    x, scale = ctx.type(node.inputs[0]), ctx.type(node.inputs[1])
    axis = channel_axis(node.name, node.attrs.axis, x, scale)
    if axis is None:
        batch = x.shape[0]
        return dict(N=batch, OUTER=1, C=1, INNER=x.size // batch)
    batch = _batch_outside(node, ctx, axis)
    return dict(N=batch, OUTER=math.prod(x.shape[:axis]) // batch, C=x.shape[axis],
                INNER=math.prod(x.shape[axis + 1:]))


@lowering("quantize")
def lower_quantize(node: Node, ctx: LowerContext) -> KernelSpec:
    p = dict(**_channel_loops(node, ctx), TO=node.type.dtype, **_limits(node.type.dtype))
    names = ("x", "scale", "zero_point")
    return KernelSpec("quantize", p, list(zip(names, node.inputs)), [("y", node.output)])


@lowering("dequantize")
def lower_dequantize(node: Node, ctx: LowerContext) -> KernelSpec:
    p = dict(**_channel_loops(node, ctx), FROM=ctx.type(node.inputs[0]).dtype)
    names = ("x", "scale", "zero_point")
    return KernelSpec("dequantize", p, list(zip(names, node.inputs)), [("y", node.output)])

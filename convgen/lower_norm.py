"""Lowering of layer_norm, instance_norm and group_norm (convgen/ops/norm.py) to one kernel family,
"normalize" (templates/norm.c.j2, backends/llvm/norm.py).

Every one is the tensor seen as [N][A][R][B]: statistics over the R elements (B apart) of each
(n, a, b), then y = (x - mean) * rstd * scale + bias, the affine entry of element (a, r) being
((a % G) * R + r) // SPATIAL:

    layer_norm      A = the axes before, R = the normalized axes, B = the axes after, G = SPATIAL = 1
    instance_norm   A = C, R = spatial, B = 1, G = C, SPATIAL = spatial
    group_norm      A = groups, R = C / groups * spatial, B = 1, G = groups, SPATIAL = spatial
"""
from __future__ import annotations

import math

from . import ops, schedule, shapes
from .ir import Node
from .lower import KernelSpec, LowerContext, _batch_outside, lowering

UNROLL = 4
"""Vectors of partial sums per row (independent add chains), and vectors per column tile when B > 1."""


def _spec(node: Node, ctx: LowerContext, batch: int, a: int, r: int, b: int, g: int, spatial: int,
          eps: float) -> KernelSpec:
    lanes = ctx.target.max_vector_width
    tiles = b // (UNROLL * lanes)
    flops = ops.get(node.op).flops(node.attrs, [ctx.type(v) for v in node.inputs], node.types)
    # threads share the rows (B = 1) or the whole column tiles (B > 1)
    p = dict(N=batch, A=a, R=r, B=b, G=g, SPATIAL=spatial, EPS=float(eps), VW=lanes, U=UNROLL,
             TILES=tiles, HAS_SCALE=len(node.inputs) > 1, HAS_BIAS=len(node.inputs) > 2,
             THREADS=schedule.threads_for(flops, ctx.threads) if b == 1 or tiles else 1)
    inputs = [("x", node.inputs[0]), ("scale", node.inputs[1] if len(node.inputs) > 1 else None),
              ("bias", node.inputs[2] if len(node.inputs) > 2 else None)]
    return KernelSpec("normalize", p, inputs, [("y", node.output)])


@lowering("layer_norm")
def lower_layer_norm(node: Node, ctx: LowerContext) -> KernelSpec:
    shape = node.type.shape
    begin, end = shapes.normalized_axes(node.name, len(shape), node.attrs.axis, node.attrs.end_axis)
    outer, reduced, inner = shapes.normalization_view(shape, begin, end)
    batch = _batch_outside(node, ctx, begin)
    return _spec(node, ctx, batch, outer // batch, reduced, inner, 1, 1, node.attrs.eps)


@lowering("instance_norm")
def lower_instance_norm(node: Node, ctx: LowerContext) -> KernelSpec:
    shape = node.type.shape
    spatial = math.prod(shape[2:])
    return _spec(node, ctx, shape[0], shape[1], spatial, 1, shape[1], spatial, node.attrs.eps)


@lowering("group_norm")
def lower_group_norm(node: Node, ctx: LowerContext) -> KernelSpec:
    shape, groups = node.type.shape, node.attrs.groups
    spatial = math.prod(shape[2:])
    return _spec(node, ctx, shape[0], groups, shape[1] // groups * spatial, 1, groups, spatial, node.attrs.eps)

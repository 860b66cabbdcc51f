"""Lowering of resample (convgen/ops/resample.py) to templates/resample.c.j2's kernel."""
from __future__ import annotations

import math

from . import ops, schedule
from .ir import Node
from .lower import KernelSpec, LowerContext, _batch_outside, lowering


@lowering("resample")
def lower_resample(node: Node, ctx: LowerContext) -> KernelSpec:
    a, x = node.attrs, ctx.type(node.inputs[0])
    batch = _batch_outside(node, ctx, a.axis)
    first = [0]   # SRC and W padded to one entry when every output is FILL (no empty C arrays)
    for sources in a.sources:
        first.append(first[-1] + len(sources))
    flops = ops.get("resample").flops(a, [x], node.types)
    p = dict(N=batch, OUTER=math.prod(x.shape[:a.axis]) // batch, IN=x.shape[a.axis], OUT=len(a.sources),
             INNER=math.prod(x.shape[a.axis + 1:]), KIND=a.kind, FIRST=first,
             SRC=[i for s in a.sources for i in s] or [0], W=[w for ws in a.weights for w in ws] or [0.0],
             FILLED=any(not s for s in a.sources), FILL=a.fill,
             THREADS=schedule.threads_for(max(flops, node.type.size), ctx.threads))
    return KernelSpec("resample", p, [("x", node.inputs[0])], [("y", node.output)])

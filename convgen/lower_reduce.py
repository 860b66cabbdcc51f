"""Lowering of reduce (convgen/ops/reduce.py) and of the global pools to the reduction kernel
(templates/reduce.c.j2)."""
from __future__ import annotations

import math

from . import ops, schedule, shapes
from .errors import UnsupportedError
from .ir import Node
from .lower import KernelSpec, LowerContext, lowering
from .ops.reduce import ReduceAttrs


@lowering("reduce")
def lower_reduce(node: Node, ctx: LowerContext) -> KernelSpec:
    return reduce_spec(node, ctx, node.attrs)


@lowering("global_pool")
def lower_global_pool(node: Node, ctx: LowerContext) -> KernelSpec:
    """A global pool is the mean or max over every spatial axis: the same kernel."""
    rank = ctx.type(node.inputs[0]).ndim
    return reduce_spec(node, ctx, ReduceAttrs("mean" if node.attrs.kind == "avg" else "max", tuple(range(2, rank))))


def reduce_spec(node: Node, ctx: LowerContext, a: ReduceAttrs) -> KernelSpec:
    """The kernel walks one sample's input in C order through the fewest loops (reduction_loops), each
    either reduced or kept; the output is indexed by the kept loops only.  A reduced batch axis makes the
    whole tensor one sample (N = 1)."""
    shape = ctx.type(node.inputs[0]).shape
    per_sample = 0 not in a.axes
    if not per_sample and ctx.dynamic_batch:
        raise UnsupportedError(f"layer {node.name!r} (reduce) reduces the batch axis; compile it with a fixed batch")
    sample, axes = (shape[1:], [x - 1 for x in a.axes]) if per_sample else (shape, list(a.axes))
    dims, reduced = shapes.reduction_loops(sample, axes)
    kept = [d for d, r in zip(dims, reduced) if not r]
    kept_strides = iter(shapes.contiguous_strides(kept))
    y_strides = [0 if r else next(kept_strides) for r in reduced]
    lanes = ctx.target.max_vector_width
    flops = ops.get(node.op).flops(node.attrs, [ctx.type(v) for v in node.inputs], node.types)
    p = dict(KIND=a.kind, N=shape[0] if per_sample else 1, IN=math.prod(sample),
             OUT=math.prod(kept), COUNT=math.prod(d for d, r in zip(dims, reduced) if r),
             DIMS=list(dims), REDUCED=list(reduced), X_STRIDES=list(shapes.contiguous_strides(dims)),
             Y_STRIDES=y_strides, LANES=lanes,
             **_blocks(dims, reduced, y_strides, schedule.threads_for(flops, ctx.threads), lanes))
    scratch = 4 * p["OUT"] if a.kind == "log_sum_exp" else 0   # the sums of exp(x - max), one sample's
    return KernelSpec("reduce", p, [("x", node.inputs[0])], [("y", node.output)], scratch)


def _blocks(dims, reduced, y_strides, threads: int, lanes: int) -> dict:
    """The threads' shares: blocks of the outermost kept loop (PAR), so that each block owns a contiguous
    run of outputs (O_STRIDE of them per iteration of PAR), written by no other thread; whole vectors
    per block when PAR is the innermost loop.  With nothing kept (a single output) or one thread, one block
    of everything (PAR = -1: a loop of extent 1 owning all OUT outputs)."""
    par = next((i for i, r in enumerate(reduced) if not r), -1) if threads > 1 else -1
    if par < 0:
        return dict(PAR=-1, EXTENT=1, BLOCK=1, BLOCKS=1, O_STRIDE=math.prod(d for d, r in zip(dims, reduced) if not r),
                    THREADS=1)
    extent = dims[par]
    unit = lanes if par == len(dims) - 1 else 1
    block = -(-extent // (threads * unit)) * unit
    blocks = -(-extent // block)
    return dict(PAR=par, EXTENT=extent, BLOCK=block, BLOCKS=blocks, O_STRIDE=y_strides[par],
                THREADS=min(threads, blocks))

"""The Reduce* ops: folded with numpy when the data is known at import; at run time, a reduction over
every spatial axis (what torch's dynamo exporter writes for global and adaptive-to-1 pooling) is the
global pool it equals, ReduceMean -> GlobalAveragePool and ReduceMax -> GlobalMaxPool, followed by a
reshape when keepdims=0; any other run-time reduction is the reduce op (convgen/ops/reduce.py).
Axes come from the attribute (ReduceSum before opset 13, the others before 18) or from input 1; empty
axes mean every axis, or none with noop_with_empty_axes=1."""
from __future__ import annotations

import numpy as np

from .. import ops, shapes
from ..ops.reduce import REDUCERS
from .context import NodeView
from .converters import COMPILE_TIME_INPUTS, converter, data
from .folding import Arrays, axes_of, folder

KIND = {"ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min", "ReduceSum": "sum", "ReduceProd": "prod",
        "ReduceSumSquare": "sum_square", "ReduceL1": "l1", "ReduceL2": "l2", "ReduceLogSum": "log_sum",
        "ReduceLogSumExp": "log_sum_exp"}
GLOBAL_POOL_KIND = {"ReduceMean": "avg", "ReduceMax": "max"}
COMPILE_TIME_INPUTS.update({op_type: (1,) for op_type in KIND})


def reduced_axes(node: NodeView, rank: int, axes_input) -> tuple[int, ...] | None:
    """The sorted, non-negative axes reduced; None for a no-op (empty axes, noop_with_empty_axes=1)."""
    axes = axes_input if axes_input is not None else node.attr("axes")
    if axes is None or np.asarray(axes).size == 0:
        return None if node.attr("noop_with_empty_axes", 0) else tuple(range(rank))
    return tuple(sorted(axes_of(node, axes, rank)))


@folder(*KIND)
def _fold_reduce(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    x = arrays[0]
    axes = reduced_axes(node, x.ndim, arrays[1] if len(arrays) > 1 else None)
    if axes is None:
        return [x]
    out = REDUCERS[KIND[node.op_type]](x, axes).astype(x.dtype)
    return [out.reshape(shapes.reduced_shape(node.label, x.shape, axes, bool(node.attr("keepdims", 1))))]


@converter(*KIND)
def _reduce(node: NodeView) -> list:
    x = data(node)
    axes = reduced_axes(node, x.ndim, node.optional_const(1, "axes"))
    if axes is None:
        return [x]
    keepdims = bool(node.attr("keepdims", 1))
    if node.op_type in GLOBAL_POOL_KIND and x.ndim >= 3 and axes == tuple(range(2, x.ndim)):
        pooled = node.emit("global_pool", ops.GlobalPoolAttrs(GLOBAL_POOL_KIND[node.op_type]), [x])
        if keepdims:
            return [pooled]
        return [node.emit("reshape", ops.ReshapeAttrs(x.shape[:2]), [pooled], suffix="_squeeze")]
    return [node.emit("reduce", ops.ReduceAttrs(KIND[node.op_type], axes, keepdims), [x])]

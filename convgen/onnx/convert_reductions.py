"""The Reduce* ops: folded with numpy when the data is known at import; at run time, a reduction over
every spatial axis (what torch's dynamo exporter writes for global and adaptive-to-1 pooling) is the
global pool it equals, ReduceMean -> GlobalAveragePool and ReduceMax -> GlobalMaxPool, followed by a
reshape when keepdims=0.  Axes come from the attribute (ReduceSum before opset 13, the others
before 18) or from input 1; empty axes mean every axis, or none with noop_with_empty_axes=1."""
from __future__ import annotations

import numpy as np

from .. import ops
from .context import NodeView
from .converters import COMPILE_TIME_INPUTS, converter, data
from .folding import Arrays, axes_of, folder

REDUCERS = {
    "ReduceMean": lambda x, axes: np.mean(x, axis=axes, keepdims=True),
    "ReduceMax": lambda x, axes: np.max(x, axis=axes, keepdims=True),
    "ReduceMin": lambda x, axes: np.min(x, axis=axes, keepdims=True),
    "ReduceSum": lambda x, axes: np.sum(x, axis=axes, keepdims=True),
    "ReduceProd": lambda x, axes: np.prod(x, axis=axes, keepdims=True),
    "ReduceSumSquare": lambda x, axes: np.sum(x * x, axis=axes, keepdims=True),
    "ReduceL1": lambda x, axes: np.sum(np.abs(x), axis=axes, keepdims=True),
    "ReduceL2": lambda x, axes: np.sqrt(np.sum(x * x, axis=axes, keepdims=True)),
    "ReduceLogSumExp": lambda x, axes: np.log(np.sum(np.exp(x), axis=axes, keepdims=True)),
}
GLOBAL_POOL_KIND = {"ReduceMean": "avg", "ReduceMax": "max"}
COMPILE_TIME_INPUTS.update({op_type: (1,) for op_type in REDUCERS})


def reduced_axes(node: NodeView, rank: int, axes_input) -> tuple[int, ...] | None:
    """The sorted, non-negative axes reduced; None for a no-op (empty axes, noop_with_empty_axes=1)."""
    axes = axes_input if axes_input is not None else node.attr("axes")
    if axes is None or np.asarray(axes).size == 0:
        return None if node.attr("noop_with_empty_axes", 0) else tuple(range(rank))
    return tuple(sorted(axes_of(node, axes, rank)))


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


@folder(*REDUCERS)
def _fold_reduce(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    x = arrays[0]
    axes = reduced_axes(node, x.ndim, arrays[1] if len(arrays) > 1 else None)
    if axes is None:
        return [x]
    out = REDUCERS[node.op_type](x, axes).astype(x.dtype)
    return [out.reshape(reduced_shape(x.shape, axes, bool(node.attr("keepdims", 1))))]


@converter(*REDUCERS)
def _reduce(node: NodeView) -> list:
    x = data(node)
    axes = reduced_axes(node, x.ndim, node.optional_const(1, "axes"))
    if axes is None:
        return [x]
    spatial = tuple(range(2, x.ndim))
    if node.op_type not in GLOBAL_POOL_KIND or x.ndim < 3 or axes != spatial:
        raise node.unsupported(f"reducing axes {list(axes)} of a rank-{x.ndim} tensor at run time; convgen "
                               "reduces at run time only ReduceMean and ReduceMax over every spatial axis "
                               f"({list(spatial)}, a global pool)")
    pooled = node.emit("global_pool", ops.GlobalPoolAttrs(GLOBAL_POOL_KIND[node.op_type]), [x])
    if node.attr("keepdims", 1):
        return [pooled]
    return [node.emit("reshape", ops.ReshapeAttrs(x.shape[:2]), [pooled], suffix="_squeeze")]

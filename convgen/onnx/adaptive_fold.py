"""torch's dynamo export of adaptive_avg_pool2d with overlapping bins, folded back into one adaptive pool.

The exporter decomposes the pool: Transpose(x, [2, 3, 0, 1]) -> GatherND(constant indices of shape
(OH, KH, OW, KW, 2): each output's window, KH x KW taps) -> Transpose([4, 5, 0, 1, 2, 3]), then either a
ReduceMean over the taps (bins of one length) or Where masks of the taps past a shorter bin, a sum of
Gathers and a Div by the bins' sizes (uneven bins).  Imported op by op that is a transposed copy of the
input, a gather, another transpose and tens of slices and adds; folded, it is the adaptive pool the DSL
emits (convgen/nn/resize.py: resamples of one axis at a time).

What follows the GatherND is taken as the pool only where it computes the pool: the chain (the nodes
reading only the chain and initializers) is evaluated by onnx's reference implementation on a random
input of the pool's input shape and compared with torch's adaptive average; nothing else is folded.
"""
from __future__ import annotations

import numpy as np

from .. import nn, shapes
from ..trace import Tensor
from .context import Context, c_name
from .loader import onnx_module

TO_TAPS = [2, 3, 0, 1]        # (N, C, H, W) -> (H, W, N, C): the gathered axes first
LONGEST_CHAIN = 1024          # 2 Wheres, KH x KW Gathers and Adds and a Div: 3 x 3 taps take 23 nodes


def adaptive_avg_reference(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    rows = shapes.adaptive_bins(x.shape[2], out_h)
    cols = shapes.adaptive_bins(x.shape[3], out_w)
    return np.stack([np.stack([x[:, :, a:b, c:d].mean(axis=(2, 3)) for c, d in cols], -1) for a, b in rows], -2)


def fold(ctx: Context, graph, order: list, position: int, readers: dict[str, list], opset: int) -> list | None:
    """If order[position] starts the pattern: the pool emitted as the chain's last value, and the chain's
    nodes (which the importer then skips); else None."""
    node = order[position]
    x = ctx.values.get(node.input[0]) if node.input else None
    if node.op_type != "Transpose" or not isinstance(x, Tensor) or x.ndim != 4 or x.type.dtype != "float32":
        return None
    if [int(p) for p in _attr(node, "perm", [])] != TO_TAPS or len(readers.get(node.output[0], [])) != 1:
        return None
    gather = readers[node.output[0]][0]
    indices = ctx.values.get(gather.input[1]) if gather.op_type == "GatherND" and len(gather.input) > 1 else None
    if not isinstance(indices, np.ndarray) or indices.ndim != 5 or indices.shape[-1] != 2 or _attr(gather, "batch_dims", 0):
        return None
    chain = _chain(ctx, graph, order, position, gather)
    out_h, out_w = indices.shape[0], indices.shape[2]
    end = _end_of_pool(ctx, graph, [node, gather] + chain, x.shape, (out_h, out_w), readers, opset)
    if end is None:
        return None
    nodes = [node, gather] + chain[:end + 1]
    last = nodes[-1]
    pooled = nn.resize._adaptive(x, (out_h, out_w), "avg", 2, c_name(last.name or "adaptive_avg_pool"),
                                 "AdaptiveAvgPool2d (dynamo's GatherND form)")
    ctx.values[last.output[0]] = pooled
    return nodes


def _attr(node, key: str, default):
    for a in node.attribute:
        if a.name == key:
            return onnx_module().helper.get_attribute_value(a)
    return default


def _chain(ctx: Context, graph, order: list, position: int, gather) -> list:
    """The nodes after the GatherND, in order, that read only its result, each other and initializers."""
    inside = {gather.output[0]}
    chain = []
    for node in order[position + 1:]:
        if len(chain) >= LONGEST_CHAIN:
            break
        if node is gather:
            continue
        reads = [v for v in node.input if v]
        if reads and any(v in inside for v in reads) and all(v in inside or _constant(ctx, v) for v in reads):
            chain.append(node)
            inside.update(v for v in node.output if v)
    return chain


def _constant(ctx: Context, name: str) -> bool:
    return isinstance(ctx.values.get(name), np.ndarray)


def _end_of_pool(ctx: Context, graph, nodes: list, shape, out_size: tuple[int, int], readers: dict,
                 opset: int) -> int | None:
    """The index in nodes[2:] of the last node whose output is the adaptive average of the input, every
    earlier output read only by the nodes up to it (and not a graph output); None if there is none."""
    onnx = onnx_module()
    from onnx.reference import ReferenceEvaluator

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    wanted = adaptive_avg_reference(x.astype(np.float64), *out_size)
    outputs = [n.output[0] for n in nodes[2:]]
    constants = sorted({v for n in nodes for v in n.input if v and _constant(ctx, v)})
    helper = onnx.helper
    source = nodes[0].input[0]
    sub = helper.make_graph(nodes, "adaptive", [helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT, shape)],
                            [helper.make_tensor_value_info(v, onnx.TensorProto.UNDEFINED, None) for v in outputs],
                            [onnx.numpy_helper.from_array(np.asarray(ctx.values[v]), v) for v in constants])
    try:
        values = ReferenceEvaluator(helper.make_model(sub, opset_imports=[helper.make_opsetid("", opset)])).run(
            None, {source: x})
    except Exception:   # a chain the reference cannot run is not the pattern
        return None
    graph_outputs = {o.name for o in graph.output}
    for i in range(len(outputs) - 1, -1, -1):
        value = np.asarray(values[i])
        if value.shape != wanted.shape or not np.allclose(value, wanted, rtol=1e-5, atol=1e-6):
            continue
        prefix = nodes[:i + 3]
        members = {id(n) for n in prefix}
        inner = [v for n in prefix[:-1] for v in n.output if v]
        if all(v not in graph_outputs and all(id(r) in members for r in readers.get(v, [])) for v in inner):
            return i
    return None

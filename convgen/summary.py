"""graph.summary(): per layer the output shape, parameters, FLOPs, receptive field and memory."""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import ops, shapes
from .ir import Graph, Node

NO_FIELD = ("flatten", "linear", "gemm", "matmul", "reshape", "transpose")

# (sizes, jumps) per spatial axis, Fractions after an upsampling layer; None: the whole input
Field = tuple[tuple, tuple] | None


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    shape: tuple[int, ...]
    params: int
    flops: int
    field: Field
    output_bytes: int   # the layer's output tensors


def _input_field(graph: Graph, value: str) -> Field:
    rank = graph.type_of(value).ndim
    return ((1,) * (rank - 2), (1,) * (rank - 2)) if rank >= 3 else None


def _step(node: Node, graph: Graph, fields: dict[str, Field]) -> Field:
    op = ops.get(node.op)
    # constants (a per-channel scale) see no pixels; a view that changes the axes ends the field
    data = [fields.get(v) for v in node.inputs[:op.data_inputs] if v not in graph.constants]
    if not data or any(f is None or len(f[0]) != node.type.ndim - 2 for f in data) \
            or node.op in NO_FIELD or node.type.ndim < 3:
        return None
    sizes = tuple(max(s) for s in zip(*(f[0] for f in data)))
    jumps = tuple(max(j) for j in zip(*(f[1] for f in data)))
    if op.window is None:
        return sizes, jumps
    step = shapes.transposed_receptive_field_step if op.transposed else shapes.receptive_field_step
    steps = [step(s, j, k, st, d)
             for s, j, (k, st, d) in zip(sizes, jumps, op.window(node.attrs, graph.type_of(node.inputs[0])))]
    return tuple(s for s, _ in steps), tuple(j for _, j in steps)


def layer_stats(graph: Graph) -> list[LayerStats]:
    fields: dict[str, Field] = {name: _input_field(graph, name) for name, _ in graph.inputs}
    stats = []
    for node in graph.nodes:
        op = ops.get(node.op)
        in_types = [graph.type_of(v) for v in node.inputs]
        params = sum(t.size for v, t in zip(node.inputs, in_types) if v in graph.constants)
        field = _step(node, graph, fields)
        for out in node.outputs:
            fields[out] = field
        stats.append(LayerStats(node.name, node.op, node.type.shape, params,
                                op.flops(node.attrs, in_types, node.types), field,
                                sum(t.nbytes for t in node.types)))
    return stats


def peak_activation_bytes(graph: Graph) -> int:
    """The most bytes of inputs and intermediates alive at once when layers run in graph order."""
    last_use = {v: i for i, node in enumerate(graph.nodes) for v in node.inputs}
    last_use.update({v: len(graph.nodes) for v in graph.outputs})
    live = {name: t.nbytes for name, t in graph.inputs}
    peak = sum(live.values())
    for i, node in enumerate(graph.nodes):
        live.update(zip(node.outputs, (t.nbytes for t in node.types)))
        peak = max(peak, sum(live.values()))
        live = {v: b for v, b in live.items() if last_use.get(v, -1) > i}
    return peak


def _format_field(field: Field) -> tuple[str, str]:
    if field is None:
        return "all", "-"
    # a size after an upsampling layer may be fractional: the whole pixels it touches
    return "x".join(str(math.ceil(s)) for s in field[0]), "x".join(map(str, field[1]))


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def summarize(graph: Graph) -> str:
    stats = layer_stats(graph)
    header = ("layer", "op", "output shape", "params", "FLOPs", "receptive field", "jump", "memory")
    rows = [(name, "input", str(list(t.shape)), "0", "0", *_format_field(_input_field(graph, name)),
             _bytes(t.nbytes)) for name, t in graph.inputs]
    for s in stats:
        op = s.op if s.op != "activation" else str(graph.node(s.name).attrs)
        rows.append((s.name, op, str(list(s.shape)), f"{s.params:,}", _human(s.flops), *_format_field(s.field),
                     _bytes(s.output_bytes)))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    template = "  ".join("{:<%d}" % w for w in widths)
    line = lambda *cells: template.format(*cells).rstrip()  # noqa: E731
    total_params = sum(int(v.size) for v in graph.constants.values())
    total_flops = sum(s.flops for s in stats)
    out = [f'Graph "{graph.name}"', line(*header), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    out += [line(*r) for r in rows]
    out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    out.append(f"total params: {total_params:,} ({total_params * 4 / 1024:.1f} KiB float32)   "
               f"total FLOPs: {_human(total_flops)} ({total_flops:,})")
    out.append(f"memory: each layer's output; peak of live activations {_bytes(peak_activation_bytes(graph))} "
               "(in graph order, before fusion and buffer reuse)")
    return "\n".join(out)

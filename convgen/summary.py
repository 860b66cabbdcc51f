"""graph.summary(): per layer the output shape, parameters, FLOPs and receptive field."""
from __future__ import annotations

from dataclasses import dataclass

from . import ops, shapes
from .ir import Graph, Node

NO_FIELD = ("flatten", "linear", "reshape", "transpose")

Field = tuple[tuple[int, ...], tuple[int, ...]] | None  # (sizes, jumps) per spatial axis; None: whole input


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    shape: tuple[int, ...]
    params: int
    flops: int
    field: Field


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
    steps = [shapes.receptive_field_step(s, j, k, st, d)
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
                                op.flops(node.attrs, in_types, node.types), field))
    return stats


def _format_field(field: Field) -> tuple[str, str]:
    if field is None:
        return "all", "-"
    return "x".join(map(str, field[0])), "x".join(map(str, field[1]))


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def summarize(graph: Graph) -> str:
    stats = layer_stats(graph)
    header = ("layer", "op", "output shape", "params", "FLOPs", "receptive field", "jump")
    rows = [(name, "input", str(list(t.shape)), "0", "0", *_format_field(_input_field(graph, name)))
            for name, t in graph.inputs]
    for s in stats:
        op = s.op if s.op != "activation" else str(graph.node(s.name).attrs)
        rows.append((s.name, op, str(list(s.shape)), f"{s.params:,}", _human(s.flops), *_format_field(s.field)))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    total_params = sum(int(v.size) for v in graph.constants.values())
    total_flops = sum(s.flops for s in stats)
    out = [f'Graph "{graph.name}"', line.format(*header), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    out += [line.format(*r) for r in rows]
    out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    out.append(f"total params: {total_params:,} ({total_params * 4 / 1024:.1f} KiB float32)   "
               f"total FLOPs: {_human(total_flops)} ({total_flops:,})")
    return "\n".join(out)

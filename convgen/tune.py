"""Autotuning: measure candidate schedules of each convolution on this machine, keep the fastest.

`convgen.compile(graph, tune=True)` calls `tune_graph`: for every convolution whose cost-model
schedule is a register-tiled one (direct or pixels), a handful of candidate schedules (the
cost model's own among them, so tuning never picks something it measured slower) are each built
into a one-layer library and timed.  Winners are cached on disk per (layer signature, backend,
threads, CPU) in <cache>/tuning.json, so a model tunes once per machine; layers with the same
signature (ResNet's repeated blocks) are measured once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import backends, lower, progress, schedule, schedule_gemm
from .cache import atomic_write, cache_root
from .ir import Graph, Node
from .schedule import ConvSchedule
from .target import Target

MEASURE_SECONDS = 0.01   # each timed loop lasts at least this long
LOOPS = 3                # timed loops per candidate; the best counts


def tune_graph(graph: Graph, target: Target, threads: int, backend: str,
               cache_dir=None, quiet: bool | None = None, winograd: bool = True,
               load: Callable | None = None) -> dict[str, ConvSchedule]:
    """{conv layer name: the fastest measured schedule} for an optimized graph; with `winograd`, the
    Winograd tile sizes are candidates too where they apply.  `load(library, lowered, source, graph)`
    makes a callable model of a built candidate (runtime.compile passes its loader: imports run
    downward, this module never imports the runtime); needed only when a layer is measured."""
    path = cache_root(cache_dir) / "tuning.json"
    table = _load(path)
    chosen: dict[str, ConvSchedule] = {}
    for node in graph.nodes:
        if node.op != "conv":
            continue
        key = signature(graph, node, target, threads, backend) + ("" if winograd else "|direct")
        if key not in table:
            table[key] = dataclasses.asdict(_measure_layer(graph, node, target, threads, backend, cache_dir, quiet,
                                                           winograd, load))
            _save(path, table)
        chosen[node.name] = ConvSchedule(**table[key])
    return chosen


def signature(graph: Graph, node: Node, target: Target, threads: int, backend: str) -> str:
    """What decides a conv's best schedule: its attributes (but the fused activation, a small share of
    the time: a ResNet conv with and without its ReLU share one measurement), operand shapes, whether
    its weights are constant, the backend, the thread count and the CPU (model name and flags)."""
    attrs = dataclasses.replace(node.attrs, activation=None)
    operands = [(graph.type_of(v).shape, v in graph.constants) for v in node.inputs]
    cpu = hashlib.sha256(" ".join((target.name, *target.features)).encode()).hexdigest()[:16]
    return f"{attrs!r}|{operands}|{backend}|t{threads}|{cpu}"


def candidates(graph: Graph, node: Node, target: Target, threads: int, winograd: bool = True) -> list[ConvSchedule]:
    """The cost model's schedule first, then variations of its register tile and loop order, the
    other register-tiled path where it applies, and Winograd F(m x m, 3 x 3) for every tile size the
    kernels have (F(6x6) too, which the cost model leaves out) where that applies; none for rowwise layers,
    the rowwise kernel for depthwise ones."""
    p, default = lower.conv_geometry(node, lower.LowerContext(graph, target, threads, winograd=winograd))
    if default.path == "rowwise":
        return [default]
    if default.path == "depthwise":   # against the rowwise kernel it replaces (schedule.DEPTHWISE_MAX_ROW)
        return [default, ConvSchedule("rowwise", 0, 0, schedule.row_block(p["OW"]), default.threads)]
    chosen = default
    if default.path == "winograd":   # the cost model's choice first, then the direct path's variations
        default = lower.conv_geometry(node, lower.LowerContext(graph, target, threads, winograd=False))[1]
    budget = schedule.accumulator_budget(target)
    found = [chosen, default]
    ctx = lower.LowerContext(graph, target, threads)
    if lower.gemm_applies(p, ctx, ctx.is_constant(node.inputs[1])):
        # the matrix product's register tiles (MR x NV that fit the file), strided layers' gather too
        gemm = schedule_gemm.gemm_schedule(p["OC"], lower.conv_flops(node, ctx), target, threads)
        found += [gemm] + [dataclasses.replace(gemm, oc_vectors=schedule_gemm.balanced_channels(mr, p["OC"]),
                                               row_tile=nv) for mr, nv in schedule_gemm.tile_variants(target)]
    if default.path == "gemm":   # the other paths' variations from here on
        default = lower.conv_geometry(node, lower.LowerContext(graph, target, threads, winograd=False),
                                      gemm=False)[1]
    found.append(dataclasses.replace(default, blocks_inner=not default.blocks_inner))
    width = schedule._vector_width_for(p["OCG"], target)
    for ocv in (1, 2, 4):
        if ocv <= math.ceil(p["OCG"] / width):
            # up to the budget: past it, the tile no longer fits the register file (register_fit)
            for accumulators in (budget // 2, budget * 3 // 4, budget):
                found.append(ConvSchedule("direct", width, ocv, _balanced(p["OW"], max(1, accumulators // ocv)),
                                          default.threads, default.blocks_inner))
    if default.path == "direct" and default.tile_rows > 1:   # the 2-D tile against one row at a time
        found.append(dataclasses.replace(default, tile_rows=1))
    if p["SW"] == 1:
        vw = target.max_vector_width
        for channels, vectors in ((8, 2), (4, 4), (16, 1), (12, 2)):
            if vectors * vw <= max(p["OW"], vw):
                found.append(ConvSchedule("pixels", vw, min(channels, p["OCG"]), vectors, default.threads,
                                          default.blocks_inner))
    if winograd and lower.winograd_applies(p, node.inputs[1] in graph.constants):
        flops = 2 * 9 * p["N"] * p["CG"] * p["OC"] * p["OH"] * p["OW"]
        found += [schedule.winograd_schedule(m, p["CG"], p["OCG"], p["G"], p["OH"], p["OW"], flops, target, threads)
                  for m in schedule.WINOGRAD_TUNED]
    unique: list[ConvSchedule] = []
    for s in found:
        if s not in unique:
            unique.append(s)
    return unique


def _balanced(out_width: int, max_rows: int) -> int:
    tiles = math.ceil(out_width / max_rows)
    return math.ceil(out_width / tiles)


def _measure_layer(graph: Graph, node: Node, target: Target, threads: int, backend: str, cache_dir,
                   quiet: bool | None, winograd: bool = True, load: Callable | None = None) -> ConvSchedule:
    """Build and time each candidate as a one-layer graph; the fastest wins."""
    layer = _single_layer_graph(graph, node)
    options = candidates(graph, node, target, threads, winograd)
    timings = []
    for candidate in progress.track(options, f"tuning {node.name}", unit="schedule", quiet=quiet):
        timings.append(_time(layer, {node.name: candidate}, target, threads, backend, cache_dir, load))
    return options[int(np.argmin(timings))]


def _single_layer_graph(graph: Graph, node: Node) -> Graph:
    """The layer alone: its activation input as the graph input, its constants kept."""
    constants = {v: graph.constants[v] for v in node.inputs[1:] if v in graph.constants}
    runtime = dict.fromkeys(v for v in node.inputs if v not in constants)  # a residual skip may be x itself
    inputs = [(v, graph.type_of(v)) for v in runtime]
    return dataclasses.replace(graph, name="tune", inputs=tuple(inputs), nodes=(node,), outputs=(node.output,),
                               constants=constants, output_names=None)


def _time(layer: Graph, schedules: dict[str, ConvSchedule], target: Target, threads: int, backend: str,
          cache_dir, load: Callable | None) -> float:
    if load is None:
        raise TypeError("tune_graph needs load= to measure a layer (convgen.compile passes it)")
    lowered = lower.lower(layer, target, threads, schedules=schedules)
    library, source = backends.get(backend)(lowered, cache_dir=cache_dir)
    model = load(library, lowered, source, layer)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(shape).astype(np.float32) for shape in model.input_shapes]
    out = np.empty(model.output_shapes[0], np.float32)
    model(*args, out=out)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < MEASURE_SECONDS:
        model(*args, out=out)
        calls += 1
    best = math.inf
    for _ in range(LOOPS):
        start = time.perf_counter()
        for _ in range(calls):
            model(*args, out=out)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(path: Path, table: dict) -> None:
    atomic_write(path, json.dumps(table, indent=0, sort_keys=True).encode())

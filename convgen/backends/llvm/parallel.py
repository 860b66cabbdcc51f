"""The templates' `#pragma omp parallel for collapse(k) num_threads(T) schedule(static)`, by hand.

With one thread the loops are emitted in place.  With more, the loop nest is outlined:
`<kernel>.<label>(ptr data)` runs on every thread of a libgomp team (GOMP_parallel), reads the
captured values from the struct at `data`, takes its static share of the collapsed iteration
space from omp_get_thread_num()/omp_get_num_threads(), and calls `<kernel>.<label>.chunk`, which
receives the captures as noalias arguments (the C kernels' `restrict`) and runs the loop body.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

from llvmlite import ir

from .emitter import I32, I64, PTR, VOID, Emitter, Index, Ptr

Capture = Union[Ptr, Index]
Body = Callable[[Emitter, list[Index], dict[str, Capture]], None]


TOTAL = "iterations"  # the capture that carries the iteration count when the batch is a run-time value


def parallel_for(e: Emitter, threads: int, extents: Sequence[Union[int, Index]], names: Sequence[str],
                 captures: dict[str, Capture], body: Body, label: str) -> None:
    """Run `body(emitter, indices, captures)` over the collapsed loops `extents`, on `threads` threads.
    The outermost extent may be a run-time value (the batch); the others are constants."""
    if threads <= 1:
        with e.nest(extents, names) as indices:
            body(e, indices, captures)
        return
    total = math.prod(extents)
    if isinstance(total, Index):
        captures = {**captures, TOTAL: total}
    chunk = _chunk_function(e, extents, names, captures, body, f"{e.function.name}.{label}.chunk")
    outlined = _outlined_function(e, chunk, captures, total, f"{e.function.name}.{label}")
    struct = ir.LiteralStructType([c.value.type for c in captures.values()])
    data = e.alloca(struct, name="captured")
    for i, c in enumerate(captures.values()):
        e.b.store(c.value, e.b.gep(data, [ir.Constant(I32, 0), ir.Constant(I32, i)], source_etype=struct))
    gomp = _declare(e.module, "GOMP_parallel", VOID, [PTR, PTR, I32, I32])
    e.b.call(gomp, [outlined, data, ir.Constant(I32, threads), ir.Constant(I32, 0)])


def thread_number(e: Emitter, threads: int) -> Index:
    """omp_get_thread_num() inside a parallel_for body (0 with one thread: no team, no libgomp)."""
    if threads <= 1:
        return Index(e, ir.Constant(I64, 0))
    return Index(e, e.b.sext(e.b.call(_declare(e.module, "omp_get_thread_num", I32, []), []), I64))


def uses_openmp(module: ir.Module) -> bool:
    return "GOMP_parallel" in module.globals


def _declare(module: ir.Module, name: str, ret: ir.Type, params: list[ir.Type]) -> ir.Function:
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, params), name)


def _internal(module: ir.Module, name: str, params: list[ir.Type]) -> ir.Function:
    fn = ir.Function(module, ir.FunctionType(VOID, params), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    return fn


def _chunk_function(e: Emitter, extents: Sequence[int], names: Sequence[str], captures: dict[str, Capture],
                    body: Body, name: str) -> ir.Function:
    """void chunk(captures..., int64_t begin, int64_t end): iterations [begin, end) of the collapsed loops."""
    fn = _internal(e.module, name, [c.value.type for c in captures.values()] + [I64, I64])
    fn.attributes.add("alwaysinline")
    for arg, (key, c) in zip(fn.args, captures.items()):
        arg.name = key
        if isinstance(c, Ptr):
            arg.add_attribute("noalias")
    fn.args[-2].name, fn.args[-1].name = "begin", "end"
    ce = e.sibling(fn)
    inner = {key: (Ptr(ce, arg, c.etype) if isinstance(c, Ptr) else Index(ce, arg))
             for (key, c), arg in zip(captures.items(), fn.args)}
    begin, end = ce.arg_index(len(captures)), ce.arg_index(len(captures) + 1)
    with ce.loop(end, start=begin, name="iteration") as flat:
        body(ce, _unflatten(flat, extents), inner)
    ce.ret()
    return fn


def _unflatten(flat: Index, extents: Sequence[int]) -> list[Index]:
    """The loop indices of collapsed iteration `flat`, outermost first."""
    indices, rest = [], flat
    for extent in reversed(extents[1:]):
        indices.append(rest % extent)
        rest = rest // extent
    indices.append(rest)
    return indices[::-1]


def _outlined_function(e: Emitter, chunk: ir.Function, captures: dict[str, Capture], total: Union[int, Index],
                       name: str) -> ir.Function:
    """void body(void* data): this thread's static share of `total` iterations."""
    fn = _internal(e.module, name, [PTR])
    fn.args[0].name = "data"
    oe = e.sibling(fn)
    struct = ir.LiteralStructType([c.value.type for c in captures.values()])
    loaded = [oe.b.load(oe.b.gep(fn.args[0], [ir.Constant(I32, 0), ir.Constant(I32, i)], source_etype=struct),
                        typ=c.value.type) for i, c in enumerate(captures.values())]
    thread = Index(oe, oe.b.sext(oe.b.call(_declare(e.module, "omp_get_thread_num", I32, []), []), I64))
    team = Index(oe, oe.b.sext(oe.b.call(_declare(e.module, "omp_get_num_threads", I32, []), []), I64))
    if isinstance(total, Index):  # a value of the kernel's function: read it from the captures
        total = Index(oe, loaded[list(captures).index(TOTAL)])
    share = Index(oe, oe.b.udiv(oe.int_value(total), team.value))
    extra = Index(oe, oe.b.urem(oe.int_value(total), team.value))
    begin = thread * share + oe.imin(thread, extra)
    end = begin + share + Index(oe, oe.b.zext(oe.icmp("<", thread, extra), I64))
    oe.b.call(chunk, loaded + [oe.int_value(begin), oe.int_value(end)])
    oe.ret()
    return fn

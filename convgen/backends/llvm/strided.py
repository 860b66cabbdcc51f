"""Strided family, as templates/strided.c.j2: the output in C order, each operand read through its
own strides (0 = broadcast): add, sub, mul, div, n-ary sum, prelu, and copy (transposes)."""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from ...errors import CompileError
from ...lower import Kernel
from . import activation as act
from .emitter import Emitter, Index, Ptr

Combine = Callable[[Emitter, ir.Value, ir.Value], ir.Value]


def _prelu(e: Emitter, a: ir.Value, b: ir.Value) -> ir.Value:
    return e.b.select(e.fcmp("<", a, e.f32(0.0)), e.b.fmul(a, b), a)


def _pick(e: Emitter, op: str, a: ir.Value, b: ir.Value) -> ir.Value:
    """convgen_minf / convgen_maxf: a if a < b (> b) or a is NaN, else b (NaN propagates)."""
    return e.b.select(e.b.or_(e.fcmp(op, a, b), e.is_nan(a)), a, b)


def _truth(op: str, ordered: bool = True) -> Combine:
    """1.0 where `a op b` holds, else 0.0 (C's comparisons: false on NaN, != true)."""
    def compare(e: Emitter, a: ir.Value, b: ir.Value) -> ir.Value:
        holds = e.fcmp(op, a, b) if ordered else e.b.fcmp_unordered(op, a, b)
        return e.b.select(holds, e.f32(1.0), e.f32(0.0))
    return compare


def _where(e: Emitter, c: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
    """c != 0.0f ? a : b (a NaN c picks a, as C's != does)."""
    return e.b.select(e.b.fcmp_unordered("!=", c, e.f32(0.0)), a, b)


# The op table: how two operands combine (the templates' EXPRESSIONS).
OPERATORS: dict[str, Combine] = {
    "add": lambda e, a, b: e.b.fadd(a, b), "sub": lambda e, a, b: e.b.fsub(a, b),
    "mul": lambda e, a, b: e.b.fmul(a, b), "div": lambda e, a, b: e.b.fdiv(a, b),
    "sum": lambda e, a, b: e.b.fadd(a, b), "prelu": _prelu,
    "min": lambda e, a, b: _pick(e, "<", a, b), "max": lambda e, a, b: _pick(e, ">", a, b),
    "pow": lambda e, a, b: e.intrinsic("llvm.pow", [a, b]),
    "greater": _truth(">"), "less": _truth("<"), "equal": _truth("=="), "not_equal": _truth("!=", ordered=False),
    "greater_equal": _truth(">="), "less_equal": _truth("<="),
}
# Ops that read all their operands at once (the templates' SELECTIONS).
SELECTIONS: dict[str, Callable[..., ir.Value]] = {"where": _where}


def _offset(strides: list[int], outer: list[Index]) -> Index | int:
    total: Index | int = 0
    for i, s in zip(outer, strides[:-1]):
        if s:
            total = total + i * s
    return total


def _expression(e: Emitter, p: dict, operands: list[Ptr], i: Index) -> ir.Value:
    values = [x[i * strides[-1]] for x, strides in zip(operands, p["STRIDES"])]
    if p["OP"] in SELECTIONS:
        return SELECTIONS[p["OP"]](e, *values)
    if p["OP"] == "copy":
        if len(values) != 1:
            raise CompileError("copy takes one operand")
        return values[0]
    combine = OPERATORS.get(p["OP"])
    if combine is None:
        raise CompileError(f"no LLVM instruction for elementwise op {p['OP']!r}")
    result = values[0]
    for v in values[1:]:
        result = combine(e, result, v)
    return result


def strided(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    dims = p["DIMS"]
    with e.nest([p["N"], *dims[:-1]], ["n", *(f"i{a}" for a in range(len(dims) - 1))]) as (n, *outer):
        operands = [args[f"x{j}"] + (n * batch + _offset(s, outer) + first)
                    for j, (s, batch, first) in enumerate(zip(p["STRIDES"], p["BATCH_STRIDES"], p["OFFSETS"]))]
        y = args["y"] + (n * p["OUT_BATCH_STRIDE"] + _offset(p["OUT_STRIDES"], outer))
        with e.loop(dims[-1]) as i:
            y[i] = act.apply(e, p["activation"], _expression(e, p, operands, i))

"""Reductions over any axes, as templates/reduce.c.j2: one sample's input walked in C order through the
kernel's loops; a kept innermost loop joins a row of outputs with a row of inputs (vectorized by LLVM),
a reduced one keeps LANES partial results in one vector, then joins the lanes pairwise and the rest;
threads over blocks of the outermost kept loop."""
from __future__ import annotations

import contextlib

from llvmlite import ir

from ...lower import Kernel
from . import activation as act
from .emitter import I32, Emitter, Index, IntLike, Ptr
from .parallel import Capture, parallel_for

JOIN = {"max": "max", "min": "min", "prod": "prod", "log_sum_exp": "max"}
START = {"max": float("-inf"), "min": float("inf"), "prod": 1.0, "sum": 0.0}
EXP = {"kind": "exp", "params": []}
FINAL = {"mean": lambda e, v, count: e.b.fdiv(v, e.f32(float(count))),
         "l2": lambda e, v, count: e.intrinsic("llvm.sqrt", [v]),
         "log_sum": lambda e, v, count: e.intrinsic("llvm.log", [v])}


def _lanewise(e: Emitter, fn, v: ir.Value) -> ir.Value:
    """fn (a scalar rule) on every lane of vector v."""
    out = v
    for lane in range(v.type.count):
        index = ir.Constant(I32, lane)
        out = e.b.insert_element(out, fn(e.b.extract_element(v, index)), index)
    return out


def _value(e: Emitter, kind: str, x: ir.Value, shift: ir.Value | None) -> ir.Value:
    """Element(s) x as the kind joins them; shift: log_sum_exp's second walk (exp(x - maximum))."""
    if shift is not None:
        exp = lambda s: act.apply(e, EXP, s)  # noqa: E731
        shifted = e.b.fsub(x, shift)
        return _lanewise(e, exp, shifted) if isinstance(x.type, ir.VectorType) else exp(shifted)
    if kind in ("sum_square", "l2"):
        return e.b.fmul(x, x)
    if kind == "l1":
        return e.intrinsic("llvm.fabs", [x])
    return x


def _join(e: Emitter, how: str, acc: ir.Value, v: ir.Value) -> ir.Value:
    """acc joined with v; max and min let a NaN win (and stay), as torch's amax."""
    if how in ("max", "min"):
        wins = e.b.or_(e.fcmp(">" if how == "max" else "<", v, acc), e.is_nan(v))
        return e.b.select(wins, v, acc)
    return e.b.fmul(acc, v) if how == "prod" else e.b.fadd(acc, v)


def _finite_or_zero(e: Emitter, m: ir.Value) -> ir.Value:
    """log_sum_exp's shift: the maximum, or 0 when it is infinite or NaN."""
    return e.b.select(e.fcmp("==", e.b.fsub(m, m), e.f32(0.0)), m, e.f32(0.0))


def _halves(e: Emitter, how: str, part: ir.Value) -> ir.Value:
    """The lanes of `part` joined pairwise (halves, quarters, ...) down to one, as the template's tree."""
    width = part.type.count
    while width > 1:
        width //= 2
        low = e.b.shuffle_vector(part, part, ir.Constant(ir.VectorType(I32, width), list(range(width))))
        high = e.b.shuffle_vector(part, part, ir.Constant(ir.VectorType(I32, width), list(range(width, 2 * width))))
        part = _join(e, how, low, high)
    return e.b.extract_element(part, ir.Constant(I32, 0))


def _walk(e: Emitter, p: dict, how: str, xs: Ptr, acc: Ptr, maxima: Ptr | None, lo: IntLike, hi: IntLike) -> None:
    """acc[o] = join(acc[o], value(x)) for every element x of sample xs, o its output; loop PAR over [lo, hi)."""
    dims, lanes, size, last = p["DIMS"], p["LANES"], p["DIMS"][-1], len(p["DIMS"]) - 1
    with contextlib.ExitStack() as stack:
        js = [stack.enter_context(e.loop(hi, start=lo, name=f"j{q}") if q == p["PAR"] else e.loop(d, name=f"j{q}"))
              for q, d in enumerate(dims[:-1])]
        x_off, o = 0, 0
        for j, xs_stride, ys_stride in zip(js, p["X_STRIDES"], p["Y_STRIDES"]):
            x_off = j * xs_stride + x_off
            o = j * ys_stride + o if ys_stride else o
        xr, ar = xs + x_off, acc + o
        mr = maxima + o if maxima is not None else None
        if not p["REDUCED"][-1]:   # a kept innermost loop: rows, in vectors
            def row(i):
                ar[i] = _join(e, how, ar[i], _value(e, p["KIND"], xr[i], _finite_or_zero(e, mr[i]) if mr else None))
            if p["PAR"] == last:   # the block's share of the row: a run-time range, for the vectorizer
                with e.loop(hi, start=lo, vector_width=lanes) as i:
                    row(i)
            else:
                e.vector_row(size, lanes, row)
            return
        shift = _finite_or_zero(e, mr[0]) if mr else None
        whole = size // lanes * lanes
        r = e.var(ar[0], "r")
        if whole:
            part = e.var(e.splat(e.f32(START[how]), lanes), "part")
            with e.loop(whole, step=lanes, name="i") as i:
                vshift = e.splat(shift, lanes) if shift is not None else None
                part.set(_join(e, how, part.get(), _value(e, p["KIND"], xr.load_vector(i, lanes), vshift)))
            r.set(_join(e, how, r.get(), _halves(e, how, part.get())))
        with e.loop(size, start=whole, name="i") as i:
            r.set(_join(e, how, r.get(), _value(e, p["KIND"], xr[i], shift)))
        ar[0] = r.get()


def _block(e: Emitter, p: dict, how: str, b: Index, cap: dict[str, Capture]) -> None:
    """Block b of loop PAR, every sample: its outputs started, walked, finished (the template's body)."""
    kind, count, out = p["KIND"], p["COUNT"], p["OUT"]
    lo = b * p["BLOCK"]
    hi = e.imin(lo + p["BLOCK"], p["EXTENT"])
    o_lo, o_hi = lo * p["O_STRIDE"], hi * p["O_STRIDE"]
    with e.loop(cap.get("N", p["N"]), name="n") as n:
        xs, ys = cap["x"] + n * p["IN"], cap["y"] + n * out
        with e.loop(o_hi, start=o_lo, name="o") as o:
            ys[o] = e.f32(START[how])
        _walk(e, p, how, xs, ys, None, lo, hi)
        if kind == "log_sum_exp":   # scratch: one sample's sums of exp(x - max), each block its own
            sums = cap["scratch"]
            with e.loop(o_hi, start=o_lo, name="o") as o:
                sums[o] = e.f32(0.0)
            _walk(e, p, "sum", xs, sums, ys, lo, hi)
            with e.loop(o_hi, start=o_lo, name="o") as o:
                ys[o] = e.b.fadd(e.intrinsic("llvm.log", [sums[o]]), _finite_or_zero(e, ys[o]))
        elif kind in FINAL:
            with e.loop(o_hi, start=o_lo, name="o") as o:
                ys[o] = FINAL[kind](e, ys[o], count)


def reduce(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    how = JOIN.get(p["KIND"], "sum")
    captures: dict[str, Capture] = {"x": args["x"], "y": args["y"], "scratch": scratch}
    if isinstance(p["N"], Index):   # a run-time batch: the threads' loop over samples needs it
        captures["N"] = p["N"]
    parallel_for(e, p["THREADS"], [p["BLOCKS"]], ["b"], captures,
                 lambda e, index, cap: _block(e, p, how, index[0], cap), "blocks")

"""Power-average (Lp) pooling, as templates/lp_pool.c.j2: windows over a zero-padded copy of the
input, and the global Lp pool.  onnx: (sum |x|^p)^(1/p); torch: (K/n * sum x^p)^(1/p), n the taps
inside the padded input; a negative sum gives NaN unless p == 1, as powf (and torch)."""
from __future__ import annotations

import math

from llvmlite import ir

from ...lower import Kernel
from .emitter import Emitter, Index, Ptr
from .parallel import Capture, parallel_for
from .window import pad_input


def _power(e: Emitter, p: float, absolute: bool, v: ir.Value) -> ir.Value:
    """x^p of one tap (p = 2 goes through _accumulate)."""
    base = e.intrinsic("llvm.fabs", [v]) if absolute else v
    if p == 1.0:
        return base
    return e.intrinsic("llvm.pow", [base, e.f32(p)])


def _accumulate(e: Emitter, p: float, absolute: bool, v: ir.Value, total: ir.Value) -> ir.Value:
    """`total += x^p`, contracted into an FMA for p = 2 as gcc does; for p = inf the max of |x|, NaN winning
    as in torch's max pool (the zero padding never wins)."""
    if math.isinf(p):
        a = e.intrinsic("llvm.fabs", [v])
        return e.b.select(e.b.or_(e.fcmp(">", a, total), e.is_nan(a)), a, total)
    if p == 2.0:
        return e.muladd(v, v, total)
    return e.b.fadd(total, _power(e, p, absolute, v))


def _root(e: Emitter, p: float, s: ir.Value) -> ir.Value:
    if p == 1.0 or math.isinf(p):
        return s
    if p == 2.0:
        return e.intrinsic("llvm.sqrt", [s])
    return e.intrinsic("llvm.pow", [s, e.f32(1.0 / p)])


def _taps_inside(e: Emitter, p: dict, start: Index, axis: str) -> Index:
    """Taps of the window starting at `start` inside the padded input along one axis."""
    dilation = p[f"D{axis}"]
    return e.imin((p[f"I{axis}"] + p[f"P{axis}E"] - start + (dilation - 1)) // dilation, p[f"K{axis}"])


def _lp_row(e: Emitter, p: dict, index: list[Index], cap: dict[str, Capture]) -> None:
    plane, od, oh = index
    yrow = cap["y"] + ((plane * p["OD"] + od) * p["OH"] + oh) * p["OW"]
    # the padded input under the window of output pixel 0 of this row
    xwin = cap["xs"] + ((plane * p["XD"] + od * p["SD"]) * p["XH"] + oh * p["SH"]) * p["XW"]
    if p["RESCALE"]:  # taps inside the padded input along D and H
        dn = _taps_inside(e, p, od * p["SD"] - p["PD"], "D")
        hn = _taps_inside(e, p, oh * p["SH"] - p["PH"], "H")
    with e.loop(p["OW"], name="ow") as ow:
        xo = xwin + ow * p["SW"]
        total = e.var(e.f32(0.0), "sum")
        # the window's taps: compile-time trip counts, unrolled by the optimizer
        with e.nest([p["KD"], p["KH"], p["KW"]], ["kd", "kh", "kw"]) as (kd, kh, kw):
            v = xo[(kd * (p["DD"] * p["XH"]) + kh * p["DH"]) * p["XW"] + kw * p["DW"]]
            total.set(_accumulate(e, p["P"], p["ABS"], v, total.get()))
        if p["RESCALE"]:  # torch divides the window sum by the taps inside, then multiplies by the kernel size
            wn = _taps_inside(e, p, ow * p["SW"] - p["PW"], "W")
            scale = e.b.fdiv(e.f32(float(p["KD"] * p["KH"] * p["KW"])), e.to_float(dn * hn * wn))
            total.set(e.b.fmul(total.get(), scale))
        yrow[ow] = _root(e, p["P"], total.get())


def lp_pool(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    xs = pad_input(e, p, args["x"], scratch, 0.0)
    # threads over (n, c) planes and output rows
    parallel_for(e, p["THREADS"], [p["N"] * p["C"], p["OD"], p["OH"]], ["plane", "od", "oh"],
                 {"xs": xs, "y": args["y"]}, lambda e, index, cap: _lp_row(e, p, index, cap), "rows")


def global_lp_pool(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    x, y = args["x"], args["y"]
    with e.loop(p["N"] * p["C"], name="plane") as plane:
        xp = x + plane * p["SIZE"]
        total = e.var(e.f32(0.0), "sum")
        with e.loop(p["SIZE"], name="i") as i:
            total.set(_accumulate(e, p["P"], True, xp[i], total.get()))
        y[plane] = _root(e, p["P"], total.get())

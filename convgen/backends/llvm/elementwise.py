"""Elementwise family, as templates/elementwise.c.j2: activation, inference batch-norm, local
response normalization."""
from __future__ import annotations

from ...lower import Kernel
from . import activation as act
from .emitter import Emitter, Ptr


def activation(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    with e.loop(p["N"] * p["INNER"]) as i:
        args["y"][i] = act.apply(e, p["activation"], args["x"][i])


def batch_norm(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel."""
    p = k.params
    x, y = args["x"], args["y"]
    with e.loop(p["C"], name="c") as c:
        root = e.intrinsic("llvm.sqrt", [e.b.fadd(args["var"][c], e.f32(p["EPS"]))])
        scale = e.b.fdiv(args["gamma"][c], root)
        shift = e.muladd(e.b.fneg(args["mean"][c]), scale, args["beta"][c])
        with e.loop(p["N"], name="n") as n:
            xp, yp = x + (n * p["C"] + c) * p["INNER"], y + (n * p["C"] + c) * p["INNER"]
            with e.loop(p["INNER"]) as i:
                yp[i] = act.apply(e, p["activation"], e.muladd(xp[i], scale, shift))


def lrn(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    """y = x / (bias + alpha/size * sum of x^2 over a channel window)^beta."""
    p = k.params
    channels, inner = p["C"], p["INNER"]
    x, y, squares = args["x"], args["y"], scratch
    with e.nest([p["N"], channels], ["n", "c"]) as (n, c):
        lo = e.imax(c - p["BEFORE"], 0)
        hi = e.imin(c + p["AFTER"], channels - 1)
        with e.loop(inner) as i:
            squares[i] = e.f32(0.0)
        with e.loop(hi + 1, start=lo, name="j") as j:
            xj = x + (n * channels + j) * inner
            with e.loop(inner) as i:
                squares[i] = e.muladd(xj[i], xj[i], squares[i])
        xc, yc = x + (n * channels + c) * inner, y + (n * channels + c) * inner
        with e.loop(inner) as i:
            base = e.muladd(e.f32(p["SCALE"]), squares[i], e.f32(p["BIAS"]))
            yc[i] = e.b.fdiv(xc[i], e.intrinsic("llvm.pow", [base, e.f32(p["BETA"])]))

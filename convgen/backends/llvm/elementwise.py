"""Elementwise family, as templates/elementwise.c.j2: activation, inference batch-norm."""
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

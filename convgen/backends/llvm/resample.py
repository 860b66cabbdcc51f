"""Resampling along one axis, as templates/resample.c.j2: output index o of the axis reads the input
rows SRC[FIRST[o]] .. SRC[FIRST[o + 1] - 1] (rows of INNER floats) and combines them: gather (one
row), linear (weighted by W in tap order; two taps in one sweep) or max (NaN wins); no taps: FILL."""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from .emitter import F32, I64, Emitter, Index, Ptr
from .parallel import Capture, parallel_for
from .strided import OPERATORS


def resample(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    kind, inner = p["KIND"], p["INNER"]
    tables = {name: e.constant_table(f"{k.fn}.{name}", typ, p[name])
              for name, typ in (("FIRST", I64), ("SRC", I64), ("W", F32)) if name != "W" or kind == "linear"}

    def fold(e: Emitter, yo: Ptr, r: Ptr, weight: ir.Value | None, i: Index, first: bool) -> ir.Value:
        if kind == "linear":
            term = e.b.fmul(weight, r[i])
            return term if first else e.b.fadd(yo[i], term)
        return r[i] if first else OPERATORS["max"](e, yo[i], r[i])

    def row(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        b, o = index
        first_of, src = Ptr(e, tables["FIRST"], I64), Ptr(e, tables["SRC"], I64)
        weights = Ptr(e, tables["W"], F32) if kind == "linear" else None
        first, last = Index(e, first_of[o]), Index(e, first_of[o + 1])
        xb = cap["x"] + b * (p["IN"] * inner)
        yo = cap["y"] + (b * p["OUT"] + o) * inner

        def taps(t: Index) -> tuple[Ptr, ir.Value | None]:
            return xb + Index(e, src[t]) * inner, weights[t] if weights else None

        def fold_all() -> None:
            r, w = taps(first)
            with e.loop(inner, name="i") as i:
                yo[i] = fold(e, yo, r, w, i, True)
            if kind != "gather":
                with e.loop(last, start=first + 1, name="t") as t:
                    r, w = taps(t)
                    with e.loop(inner, name="i") as i:
                        yo[i] = fold(e, yo, r, w, i, False)

        def combine() -> None:
            if kind != "linear":
                fold_all()
                return
            with e.if_else(e.icmp("==", last - first, 2)) as (pair, other):
                with pair:  # interpolation: both taps in one sweep
                    (r0, w0), (r1, w1) = taps(first), taps(first + 1)
                    with e.loop(inner, name="i") as i:
                        yo[i] = e.b.fadd(e.b.fmul(w0, r0[i]), e.b.fmul(w1, r1[i]))
                with other:
                    fold_all()

        if not p["FILLED"]:
            combine()
            return
        with e.if_else(e.icmp("==", last - first, 0)) as (empty, present):
            with empty:  # outside tf_crop_and_resize's region: extrapolation_value
                with e.loop(inner, name="i") as i:
                    yo[i] = ir.Constant(F32, p["FILL"])
            with present:
                combine()

    parallel_for(e, p["THREADS"], [p["N"] * p["OUTER"], p["OUT"]], ["b", "o"], {"x": args["x"], "y": args["y"]},
                 row, "rows")

"""Pad and crop, as templates/pad.c.j2: the output row by row, each row its begin pad, one memcpy of
the kept input, its end pad."""
from __future__ import annotations

from ...errors import CompileError
from ...lower import Kernel
from .emitter import Emitter, Index, IntLike, Ptr


def map_index(e: Emitter, mode: str, c: Index, n: int) -> IntLike:
    """The kept-input index that position c (< 0 or >= n) reads: the templates' map_index."""
    if mode == "constant":
        return c
    if mode not in ("reflect", "edge", "wrap"):
        raise CompileError(f"no index map for pad mode {mode!r}")
    below, above = {"reflect": (0 - c, 2 * (n - 1) - c), "edge": (0, n - 1), "wrap": (c + n, c - n)}[mode]
    return e.iselect(e.icmp("<", c, 0), below, e.iselect(e.icmp(">=", c, n), above, c))


def _fill(e: Emitter, p: dict, row: dict, y: Ptr, x: Ptr | None, start: int, stop: int) -> None:
    with e.loop(stop, start=start) as i:
        if p["MODE"] == "constant":
            y[i] = e.f32(p["VALUE"])
        else:
            y[i] = x[map_index(e, p["MODE"], i - row["B"], row["N"])]


def _row(e: Emitter, p: dict, y: Ptr, x: Ptr) -> None:
    row = p["AXES"][-1]
    _fill(e, p, row, y, x, 0, row["B"])
    e.memcpy(y + row["B"], x, 4 * row["N"])
    _fill(e, p, row, y, x, row["B"] + row["N"], row["O"])


def pad(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    outer = p["AXES"][:-1]
    with e.nest([p["N"]] + [a["O"] for a in outer], ["n"] + [f"o{i}" for i in range(len(outer))]) as (n, *index):
        y: Ptr = args["y"] + n * p["OUT_SAMPLE"]
        source: IntLike = n * p["IN_SAMPLE"] + p["AXES"][-1]["LO"]
        inside = []
        for o, axis, in_stride, out_stride in zip(index, outer, p["IN_STRIDES"], p["OUT_STRIDES"]):
            y = y + o * out_stride
            c = o - axis["B"]
            inside += [e.icmp(">=", c, 0), e.icmp("<", c, axis["N"])]
            source = source + (map_index(e, p["MODE"], c, axis["N"]) + axis["LO"]) * in_stride
        if p["MODE"] == "constant" and inside:
            with e.if_else(e.all_of(inside)) as (then, otherwise):
                with then:
                    _row(e, p, y, args["x"] + source)
                with otherwise:  # a row of the padding: all fill
                    _fill(e, p, p["AXES"][-1], y, None, 0, p["AXES"][-1]["O"])
        else:
            _row(e, p, y, args["x"] + source)

"""Pieces shared by the sliding-window kernels, as templates/window.c.j2."""
from __future__ import annotations

from .emitter import Emitter, Index, Ptr
from .parallel import Capture, parallel_for


def fill_row(e: Emitter, row: Ptr, begin: int, end: int, fill: float) -> None:
    with e.loop(end, start=begin, name="ww") as ww:
        row[ww] = e.f32(fill)


def pad_plane(e: Emitter, p: dict, dst: Ptr, src: Ptr, fill: float) -> None:
    """Copy one input plane (src: [ID][IH][IW]) into a padded plane (dst: [XD][XH][XW]), `fill` outside
    the input."""
    left = min(p["PW"], p["XW"])
    copied = max(min(p["IW"], p["XW"] - p["PW"]), 0)
    with e.loop(p["XD"], name="d") as d, e.loop(p["XH"], name="hh") as hh:
        row = dst + (d * p["XH"] + hh) * p["XW"]
        sd, sh = d - p["PD"], hh - p["PH"]
        inside = e.all_of([e.icmp(">=", sd, 0), e.icmp("<", sd, p["ID"]),
                           e.icmp(">=", sh, 0), e.icmp("<", sh, p["IH"])])
        # rows of padding, then each input row between its left and right padding
        with e.if_else(inside) as (then, otherwise):
            with then:
                fill_row(e, row, 0, left, fill)
                e.memcpy(row + left, src + (sd * p["IH"] + sh) * p["IW"], 4 * copied)
                fill_row(e, row, left + copied, p["XW"], fill)
            with otherwise:
                fill_row(e, row, 0, p["XW"], fill)


def pad_input(e: Emitter, p: dict, x: Ptr, scratch: Ptr, fill: float) -> Ptr:
    """The input the kernel reads: a padded copy [N][C][XD][XH][XW] (`fill` outside the input) in
    the scratch buffer when windows reach past the input, else x itself."""
    if not p["PAD_COPY"]:
        return x

    def planes(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        plane = index[0] * p["C"] + index[1]
        pad_plane(e, p, cap["xpad"] + plane * (p["XD"] * p["XH"] * p["XW"]),
                  cap["x"] + plane * (p["ID"] * p["IH"] * p["IW"]), fill)

    parallel_for(e, p["THREADS"], [p["N"], p["C"]], ["n", "c"], {"xpad": scratch, "x": x}, planes, "pad")
    return scratch

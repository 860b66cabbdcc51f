"""The narrow convolution path, as templates/conv_narrow.c.j2: few output channels, output pixels along a
row in vectors (the row's last vector ending at its end, overlapping the one before it), each output
channel's weight broadcast; with FLAT, blocks of RH rows as one row of RH * OW pixels, read from a copy of
the input per kernel column with rows OW long."""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from .conv import (_tile_function, conv_captures, finish_rows, input_and_channel_weights, row_block_operands,
                   with_remainder_rows)
from .emitter import Emitter, Index, IntLike, Ptr
from .parallel import Capture, parallel_for


def _narrow_tile(e: Emitter, k: Kernel, tile_rows: int, offsets: list[int], name: str) -> ir.Function:
    """void tile(xt, wt, bt, yt, oc_valid): `tile_rows` output rows x the pixel vectors starting at
    `offsets` along each x MR output channels."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.{name}")
    xt, wt, bt, yt = (te.arg_ptr(i) for i in range(4))
    oc_valid = te.arg_index(4)
    vw, mr = p["VW"], p["MR"]
    acc = [[[te.var(te.zeros(vw), f"acc{rr}_{i}_{v}") for v in range(len(offsets))] for i in range(mr)]
           for rr in range(tile_rows)]
    with te.loop(p["CG"], name="c") as c, te.loop(p["KD"], name="kd") as kd, te.loop(p["KH"], name="kh") as kh:
        xk = xt + c * p["CS"] + (kd * (p["DD"] * p["XH"]) + kh * p["DH"]) * p["RS"]
        wk = wt + ((c * p["KD"] + kd) * p["KH"] + kh) * (p["KW"] * mr)
        with te.loop(p["KW"], name="kw") as kw:
            # tile_rows x NV input vectors, then one broadcast per channel serving them all
            xv = [[xk.load_vector(kw * p["KWS"] + rr * (p["SH"] * p["RS"]) + offset, vw) for offset in offsets]
                  for rr in range(tile_rows)]
            for i in range(mr):  # unrolled: the accumulators stay in registers
                wv = te.splat(wk[kw * mr + i], vw)
                for rr in range(tile_rows):
                    for v in range(len(offsets)):
                        acc[rr][i][v].set(te.fma(wv, xv[rr][v], acc[rr][i][v].get()))
    # epilogue: bias, contiguous vector stores into each channel's plane (overlapping pixels: the same values)
    out_plane = p["OD"] * p["OH"] * p["OW"]
    for i in range(mr):
        with te.if_then(te.icmp("<", i, oc_valid)):  # channels past oc_valid are the last block's zero padding
            bias = te.splat(bt[i] if p["HAS_BIAS"] else te.f32(0.0), vw)
            for rr in range(tile_rows):
                for v, offset in enumerate(offsets):
                    at = yt + (i * out_plane + rr * p["OW"] + offset)
                    te.b.store(te.b.fadd(acc[rr][i][v].get(), bias), at.value, align=4)
    te.ret()
    return fn


def _flat_copy(e: Emitter, p: dict, xs: Ptr, xf: Ptr) -> None:
    """The flat blocks' input: xf[n][c][kw][d][r][ow] = xs[n][c][d][r][ow + kw * DW], rows OW long."""
    extents = [p["N"], p["C"], p["KW"], p["XD"], p["XH"]]
    with e.nest(extents, ["n", "c", "kw", "d", "r"]) as (n, c, kw, d, r):
        src = xs + (((n * p["C"] + c) * p["XD"] + d) * p["XH"] + r) * p["XW"] + kw * p["DW"]
        e.memcpy(xf + ((((n * p["C"] + c) * p["KW"] + kw) * p["XD"] + d) * p["XH"] + r) * p["OW"], src, 4 * p["OW"])


def conv_narrow(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    rows_tail = p["OH"] % p["RH"]  # 0 with FLAT
    tiles = {}
    for rh in [1] if p["FLAT"] else [p["RH"]] + ([rows_tail] if rows_tail else []):
        if p["FULL"]:
            tiles["tile", rh] = _narrow_tile(e, k, rh, list(range(0, p["NV"] * p["VW"], p["VW"])), f"tile{rh}")
        if p["TAIL"]:
            tiles["tail", rh] = _narrow_tile(e, k, rh, p["TAIL"], f"tail{rh}")
    xs, wp = input_and_channel_weights(e, p, args, scratch)
    if p["FLAT"]:  # the tiles read the copy per kernel column
        xf = scratch + p["FLAT_OFFSET"]
        _flat_copy(e, p, xs, xf)
        xs = xf

    def row_block(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        oh, oc_valid, wt, bt, _, row_at = row_block_operands(e, p, cap, index, p["MR"])
        n, g, _, od, _ = index
        xrow = cap["xs"] + (n * p["C"] + g * p["CG"]) * p["CS"] + (od * (p["SD"] * p["XH"]) + oh * p["SH"]) * p["RS"]
        yrow = cap["y"] + row_at

        def call(e: Emitter, tile: ir.Function, at: IntLike) -> None:
            e.b.call(tile, [(xrow + at).value, wt.value, bt.value, (yrow + at).value, e.int_value(oc_valid)])

        def along_rows(e: Emitter, rh: int) -> None:
            if p["FULL"]:
                with e.loop(p["FULL"], name="tile") as t:
                    call(e, tiles["tile", 1 if p["FLAT"] else rh], t * (p["NV"] * p["VW"]))
            if p["TAIL"]:  # the row's last vectors
                call(e, tiles["tail", 1 if p["FLAT"] else rh], p["TAIL_AT"])
        with_remainder_rows(e, p, index[4], along_rows)
        if p["activation"] is not None or p["RESIDUAL"]:
            finish_rows(e, p, cap, yrow, row_at, oh, oc_valid)

    # threads over batch, groups, channel blocks and blocks of output rows
    parallel_for(e, p["THREADS"], [p["N"], p["G"], p["OCB"], p["OD"], p["OHB"]], ["n", "g", "ob", "od", "ohb"],
                 conv_captures(p, args, xs=xs, wp=wp), row_block, "rows")

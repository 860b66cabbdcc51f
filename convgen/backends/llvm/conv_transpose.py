"""Transposed convolution, as templates/conv_transpose.c.j2: a gather over stride phases.

Along each axis an output's padded coordinate q = o + crop splits into a phase r = q % stride and
j = q / stride; phase r is reached by taps LAST[r], LAST[r] - TSTEP, ... (TAPS[r] of them) reading
inputs j - OFF[r], + ISTEP, ... .  A row runs one stride phase at a time, a stride-1 sweep over a
zero-padded copy of the input, output channels in vectors as conv_direct.
"""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from .conv import pack_weights, store_tile
from .emitter import I64, PTR, VOID, Emitter, Index, Ptr
from .parallel import Capture, parallel_for
from .window import pad_input

TILE_ARGS = ("xt", "wt", "bt", "yt", "oc_valid", "kd_last", "kd_taps", "kh_last", "kh_taps", "kw_last", "kw_taps")


def _table(e: Emitter, k: Kernel, name: str) -> ir.GlobalVariable:
    """A phase table of the kernel as a private constant array (the template's static const int64_t[])."""
    return e.constant_table(f"{k.fn}.{name}", I64, k.params[name])


def _transposed_tile(e: Emitter, k: Kernel, rows: int) -> ir.Function:
    """void tile(xt, wt, bt, yt, oc_valid, <last tap, taps> per axis): `rows` outputs of one stride phase
    (SW apart) x OCV vectors of output channels."""
    p = k.params
    fn = ir.Function(e.module, ir.FunctionType(VOID, [PTR] * 4 + [I64] * 7), f"{k.fn}.tile{rows}")
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    for arg, name in zip(fn.args, TILE_ARGS):
        arg.name = name
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    te = e.sibling(fn)
    xt, wt, bt, yt = (te.arg_ptr(i) for i in range(4))
    taps = [te.arg_index(i) for i in range(5, 11)]
    acc = _accumulate(te, p, rows, xt, wt, taps)
    store_tile(te, p, rows, acc, bt, yt, te.arg_index(4), pixel_step=p["SW"])
    te.ret()
    return fn


def _accumulate(e: Emitter, p: dict, rows: int, xt: Ptr, wt: Ptr, taps: list[Index]) -> list[list]:
    """The reduction over input channels and this phase's taps: the last tap reads the lowest input."""
    vw, ocv = p["VW"], p["OCV"]
    kd_last, kd_taps, kh_last, kh_taps, kw_last, kw_taps = taps
    acc = [[e.var(e.zeros(vw), f"acc{r}_{j}") for j in range(ocv)] for r in range(rows)]
    with e.loop(p["CG"], name="c") as c, e.loop(kd_taps, name="td") as td, e.loop(kh_taps, name="th") as th:
        xk = xt + ((c * p["XD"] + td * p["ISTEP_D"]) * p["XH"] + th * p["ISTEP_H"]) * p["XW"]
        kd, kh = kd_last - td * p["TSTEP_D"], kh_last - th * p["TSTEP_H"]
        wk = wt + ((c * p["KD"] + kd) * p["KH"] + kh) * (p["KW"] * ocv * vw)
        with e.loop(kw_taps, name="tw") as tw:
            kw = kw_last - tw * p["TSTEP_W"]
            wv = [wk.load_vector((kw * ocv + j) * vw, vw) for j in range(ocv)]
            for r in range(rows):  # unrolled: the accumulators stay in registers
                xv = e.splat(xk[tw * p["ISTEP_W"] + r], vw)
                for j in range(ocv):
                    acc[r][j].set(e.fma(wv[j], xv, acc[r][j].get()))
    return acc


def _weight_index(p: dict, g: Index, oc: Index, c: Index, kk: Index) -> Index:
    """Where weight (group g, output channel oc, input channel c, tap kk) is in (C, OCG, KD, KH, KW)."""
    return ((g * p["CG"] + c) * p["OCG"] + oc) * (p["KD"] * p["KH"] * p["KW"]) + kk


def conv_transpose(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    tiles = {rows: _transposed_tile(e, k, rows) for rows in [p["RW"], *p["TAILS"]]}
    tables = {name: _table(e, k, name) for name in ("LAST_D", "TAPS_D", "OFF_D", "LAST_H", "TAPS_H", "OFF_H",
                                                    "LAST_W", "TAPS_W", "OFF_W", "OFIRST_W", "OCOUNT_W", "JFIRST_W")}
    xs = pad_input(e, p, args["x"], scratch, 0.0)
    if p["PACK_AT_RUNTIME"]:
        wp = scratch + p["WPACK_OFFSET"]
        pack_weights(e, p, args["w"], wp, _weight_index)
    else:
        wp = args["w"]  # packed at compile time: [G][OCB][CG][KK][TILE]
    tile, kk_count = p["OCV"] * p["VW"], p["KD"] * p["KH"] * p["KW"]

    def row(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, g, ob, od, oh = index
        table = {name: Ptr(e, t, I64) for name, t in tables.items()}
        oc0 = g * p["OCG"] + ob * tile
        oc_valid = e.imin(p["OCG"] - ob * tile, tile)
        wt = cap["wp"] + (g * p["OCB"] + ob) * (p["CG"] * kk_count * tile)
        bt = cap["b"] + oc0 if p["HAS_BIAS"] else Ptr(e, ir.Constant(PTR, None))
        qd, qh = od + p["CROP_D"], oh + p["CROP_H"]
        rd, rh = qd % p["SD"], qh % p["SH"]
        # the input plane rows this output row's phases start reading (the last taps')
        xrow = cap["xs"] + (((n * p["C"] + g * p["CG"]) * p["XD"] + qd // p["SD"] - Index(e, table["OFF_D"][rd])
                             + p["PD"]) * p["XH"] + qh // p["SH"] - Index(e, table["OFF_H"][rh]) + p["PH"]) * p["XW"]
        yrow = cap["y"] + (((n * p["OC"] + oc0) * p["OD"] + od) * p["OH"] + oh) * p["OW"]
        phase_taps = [table["LAST_D"][rd], table["TAPS_D"][rd], table["LAST_H"][rh], table["TAPS_H"][rh]]
        # the row's stride phases, each a stride-1 sweep over the input, RW outputs at a time
        with e.loop(p["SW"], name="rw") as rw:
            count = Index(e, table["OCOUNT_W"][rw])
            xph = xrow + (Index(e, table["JFIRST_W"][rw]) - Index(e, table["OFF_W"][rw]) + p["PW"])
            yph = yrow + Index(e, table["OFIRST_W"][rw])
            taps = [*phase_taps, table["LAST_W"][rw], table["TAPS_W"][rw]]

            def call(rows: int, t: Index) -> None:
                e.b.call(tiles[rows], [(xph + t).value, wt.value, bt.value, (yph + t * p["SW"]).value,
                                       e.int_value(oc_valid), *taps])

            full = count // p["RW"]
            with e.loop(full, name="tile") as i:
                call(p["RW"], i * p["RW"])
            for tail in p["TAILS"]:  # the remainder tile
                with e.if_then(e.icmp("==", count - full * p["RW"], tail)):
                    call(tail, full * p["RW"])

    captures: dict[str, Capture] = {"xs": xs, "wp": wp, "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    # threads over batch, groups, channel blocks and output rows
    parallel_for(e, p["THREADS"], [p["N"], p["G"], p["OCB"], p["OD"], p["OH"]], ["n", "g", "ob", "od", "oh"],
                 captures, row, "rows")

"""Convolution family, as templates/conv.c.j2: direct (output channels in vectors), rowwise
(output pixels in vectors), and locally connected.  Every kernel is 3-D; 1-D and 2-D layers
arrive with unit leading axes."""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from . import activation
from .emitter import F32, I64, PTR, VOID, Emitter, Index, Ptr, vector
from .parallel import Capture, parallel_for
from .window import pad_input


def _direct_tile(e: Emitter, k: Kernel, rows: int) -> ir.Function:
    """void tile(xt, wt, bt, yt, oc_valid): `rows` output pixels of one row x OCV vectors of channels."""
    p = k.params
    fn = ir.Function(e.module, ir.FunctionType(VOID, [PTR, PTR, PTR, PTR, I64]), f"{k.fn}.tile{rows}")
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    for arg, name in zip(fn.args, ("xt", "wt", "bt", "yt", "oc_valid")):
        arg.name = name
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    te = e.sibling(fn)
    xt, wt, bt, yt = (te.arg_ptr(i) for i in range(4))
    acc = _accumulate_tile(te, p, rows, xt, wt)
    _store_tile(te, p, rows, acc, bt, yt, te.arg_index(4), k)
    te.ret()
    return fn


def _accumulate_tile(e: Emitter, p: dict, rows: int, xt: Ptr, wt: Ptr) -> list[list]:
    """The reduction over input channels and the kernel window; weights stream in packed order."""
    vw, ocv = p["VW"], p["OCV"]
    acc = [[e.var(e.zeros(vw), f"acc{r}_{j}") for j in range(ocv)] for r in range(rows)]
    with e.loop(p["CG"], name="c") as c, e.loop(p["KD"], name="kd") as kd, e.loop(p["KH"], name="kh") as kh:
        xk = xt + ((c * p["XD"] + kd * p["DD"]) * p["XH"] + kh * p["DH"]) * p["XW"]
        wk = wt + ((c * p["KD"] + kd) * p["KH"] + kh) * (p["KW"] * ocv * vw)
        with e.loop(p["KW"], name="kw") as kw:
            wv = [wk.load_vector((kw * ocv + j) * vw, vw) for j in range(ocv)]
            for r in range(rows):  # unrolled: the accumulators stay in registers
                xv = e.splat(xk[r * p["SW"] + kw * p["DW"]], vw)
                for j in range(ocv):
                    acc[r][j].set(e.fma(wv[j], xv, acc[r][j].get()))
    return acc


def _store_tile(e: Emitter, p: dict, rows: int, acc: list[list], bt: Ptr, yt: Ptr, oc_valid: Index,
                k: Kernel) -> None:
    """Epilogue: bias, activation, scatter the channel lanes to their NCHW planes."""
    vw, ocv = p["VW"], p["OCV"]
    lanes = Ptr(e, e.alloca(ir.ArrayType(vector(vw), rows * ocv), name="lanes"))
    for r in range(rows):
        for j in range(ocv):
            e.b.store(acc[r][j].get(), (lanes + (r * ocv + j) * vw).value, align=4)
    out_plane = p["OD"] * p["OH"] * p["OW"]
    for j in range(ocv):
        # lanes past oc_valid belong to the zero padding of the last channel block
        with e.loop(e.imin(vw, oc_valid - j * vw), name=f"lane{j}") as v:
            oc = v + j * vw
            bias = bt[oc] if p["HAS_BIAS"] else e.f32(0.0)
            yp = yt + oc * out_plane
            for r in range(rows):
                s = e.b.fadd(lanes[(r * ocv + j) * vw + v], bias)
                yp[r] = activation.apply(e, p["activation"], s)


def _pack_weights(e: Emitter, p: dict, w: Ptr, wp: Ptr) -> None:
    """Pack weights (OC, CG, KD, KH, KW) -> [G][OCB][CG][KK][TILE], zero past OCG."""
    tile, kk_count = p["OCV"] * p["VW"], p["KD"] * p["KH"] * p["KW"]
    with e.nest([p["G"], p["OCB"], p["CG"], kk_count, tile], ["g", "ob", "c", "kk", "t"]) as (g, ob, c, kk, t):
        oc = ob * tile + t
        at = (((g * p["OCB"] + ob) * p["CG"] + c) * kk_count + kk) * tile + t
        with e.if_else(e.icmp("<", oc, p["OCG"])) as (then, otherwise):
            with then:
                wp[at] = w[((g * p["OCG"] + oc) * p["CG"] + c) * kk_count + kk]
            with otherwise:
                wp[at] = e.f32(0.0)


def conv_direct(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    tail = p["OW"] % p["RW"]
    tiles = {p["RW"]: _direct_tile(e, k, p["RW"])}
    if tail:
        tiles[tail] = _direct_tile(e, k, tail)
    xs = pad_input(e, p, args["x"], scratch, 0.0)
    if p["PACK_AT_RUNTIME"]:
        wp = scratch + p["WPACK_OFFSET"]
        _pack_weights(e, p, args["w"], wp)
    else:
        wp = args["w"]  # packed at compile time: [G][OCB][CG][KK][TILE]
    tile, kk_count = p["OCV"] * p["VW"], p["KD"] * p["KH"] * p["KW"]

    def row(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, g, ob, od, oh = index
        oc0 = g * p["OCG"] + ob * tile
        oc_valid = e.imin(p["OCG"] - ob * tile, tile)
        wt = cap["wp"] + (g * p["OCB"] + ob) * (p["CG"] * kk_count * tile)
        bt = cap["b"] + oc0 if p["HAS_BIAS"] else Ptr(e, ir.Constant(PTR, None))
        xrow = cap["xs"] + (((n * p["C"] + g * p["CG"]) * p["XD"] + od * p["SD"]) * p["XH"] + oh * p["SH"]) * p["XW"]
        yrow = cap["y"] + (((n * p["OC"] + oc0) * p["OD"] + od) * p["OH"] + oh) * p["OW"]
        full = p["OW"] // p["RW"]
        with e.loop(full, name="tile") as t:  # output pixels along the row, RW at a time
            ow = t * p["RW"]
            e.b.call(tiles[p["RW"]], [(xrow + ow * p["SW"]).value, wt.value, bt.value, (yrow + ow).value,
                                      e.int_value(oc_valid)])
        if tail:  # the remainder tile
            ow = full * p["RW"]
            e.b.call(tiles[tail], [(xrow + ow * p["SW"]).value, wt.value, bt.value, (yrow + ow).value,
                                   e.int_value(oc_valid)])

    captures: dict[str, Capture] = {"xs": xs, "wp": wp, "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    # threads over batch, groups, channel blocks and output rows
    parallel_for(e, p["THREADS"], [p["N"], p["G"], p["OCB"], p["OD"], p["OH"]], ["n", "g", "ob", "od", "oh"],
                 captures, row, "rows")


def conv_rowwise(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    xs = pad_input(e, p, args["x"], scratch, 0.0)

    def row(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, oc, od, oh = index
        g = oc // p["OCG"]
        yrow = cap["y"] + (((n * p["OC"] + oc) * p["OD"] + od) * p["OH"] + oh) * p["OW"]
        # blocks of OWB output pixels accumulate in a row buffer the optimizer keeps in vectors
        acc = Ptr(e, e.alloca(ir.ArrayType(F32, p["OWB"]), name="acc"))
        with e.loop(p["OW"], step=p["OWB"], name="ow0") as ow0:
            count = e.imin(p["OW"] - ow0, p["OWB"])
            bias = cap["b"][oc] if p["HAS_BIAS"] else e.f32(0.0)
            with e.loop(p["OWB"], name="i") as i:
                acc[i] = bias
            with e.nest([p["CG"], p["KD"], p["KH"], p["KW"]], ["c", "kd", "kh", "kw"]) as (c, kd, kh, kw):
                wv = cap["w"][(((oc * p["CG"] + c) * p["KD"] + kd) * p["KH"] + kh) * p["KW"] + kw]
                xk = cap["xs"] + ((((n * p["C"] + g * p["CG"] + c) * p["XD"] + od * p["SD"] + kd * p["DD"]) * p["XH"]
                                   + oh * p["SH"] + kh * p["DH"]) * p["XW"]) + ow0 * p["SW"] + kw * p["DW"]
                with e.loop(count, name="i") as i:
                    acc[i] = e.muladd(wv, xk[i * p["SW"]], acc[i])
            with e.loop(count, name="i") as i:
                yrow[ow0 + i] = activation.apply(e, p["activation"], acc[i])

    captures: dict[str, Capture] = {"xs": xs, "w": args["w"], "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    # threads over batch, output channels and output rows
    parallel_for(e, p["THREADS"], [p["N"], p["OC"], p["OD"], p["OH"]], ["n", "oc", "od", "oh"], captures, row, "rows")


def locally_connected(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    """Like a convolution, but each output position has its own weights (*out_spatial, OC, C, *kernel)."""
    p = k.params
    xs, w, b, y = pad_input(e, p, args["x"], scratch, 0.0), args["w"], args["b"], args["y"]
    kk_count, out_plane = p["KD"] * p["KH"] * p["KW"], p["OD"] * p["OH"] * p["OW"]
    with e.nest([p["N"], p["OD"], p["OH"], p["OW"]], ["n", "od", "oh", "ow"]) as (n, od, oh, ow):
        pos = (od * p["OH"] + oh) * p["OW"] + ow
        with e.loop(p["OC"], name="oc") as oc:
            wpos = w + (pos * p["OC"] + oc) * (p["C"] * kk_count)  # this position's own weights
            s = e.var(b[oc * out_plane + pos] if p["HAS_BIAS"] else e.f32(0.0), "s")
            with e.nest([p["C"], p["KD"], p["KH"]], ["c", "kd", "kh"]) as (c, kd, kh):
                xk = xs + (((n * p["C"] + c) * p["XD"] + od * p["SD"] + kd) * p["XH"] + oh * p["SH"] + kh) * p["XW"] \
                    + ow * p["SW"]
                wk = wpos + ((c * p["KD"] + kd) * p["KH"] + kh) * p["KW"]
                with e.loop(p["KW"], name="kw") as kw:
                    s.set(e.muladd(wk[kw], xk[kw], s.get()))
            y[(n * p["OC"] + oc) * out_plane + pos] = activation.apply(e, p["activation"], s.get())

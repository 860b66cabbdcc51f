"""Convolution family, as templates/conv.c.j2: direct (output channels in vectors), rowwise
(output pixels in vectors), and locally connected.  Every kernel is 3-D; 1-D and 2-D layers
arrive with unit leading axes."""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from ...lower import Kernel
from . import activation
from .emitter import F32, I32, I64, PTR, VOID, Emitter, Index, IntLike, Ptr, vector
from .parallel import Capture, parallel_for, thread_number
from .window import fill_row, pad_input, pad_plane


def _tile_function(e: Emitter, name: str, pointers: tuple[str, ...] = ("xt", "wt", "bt", "yt"),
                   indices: tuple[str, ...] = ()) -> tuple[ir.Function, Emitter]:
    """An always-inline `void tile(xt, wt, bt, yt, oc_valid)` (or other `pointers`, then oc_valid and any
    other int64 `indices`) with noalias pointers, and its emitter."""
    fn = ir.Function(e.module, ir.FunctionType(VOID, [PTR] * len(pointers) + [I64] * (1 + len(indices))), name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    for arg, arg_name in zip(fn.args, pointers + ("oc_valid",) + indices):
        arg.name = arg_name
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    return fn, e.sibling(fn)


# With p["CLIP"] (no padded copy) a direct tile also takes its first window row and the window's rows inside the input.
CLIP_INDICES = ("ih0", "kh_lo", "kh_hi")


def _direct_tile(e: Emitter, k: Kernel, tile_rows: int, rows: int, clip_rows: bool = False,
                 ow0: int | None = None) -> ir.Function:
    """void tile(xt, wt, bt, yt, oc_valid): `tile_rows` output rows x `rows` pixels along each x OCV
    vectors of channels.  With p["CLIP"], as direct_tile in templates/conv.c.j2, also (ih0, kh_lo, kh_hi):
    xt is the input plane at column ow0 * SW - PW (at column 0 for a border tile at `ow0`, whose taps
    outside the row are left out here), `clip_rows` variants run the window rows kh_lo <= kh < kh_hi."""
    p = k.params
    name = f"{k.fn}.tile{tile_rows}x{rows}" + (".rows" if clip_rows else "") + (f".at{ow0}" if ow0 is not None else "")
    fn, te = _tile_function(e, name, indices=CLIP_INDICES if p["CLIP"] else ())
    xt, wt, bt, yt = (te.arg_ptr(i) for i in range(4))
    clip = (te.arg_index(5), te.arg_index(6) if clip_rows else 0, te.arg_index(7) if clip_rows else p["KH"]) \
        if p["CLIP"] else None
    acc = _accumulate_tile(te, p, rows, xt, wt, tile_rows, clip, ow0)
    store_transposed(te, p, tile_rows, rows, acc, bt, yt, te.arg_index(4))
    te.ret()
    return fn


def _power_of_two_above(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def transposed_runs(e: Emitter, vw: int, vectors: list[ir.Value], first: int, valid: IntLike,
                    dest: Callable[[int], Ptr]) -> None:
    """As transposed_runs in templates/conv.c.j2: n pixel vectors (channels in lanes; zero vectors up to P, a
    power of two) transposed by log2(P) stages of two-vector shuffles (stage k swaps bit k of the pixel with
    bit k of the lane), so that vector u holds channels c * P + u with pixel i in lane c * P + i; channel
    `first + c`'s run of n floats stored at dest(first + c) where first + c < valid."""
    n = len(vectors)
    size = _power_of_two_above(n)
    lanes_type = ir.VectorType(I32, vw)
    t = list(vectors) + [e.zeros(vw)] * (size - n)
    bit = 1
    while bit < size:
        lo = [l if l // bit % 2 == 0 else vw + l - bit for l in range(vw)]
        hi = [l + bit if l // bit % 2 == 0 else vw + l for l in range(vw)]
        for i in range(size):
            if i // bit % 2 == 0:
                a, b = t[i], t[i + bit]
                t[i] = e.b.shuffle_vector(a, b, ir.Constant(lanes_type, lo))
                t[i + bit] = e.b.shuffle_vector(a, b, ir.Constant(lanes_type, hi))
        bit *= 2
    for u in range(size):
        for c in range(vw // size):
            oc = first + c * size + u
            run = e.b.shuffle_vector(t[u], t[u], ir.Constant(ir.VectorType(I32, n), list(range(c * size, c * size + n))))
            with e.if_then(e.icmp("<", oc, valid)):
                e.b.store(run, dest(oc).value, align=4)


def store_transposed(e: Emitter, p: dict, tile_rows: int, rows: int, acc: list[list], bt: Ptr, yt: Ptr,
                     oc_valid: Index) -> None:
    """The direct tile's epilogue, as store_transposed in templates/conv.c.j2: bias, then each row's pixels
    in pieces of up to VW, each piece transposed and stored by transposed_runs."""
    vw, ocv = p["VW"], p["OCV"]
    out_plane = p["OD"] * p["OH"] * p["OW"]
    for j in range(ocv):
        bias = e.var(e.zeros(vw), f"bias{j}")
        if p["HAS_BIAS"]:
            # lanes past oc_valid belong to the zero padding of the last channel block
            with e.loop(e.imin(vw, oc_valid - j * vw), name=f"lane{j}") as v:
                bias.set(e.b.insert_element(bias.get(), bt[v + j * vw], v.value))
        for rr in range(tile_rows):
            for r0 in range(0, rows, vw):
                n = min(vw, rows - r0)
                t = [e.b.fadd(acc[rr * rows + r0 + i][j].get(), bias.get()) for i in range(n)]
                transposed_runs(e, vw, t, j * vw, oc_valid,
                                lambda oc, rr=rr, r0=r0: yt + (oc * out_plane + rr * p["OW"] + r0))


def unshared(e: Emitter, ptr: Ptr) -> Ptr:
    """The template's UNSHARED_LOADS: the pointer through an empty asm, so loads through it are not merged
    with earlier loads of the same address; else the overlapping input broadcasts of every kernel column
    stay live at once and a 28-accumulator tile spills (3x3 256x14x14, 14 x 2 tile, Sapphire Rapids, 1
    thread: 2432 -> 1335 us)."""
    barrier = ir.InlineAsm(ir.FunctionType(PTR, [PTR]), "", "=r,0")
    return Ptr(e, e.b.call(barrier, [ptr.value]))


def _accumulate_tile(e: Emitter, p: dict, rows: int, xt: Ptr, wt: Ptr, tile_rows: int = 1,
                     clip: tuple[Index, IntLike, IntLike] | None = None, ow0: int | None = None) -> list[list]:
    """The reduction over input channels and the kernel window; weights stream in packed order.
    Pixel (rr, r) of the tile is acc[rr * rows + r].  The C template's IN_REGISTER hint has no
    counterpart here: LLVM keeps each loaded weight in a register.  `clip` (ih0, kh_lo, kh_hi): the unpadded
    input's rows, as direct_tile; `ow0`: a border tile's first pixel."""
    vw, ocv = p["VW"], p["OCV"]
    acc = [[e.var(e.zeros(vw), f"acc{r}_{j}") for j in range(ocv)] for r in range(tile_rows * rows)]
    ih0, kh_lo, kh_hi = clip or (0, 0, p["KH"])
    with e.loop(p["CG"], name="c") as c, e.loop(p["KD"], name="kd") as kd, \
            e.loop(kh_hi, start=kh_lo, name="kh") as kh:
        xk = xt + ((c * p["XD"] + kd * p["DD"]) * p["XH"] + ih0 + kh * p["DH"]) * p["XW"]
        wk = wt + ((c * p["KD"] + kd) * p["KH"] + kh) * (p["KW"] * ocv * vw)
        if ow0 is not None:
            _border_taps(e, p, rows, acc, xk, wk, ow0 * p["SW"] - p["PW"])
        else:
            _row_taps(e, p, rows, tile_rows, acc, xk, wk)
    return acc


def _row_taps(e: Emitter, p: dict, rows: int, tile_rows: int, acc: list[list], xk: Ptr, wk: Ptr) -> None:
    """One window row of the tile: OCV weight vectors per column, a broadcast per pixel."""
    vw, ocv = p["VW"], p["OCV"]
    # the column loop kept rolled: unrolled, LLVM hoisted the next column's weights over the FMAs and
    # spilled a 28-accumulator tile (3x3 dilated 256x28x28, 14 x 2 tile: 12 spill slots in the loop)
    with e.loop(p["KW"], name="kw", unroll=not p["FULL_HINTS"]) as kw:
        wv = [wk.load_vector((kw * ocv + j) * vw, vw) for j in range(ocv)]
        xw = unshared(e, xk + kw * p["DW"]) if p["FULL_HINTS"] else xk + kw * p["DW"]
        for rr in range(tile_rows):  # unrolled: the accumulators stay in registers
            for r in range(rows):
                xv = e.splat(xw[rr * (p["SH"] * p["XW"]) + r * p["SW"]], vw)
                for j in range(ocv):
                    acc[rr * rows + r][j].set(e.fma(wv[j], xv, acc[rr * rows + r][j].get()))


def _border_taps(e: Emitter, p: dict, rows: int, acc: list[list], xk: Ptr, wk: Ptr, iw0: int) -> None:
    """One window row of a one-row border tile whose first pixel reads column iw0 (in the padding): the
    columns unrolled, each tap's column a constant, those outside the row left out."""
    vw, ocv = p["VW"], p["OCV"]
    for kw in range(p["KW"]):
        columns = [(r, iw0 + r * p["SW"] + kw * p["DW"]) for r in range(rows)]
        columns = [(r, col) for r, col in columns if 0 <= col < p["XW"]]
        if not columns:
            continue
        wv = [wk.load_vector((kw * ocv + j) * vw, vw) for j in range(ocv)]
        for r, col in columns:
            xv = e.splat(xk[col], vw)
            for j in range(ocv):
                acc[r][j].set(e.fma(wv[j], xv, acc[r][j].get()))


def store_tile(e: Emitter, p: dict, rows: int, acc: list[list], bt: Ptr, yt: Ptr, oc_valid: Index,
               pixel_step: int = 1, activation_too: bool = True, tile_rows: int = 1, row_step: int = 0) -> None:
    """Epilogue: bias, activation (unless activation_too is False: the direct path applies it over
    whole rows afterwards, where it vectorizes), scatter the channel lanes to their NCHW planes
    (pixels `pixel_step` apart; a 2-D tile's `tile_rows` rows `row_step` apart)."""
    vw, ocv = p["VW"], p["OCV"]
    pixels = tile_rows * rows
    lanes = Ptr(e, e.alloca(ir.ArrayType(vector(vw), pixels * ocv), name="lanes"))
    for r in range(pixels):
        for j in range(ocv):
            e.b.store(acc[r][j].get(), (lanes + (r * ocv + j) * vw).value, align=4)
    out_plane = p["OD"] * p["OH"] * p["OW"]
    for j in range(ocv):
        # lanes past oc_valid belong to the zero padding of the last channel block
        with e.loop(e.imin(vw, oc_valid - j * vw), name=f"lane{j}") as v:
            oc = v + j * vw
            bias = bt[oc] if p["HAS_BIAS"] else e.f32(0.0)
            yp = yt + oc * out_plane
            for rr in range(tile_rows):
                for r in range(rows):
                    s = e.b.fadd(lanes[((rr * rows + r) * ocv + j) * vw + v], bias)
                    yp[rr * row_step + r * pixel_step] = activation.apply(e, p["activation"], s) if activation_too else s


def finish(e: Emitter, p: dict, value: ir.Value, skip: Ptr | None, at: IntLike) -> ir.Value:
    """The epilogue of one output element, as `finish` in templates/conv.c.j2: a residual conv
    (ConvAttrs.residual) adds skip[at], its fourth input at the output's position, then the activation."""
    if p["RESIDUAL"]:
        value = e.b.fadd(value, skip[at])
    return activation.apply(e, p["activation"], value)


def row_block_operands(e: Emitter, p: dict, cap: dict[str, Capture], index: list[Index], tile: int
                       ) -> tuple[Index, IntLike, Ptr, Ptr, Ptr, Index]:
    """For the row block (n, g, channel block ob, od, block of rows ohb) of a path whose channel blocks hold
    `tile` channels: its first row, its valid channels, its packed weights, bias and input row, and where its
    output starts."""
    n, g, ob, od, ohb = index
    oh, oc0 = ohb * p["RH"], g * p["OCG"] + ob * tile
    oc_valid = e.imin(p["OCG"] - ob * tile, tile)
    wt = cap["wp"] + (g * p["OCB"] + ob) * (p["CG"] * p["KD"] * p["KH"] * p["KW"] * tile)
    bt = cap["b"] + oc0 if p["HAS_BIAS"] else Ptr(e, ir.Constant(PTR, None))
    xrow = cap["xs"] + (((n * p["C"] + g * p["CG"]) * p["XD"] + od * p["SD"]) * p["XH"] + oh * p["SH"]) * p["XW"]
    return oh, oc_valid, wt, bt, xrow, (((n * p["OC"] + oc0) * p["OD"] + od) * p["OH"] + oh) * p["OW"]


def finish_rows(e: Emitter, p: dict, cap: dict[str, Capture], yrow: Ptr, row_at: Index, oh: Index,
                oc_valid: IntLike) -> None:
    """The skip and the activation over each channel's finished rows of a row block (the skip: the output's
    layout), as the direct and narrow templates apply them."""
    count = e.imin(p["OH"] - oh, p["RH"]) * p["OW"]
    srow = cap["r"] + row_at if p["RESIDUAL"] else None
    with e.loop(oc_valid, name="t") as t:
        yp = yrow + t * (p["OD"] * p["OH"] * p["OW"])
        sp = srow + t * (p["OD"] * p["OH"] * p["OW"]) if srow else None
        with e.loop(count, name="i") as i:
            yp[i] = finish(e, p, yp[i], sp, i)


def with_remainder_rows(e: Emitter, p: dict, ohb: Index, along_rows: Callable[[Emitter, int], None]) -> None:
    """along_rows(e, RH) for a row block, or along_rows(e, OH % RH) for the last one where RH does not divide OH."""
    rows_tail = p["OH"] % p["RH"]
    if not rows_tail:
        along_rows(e, p["RH"])
        return
    with e.if_else(e.icmp("<", ohb, p["OHB"] - 1)) as (then, otherwise):
        with then:
            along_rows(e, p["RH"])
        with otherwise:  # the remainder rows
            along_rows(e, rows_tail)


def conv_captures(p: dict, args: dict[str, Ptr], **pointers: Ptr) -> dict[str, Capture]:
    """What a conv's parallel loop body reads: `pointers`, y, and the bias and skip where the layer has them."""
    captures: dict[str, Capture] = {**pointers, "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    if p["RESIDUAL"]:
        captures["r"] = args["r"]
    return captures


def conv_weight_index(p: dict, g: Index, oc: Index, c: Index, kk: Index) -> Index:
    """Where weight (group g, output channel oc, input channel c, tap kk) is in (OC, CG, KD, KH, KW)."""
    return ((g * p["OCG"] + oc) * p["CG"] + c) * (p["KD"] * p["KH"] * p["KW"]) + kk


def pack_weights(e: Emitter, p: dict, w: Ptr, wp: Ptr, source=conv_weight_index) -> None:
    """Pack weights -> [G][OCB][CG][KK][TILE], zero past OCG; `source` places a weight in w."""
    tile, kk_count = p["OCV"] * p["VW"], p["KD"] * p["KH"] * p["KW"]
    with e.nest([p["G"], p["OCB"], p["CG"], kk_count, tile], ["g", "ob", "c", "kk", "t"]) as (g, ob, c, kk, t):
        oc = ob * tile + t
        at = (((g * p["OCB"] + ob) * p["CG"] + c) * kk_count + kk) * tile + t
        with e.if_else(e.icmp("<", oc, p["OCG"])) as (then, otherwise):
            with then:
                wp[at] = w[source(p, g, oc, c, kk)]
            with otherwise:
                wp[at] = e.f32(0.0)


def conv_direct(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    tail, rows_tail = p["OW"] % p["RW"], p["OH"] % p["RH"]
    tiles = {}
    if p["CLIP"]:
        for clip_rows in (False, True):
            tiles[p["RW"], clip_rows, None] = _direct_tile(e, k, 1, p["RW"], clip_rows)
            for ow0, rows in p["LEFT_TILES"] + p["RIGHT_TILES"]:
                tiles[rows, clip_rows, ow0] = _direct_tile(e, k, 1, rows, clip_rows, ow0)
    else:
        for rh in [p["RH"]] + ([rows_tail] if rows_tail else []):
            tiles[rh, p["RW"]] = _direct_tile(e, k, rh, p["RW"])
            if tail:
                tiles[rh, tail] = _direct_tile(e, k, rh, tail)
    xs = pad_input(e, p, args["x"], scratch, 0.0)
    if p["PACK_AT_RUNTIME"]:
        wp = scratch + p["WPACK_OFFSET"]
        pack_weights(e, p, args["w"], wp)
    else:
        wp = args["w"]  # packed at compile time: [G][OCB][CG][KK][TILE]
    tile = p["OCV"] * p["VW"]

    def row_block(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        oh, oc_valid, wt, bt, xrow, row_at = row_block_operands(e, p, cap, index, tile)
        yrow = cap["y"] + row_at

        def along_rows(e: Emitter, rh: int) -> None:
            full = p["OW"] // p["RW"]
            with e.loop(full, name="tile") as t:  # output pixels along the rows, RW at a time
                ow = t * p["RW"]
                e.b.call(tiles[rh, p["RW"]], [(xrow + ow * p["SW"]).value, wt.value, bt.value, (yrow + ow).value,
                                              e.int_value(oc_valid)])
            if tail:  # the remainder tile
                ow = full * p["RW"]
                e.b.call(tiles[rh, tail], [(xrow + ow * p["SW"]).value, wt.value, bt.value, (yrow + ow).value,
                                           e.int_value(oc_valid)])

        n, g, _, od, ohb = index

        def clipped_row(e: Emitter, clip_rows: bool, clip: list[Index]) -> None:
            """The tiles of one row read in place (p["CLIP"]), as clipped_row in templates/conv.c.j2."""
            xplane = cap["xs"] + ((n * p["C"] + g * p["CG"]) * p["XD"] + od * p["SD"]) * (p["XH"] * p["XW"])

            def call(rows: int, ow0: int | None, xt: Ptr, ow: IntLike) -> None:
                e.b.call(tiles[rows, clip_rows, ow0], [xt.value, wt.value, bt.value, (yrow + ow).value,
                                                       e.int_value(oc_valid)] + [e.int_value(i) for i in clip])
            for ow0, rows in p["LEFT_TILES"]:
                call(rows, ow0, xplane, ow0)
            start, stop = p["INTERIOR"]
            with e.loop(stop, start=start, step=p["RW"], name="ow") as ow:
                call(p["RW"], None, xplane + (ow * p["SW"] - p["PW"]), ow)
            for ow0, rows in p["RIGHT_TILES"]:
                call(rows, ow0, xplane, ow0)

        if p["CLIP"]:
            # the window's first row ih0 (above the input in the top border rows) and its rows inside the input;
            # the divisions see negative operands only where the select discards them
            ih0 = oh * p["SH"] - p["PH"]
            room = (p["IH"] - 1) - ih0
            kh_lo = e.iselect(e.icmp("<", ih0, 0), (p["DH"] - 1 - ih0) // p["DH"], 0)
            kh_hi = e.iselect(e.icmp("<", room, 0), 0, e.imin(room // p["DH"] + 1, p["KH"]))
            inside = e.all_of([e.icmp("==", kh_lo, 0), e.icmp("==", kh_hi, p["KH"])])
            with e.if_else(inside) as (then, otherwise):
                with then:
                    clipped_row(e, False, [ih0, kh_lo, kh_hi])
                with otherwise:  # a border row
                    clipped_row(e, True, [ih0, kh_lo, kh_hi])
        else:
            with_remainder_rows(e, p, ohb, along_rows)
        if (p["activation"] is not None or p["RESIDUAL"]) and not p["ACTIVATION_AFTER"]:
            finish_rows(e, p, cap, yrow, row_at, oh, oc_valid)

    captures = conv_captures(p, args, xs=xs, wp=wp)
    # threads over batch, groups, channel blocks and blocks of output rows (blocks innermost with BLOCKS_INNER)
    names = ["n", "g", "od", "ohb", "ob"] if p["BLOCKS_INNER"] else ["n", "g", "ob", "od", "ohb"]
    extents = {"n": p["N"], "g": p["G"], "ob": p["OCB"], "od": p["OD"], "ohb": p["OHB"]}

    def reordered(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        named = dict(zip(names, index))
        row_block(e, [named[i] for i in ("n", "g", "ob", "od", "ohb")], cap)
    parallel_for(e, p["THREADS"], [extents[i] for i in names], names, captures, reordered, "rows")
    if (p["activation"] is not None or p["RESIDUAL"]) and p["ACTIVATION_AFTER"]:  # over the whole output
        y = args["y"]
        with e.loop(p["N"] * p["OC"] * p["OD"] * p["OH"] * p["OW"], name="i") as i:
            y[i] = finish(e, p, y[i], args.get("r"), i)


def _rowwise_row(e: Emitter, p: dict, cap: dict[str, Capture], xg: Ptr, n: Index, oc: Index, od: Index,
                 oh: Index) -> None:
    """One output row (n, oc, od, oh); `xg`: the (padded) input planes of its group."""
    row_at = (((n * p["OC"] + oc) * p["OD"] + od) * p["OH"] + oh) * p["OW"]
    yrow = cap["y"] + row_at
    srow = cap["r"] + row_at if p["RESIDUAL"] else None   # the skip has the output's layout
    # blocks of OWB output pixels accumulate in a row buffer the optimizer keeps in vectors
    acc = Ptr(e, e.alloca(ir.ArrayType(F32, p["OWB"]), name="acc"))
    with e.loop(p["OW"], step=p["OWB"], name="ow0") as ow0:
        count = e.imin(p["OW"] - ow0, p["OWB"])
        bias = cap["b"][oc] if p["HAS_BIAS"] else e.f32(0.0)
        with e.loop(p["OWB"], name="i") as i:
            acc[i] = bias
        with e.nest([p["CG"], p["KD"], p["KH"], p["KW"]], ["c", "kd", "kh", "kw"]) as (c, kd, kh, kw):
            wv = cap["w"][(((oc * p["CG"] + c) * p["KD"] + kd) * p["KH"] + kh) * p["KW"] + kw]
            xk = xg + ((c * p["XD"] + od * p["SD"] + kd * p["DD"]) * p["XH"] + oh * p["SH"] + kh * p["DH"]) * p["XW"] \
                + ow0 * p["SW"] + kw * p["DW"]
            with e.loop(count, name="i") as i:
                acc[i] = e.muladd(wv, xk[i * p["SW"]], acc[i])
        with e.loop(count, name="i") as i:
            yrow[ow0 + i] = finish(e, p, acc[i], srow, ow0 + i)


def conv_rowwise(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    plane = p["XD"] * p["XH"] * p["XW"]
    captures: dict[str, Capture] = {"w": args["w"], "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    if p["RESIDUAL"]:
        captures["r"] = args["r"]
    if p["PLANE_PAD"]:
        assert p["CG"] == 1, "one input plane per group"

        def group(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
            # a thread pads its group's input plane into its own buffer, where the group's rows find it in cache
            n, g = index
            xplane = cap["scratch"] + thread_number(e, p["THREADS"]) * plane
            pad_plane(e, p, xplane, cap["x"] + (n * p["C"] + g) * (p["ID"] * p["IH"] * p["IW"]), 0.0)
            with e.loop(p["OCG"], name="t") as t, e.nest([p["OD"], p["OH"]], ["od", "oh"]) as (od, oh):
                _rowwise_row(e, p, cap, xplane, n, g * p["OCG"] + t, od, oh)

        # threads over batch and groups
        parallel_for(e, p["THREADS"], [p["N"], p["G"]], ["n", "g"],
                     {**captures, "x": args["x"], "scratch": scratch}, group, "planes")
        return
    xs = pad_input(e, p, args["x"], scratch, 0.0)

    def row(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, oc, od, oh = index
        g = oc // p["OCG"]
        _rowwise_row(e, p, cap, cap["xs"] + (n * p["C"] + g * p["CG"]) * plane, n, oc, od, oh)

    # threads over batch, output channels and output rows
    parallel_for(e, p["THREADS"], [p["N"], p["OC"], p["OD"], p["OH"]], ["n", "oc", "od", "oh"],
                 {**captures, "xs": xs}, row, "rows")


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


# -- pixels: output pixels along W in vectors, output channels broadcast ------------------------

def _pixel_tile(e: Emitter, k: Kernel, rows: int, lanes: int) -> ir.Function:
    """void tile(xt, wt, bt, yt, oc_valid): MR output channels x `rows` vectors of `lanes` pixels
    (lanes 1: scalars), as pixel_tile in templates/conv.c.j2."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.tile{rows}x{lanes}", ("xt", "wt", "bt", "st", "yt"))
    xt, wt, bt, st, yt = (te.arg_ptr(i) for i in range(5))
    mr = p["MR"]
    zero = te.zeros(lanes) if lanes > 1 else te.f32(0.0)
    acc = [[te.var(zero, f"acc{i}_{r}") for r in range(rows)] for i in range(mr)]
    with te.loop(p["CG"], name="c") as c, te.loop(p["KD"], name="kd") as kd, te.loop(p["KH"], name="kh") as kh:
        xk = xt + ((c * p["XD"] + kd * p["DD"]) * p["XH"] + kh * p["DH"]) * p["XW"]
        wk = wt + ((c * p["KD"] + kd) * p["KH"] + kh) * (p["KW"] * mr)
        with te.loop(p["KW"], name="kw") as kw:
            xv = [xk.load_vector(kw * p["DW"] + r * lanes, lanes) if lanes > 1 else xk[kw * p["DW"] + r]
                  for r in range(rows)]
            for i in range(mr):  # unrolled: the accumulators stay in registers
                wv = wk[kw * mr + i]
                wv = te.splat(wv, lanes) if lanes > 1 else wv
                for r in range(rows):
                    acc[i][r].set(te.fma(wv, xv[r], acc[i][r].get()))
    _store_pixels(te, p, rows, lanes, acc, bt, st, yt, te.arg_index(5))
    te.ret()
    return fn


def _store_pixels(e: Emitter, p: dict, rows: int, lanes: int, acc: list[list], bt: Ptr, st: Ptr, yt: Ptr,
                  oc_valid: Index) -> None:
    """Epilogue: bias, contiguous stores into each channel's plane, then the skip (st, a residual conv's)
    and the activation in place."""
    out_plane = p["OD"] * p["OH"] * p["OW"]
    for i in range(p["MR"]):
        with e.if_then(e.icmp("<", i, oc_valid)):  # rows past oc_valid are the last block's zero padding
            bias = bt[i] if p["HAS_BIAS"] else e.f32(0.0)
            bias = e.splat(bias, lanes) if lanes > 1 else bias
            yp = yt + i * out_plane
            for r in range(rows):
                value = e.b.fadd(acc[i][r].get(), bias)
                e.b.store(value, (yp + r * lanes).value, align=4)
            if p["activation"] is not None or p["RESIDUAL"]:
                sp = st + i * out_plane if p["RESIDUAL"] else None
                with e.loop(rows * lanes, name="t") as t:
                    yp[t] = finish(e, p, yp[t], sp, t)


def input_and_channel_weights(e: Emitter, p: dict, args: dict[str, Ptr], scratch: Ptr) -> tuple[Ptr, Ptr]:
    """The (padded) input and the weights packed by single channels, [G][OCB][CG][KK][MR] (packed here from
    run-time weights, or at compile time): the pixels and narrow paths' operands."""
    xs = pad_input(e, p, args["x"], scratch, 0.0)
    if not p["PACK_AT_RUNTIME"]:
        return xs, args["w"]
    wp = scratch + p["WPACK_OFFSET"]
    pack_weights(e, {**p, "OCV": 1, "VW": p["MR"]}, args["w"], wp)
    return xs, wp


def conv_pixels(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    tiles = {(p["NV"], p["VW"]): _pixel_tile(e, k, p["NV"], p["VW"])}
    for rows, lanes, _ in p["TAIL"]:
        tiles[(rows, lanes)] = _pixel_tile(e, k, rows, lanes)
    xs, wp = input_and_channel_weights(e, p, args, scratch)
    mr, kk_count, tile_px = p["MR"], p["KD"] * p["KH"] * p["KW"], p["NV"] * p["VW"]
    full = p["OW"] // tile_px

    def chunk(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        named = dict(zip(names, index))
        n, g, od, oh, q = (named[i] for i in ("n", "g", "od", "oh", "q"))
        xrow = cap["xs"] + (((n * p["C"] + g * p["CG"]) * p["XD"] + od * p["SD"]) * p["XH"] + oh * p["SH"]) * p["XW"]
        row_at = (((n * p["OC"] + g * p["OCG"]) * p["OD"] + od) * p["OH"] + oh) * p["OW"]
        yrow, srow = cap["y"] + row_at, cap["r"] + row_at if p["RESIDUAL"] else None

        def run(e: Emitter, ob: Index, key: tuple[int, int], offset: IntLike) -> None:
            wt = cap["wp"] + (g * p["OCB"] + ob) * (p["CG"] * kk_count * mr)
            bt = cap["b"] + (g * p["OCG"] + ob * mr) if p["HAS_BIAS"] else Ptr(e, ir.Constant(PTR, None))
            at = ob * (mr * p["OD"] * p["OH"] * p["OW"]) + offset
            st = srow + at if srow else Ptr(e, ir.Constant(PTR, None))   # the skip: the output's layout
            e.b.call(tiles[key], [(xrow + offset).value, wt.value, bt.value, st.value, (yrow + at).value,
                                  e.int_value(e.imin(p["OCG"] - ob * mr, mr))])

        def blocks(e: Emitter, body) -> None:
            if p["BLOCKS_INNER"]:
                with e.loop(p["OCB"], name="ob") as ob:
                    body(ob)
            else:
                body(named["ob"])

        with e.loop(e.imin((q + 1) * p["TPC"], full), start=q * p["TPC"], name="t") as t:
            blocks(e, lambda ob: run(e, ob, (p["NV"], p["VW"]), t * tile_px))
        if p["TAIL"]:  # the last chunk ends the row with the tail tiles
            with e.if_then(e.icmp("==", q, p["CHUNKS"] - 1)):
                blocks(e, lambda ob: [run(e, ob, (rows, lanes), offset) for rows, lanes, offset in p["TAIL"]])

    captures: dict[str, Capture] = {"xs": xs, "wp": wp, "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    if p["RESIDUAL"]:
        captures["r"] = args["r"]
    # threads over batch, groups, output rows and chunks of TPC tiles; channel blocks inside each tile
    # (BLOCKS_INNER: its input serves every block) or outermost (a block's weights serve every row)
    names = ["n", "g", "od", "oh", "q"] if p["BLOCKS_INNER"] else ["n", "g", "ob", "od", "oh", "q"]
    extents = {"n": p["N"], "g": p["G"], "ob": p["OCB"], "od": p["OD"], "oh": p["OH"], "q": p["CHUNKS"]}
    parallel_for(e, p["THREADS"], [extents[i] for i in names], names, captures, chunk, "rows")


# -- depthwise: a plane's output pixels in vectors over whole rows, the input in stride phases ----------------

def _depthwise_tile(e: Emitter, k: Kernel, vectors: int) -> ir.Function:
    """void tile(xt, wt, qt, _): CT channels x `vectors` vectors of VW band positions, as depthwise_tile in
    templates/conv.c.j2: every tap adds its weight times vectors read at its offset in the channel's phases;
    taps unrolled up to 64 (their offsets fold into the loads), else a loop over the offset table."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.tile{vectors}", ("xt", "wt", "qt"))
    xt, wt, qt = (te.arg_ptr(i) for i in range(3))
    vw, ct, kk_count = p["VW"], p["CT"], p["KH"] * p["KW"]
    acc = [[te.var(te.zeros(vw), f"acc{c}_{r}") for r in range(vectors)] for c in range(ct)]

    def tap(t: IntLike, offset: IntLike) -> None:
        for c in range(ct):
            wv = te.splat(wt[t + c * kk_count], vw)
            xk = xt + (offset + c * p["PSET"])
            for r in range(vectors):
                acc[c][r].set(te.fma(wv, xk.load_vector(r * vw, vw), acc[c][r].get()))
    if kk_count <= 64:
        for t, offset in enumerate(p["TAPS"]):
            tap(t, offset)
    else:
        taps = Ptr(te, te.constant_table(f"{k.fn}.taps{vectors}", I64, p["TAPS"]), I64)
        with te.loop(kk_count, name="t") as t:
            tap(t, Index(te, taps[t]))
    for c in range(ct):
        for r in range(vectors):
            te.b.store(acc[c][r].get(), (qt + (c * p["QSET"] + r * vw)).value, align=4)
    te.ret()
    return fn


def _depthwise_stacked_tile(e: Emitter, k: Kernel, tile_rows: int, vectors: int) -> ir.Function:
    """void tile(xt, wt, qt, _): `tile_rows` output rows x `vectors` vectors of a row, as depthwise_stacked_tile
    in templates/conv.c.j2: column by column (COLUMNS), the column's weights splat once, each input row it
    reads loaded once for the taps of every output row of the tile that reads it."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.tile{tile_rows}x{vectors}", ("xt", "wt", "qt"))
    xt, wt, qt = (te.arg_ptr(i) for i in range(3))
    vw, pitch = p["VW"], p["PWW"]
    acc = [[te.var(te.zeros(vw), f"acc{rr}_{r}") for r in range(vectors)] for rr in range(tile_rows)]
    for offset, members in p["COLUMNS"]:
        weights = [te.splat(wt[t], vw) for t, _ in members]
        for j in range(tile_rows + max(dh for _, dh in members)):
            xv = [xt.load_vector(offset + j * pitch + r * vw, vw) for r in range(vectors)]
            for wv, (_, dh) in zip(weights, members):
                if 0 <= j - dh < tile_rows:
                    for r in range(vectors):
                        acc[j - dh][r].set(te.fma(wv, xv[r], acc[j - dh][r].get()))
    for rr in range(tile_rows):
        for r in range(vectors):
            te.b.store(acc[rr][r].get(), (qt + (rr * p["QPITCH"] + r * vw)).value, align=4)
    te.ret()
    return fn


def _fill_phases(e: Emitter, p: dict, dst: Ptr, src: Ptr) -> None:
    """Copy input plane src ([IH][IW]) into its stride phases at dst ([SH][SW][PHH][PWW], zero outside the
    input), as fill_phases in templates/conv.c.j2 (FILL_TOGETHER: a row's column phases in one loop over its
    columns, an interleaved group of loads), then zero the slack the last vectors read."""
    for a in range(p["SH"]):
        for phases in [list(range(p["SW"]))] if p["FILL_TOGETHER"] else [[b] for b in range(p["SW"])]:
            _fill_phase_rows(e, p, dst, src, a, phases)
    fill_row(e, dst, p["PHASES_END"], p["PSET"], 0.0)


def _fill_phase_rows(e: Emitter, p: dict, dst: Ptr, src: Ptr, a: int, phases: list[int]) -> None:
    """Row phase a's rows of the column phases `phases`: their columns common to all in one loop over j."""
    top, count, first_row = p["ROW_PHASES"][a]
    cols = [p["COL_PHASES"][b] for b in phases]
    common = min(copied for _, copied, _ in cols) if len(phases) > 1 else 0
    with e.loop(p["PHH"], name="i") as i:
        rows = [dst + ((a * p["SW"] + b) * p["PP"] + i * p["PWW"]) for b in phases]
        inside = e.all_of([e.icmp(">=", i, top), e.icmp("<", i, top + count)])
        with e.if_else(inside) as (then, otherwise):
            with then:
                src_row = src + ((i - top) * p["SH"] + first_row) * p["IW"]
                for row, (left, _, _) in zip(rows, cols):
                    fill_row(e, row, 0, left, 0.0)
                if common:
                    with e.loop(common, name="j") as j:
                        for row, (left, _, first_col) in zip(rows, cols):
                            row[j + left] = src_row[j * p["SW"] + first_col]
                for row, (left, copied, first_col) in zip(rows, cols):
                    if p["SW"] == 1:
                        e.memcpy(row + left, src_row + first_col, 4 * copied)
                    elif copied > common:
                        with e.loop(copied, start=common, name="j") as j:
                            row[j + left] = src_row[j * p["SW"] + first_col]
                    fill_row(e, row, left + copied, p["PWW"], 0.0)
            with otherwise:
                for row in rows:
                    fill_row(e, row, 0, p["PWW"], 0.0)


def conv_depthwise(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    """One input plane per group: threads over (batch, blocks of CT groups); a thread fills its phases,
    then per band of output rows runs the register tiles into its band buffer and stores the rows."""
    p = k.params
    tiles = {(rows, size): _depthwise_stacked_tile(e, k, rows, size) if p["STACKED"] else _depthwise_tile(e, k, size)
             for rows, size in p["TILES"]}
    vw, ct, kk_count = p["VW"], p["CT"], p["KH"] * p["KW"]
    whole = p["activation"] is not None and not p["RESIDUAL"]

    def block(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, gb = index
        xph = cap["scratch"] + thread_number(e, p["THREADS"]) * (ct * (p["PSET"] + p["QSET"]))
        qbuf = xph + ct * p["PSET"]
        with e.loop(ct, name="c") as c:
            _fill_phases(e, p, xph + c * p["PSET"], cap["x"] + (n * p["C"] + gb * ct + c) * (p["IH"] * p["IW"]))
        with e.loop(p["OCG"], name="t") as t:
            oc0 = gb * (ct * p["OCG"]) + t
            wt = cap["w"] + oc0 * kk_count
            for first, count, rows, size, full, rest, floats in p["BANDS"]:
                tile_rows = rows if p["STACKED"] else 0
                with e.loop(first + count, start=first, name="band") as band:
                    q0 = band * (p["RB"] * p["PWW"])
                    with e.loop(full, name="tt") as tt:
                        e.b.call(tiles[tile_rows, size], [(xph + q0 + tt * (size * vw)).value, wt.value,
                                                          (qbuf + tt * (size * vw)).value, e.int_value(0)])
                    if rest:
                        e.b.call(tiles[tile_rows, rest], [(xph + q0 + full * size * vw).value, wt.value,
                                                          (qbuf + full * size * vw).value, e.int_value(0)])
                    _depthwise_epilogue(e, p, cap, qbuf, n, oc0, band, rows, floats, whole)

    captures: dict[str, Capture] = {"x": args["x"], "w": args["w"], "y": args["y"], "scratch": scratch}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    if p["RESIDUAL"]:
        captures["r"] = args["r"]
    parallel_for(e, p["THREADS"], [p["N"], p["G"] // ct], ["n", "gb"], captures, block, "planes")


def _depthwise_epilogue(e: Emitter, p: dict, cap: dict[str, Capture], qbuf: Ptr, n: Index, oc0: Index,
                        band: Index, rows: int, floats: int, whole: bool) -> None:
    """Each row's pixels out of the band buffer: with an activation and no skip, bias and activation over
    the band's whole vectors first, then plain copies; else bias, skip and activation on the way out."""
    with e.loop(p["CT"], name="c") as c:
        oc = oc0 + c
        bias = cap["b"][oc] if p["HAS_BIAS"] else e.f32(0.0)
        qc = qbuf + c * p["QSET"]
        if whole:
            def activate(i: Index) -> None:
                qc[i] = activation.apply(e, p["activation"], e.b.fadd(qc[i], bias))
            e.vector_row(floats, p["VW"], activate)
        with e.loop(rows, name="rr") as rr:
            at = ((n * p["OC"] + oc) * p["OH"] + band * p["RB"] + rr) * p["OW"]
            qrow, yrow = qc + rr * p["QPITCH"], cap["y"] + at
            srow = cap["r"] + at if p["RESIDUAL"] else None   # the skip has the output's layout

            def store(i: Index) -> None:
                yrow[i] = finish(e, p, e.b.fadd(qrow[i], bias), srow, i)
            if whole:
                e.memcpy(yrow, qrow, 4 * p["OW"])
            else:
                e.vector_row(p["OW"], p["VW"], store)

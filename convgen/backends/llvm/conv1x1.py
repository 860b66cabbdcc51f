"""1x1 convolution as a matrix product per sample, Y[OC][P] = W[OC][C] x X[C][P] (a strided layer's
pixels gathered by the packing), as templates/conv1x1.c.j2: threads over (sample, block of NC pixels);
per K block of KC input channels the thread runs, tile by tile, every block of MR output channels over
the tile's packed panel ([KC][tile width]): at stride 1 (PACK_FIRST) the first block's tile packs it from
the input rows as it computes and prefetches the next tile's rows, a strided layer gathers every panel
first; the first K block starts from the bias, the ones after it add to the output rows, the last adds
the skip and the activation.  Weights arrive packed at compile time: [KB][OCB][KC][MR] (the last K block kc), CV x VW zeros after."""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from ...lower import Kernel
from .conv import finish
from .emitter import I32, I64, PTR, VOID, Emitter, Index, IntLike, Ptr
from .parallel import Capture, parallel_for, thread_number

POINTERS = ("xp", "wt", "bt", "st", "yt")
PACK_POINTERS = ("xs", "pf")   # the pack variant's input rows and the rows it prefetches, before POINTERS


def _tile_function(e: Emitter, name: str, pack: bool) -> tuple[ir.Function, Emitter]:
    """An always-inline `void tile([xs, pf,] xp, wt, bt, st, yt, kc, kb, oc_valid)` with noalias pointers."""
    pointers = PACK_POINTERS * pack + POINTERS
    fn = ir.Function(e.module, ir.FunctionType(VOID, [PTR] * len(pointers) + [I64] * 3), name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    for arg, arg_name in zip(fn.args, pointers + ("kc", "kb", "oc_valid")):
        arg.name = arg_name
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    return fn, e.sibling(fn)


def _gemm_tile(e: Emitter, k: Kernel, rows: int, lanes: int, pack: bool = False) -> ir.Function:
    """The register tile: MR output channels x `rows` vectors of `lanes` pixels (lanes 1: scalars) over
    the kc input channels of K block kb; xp the tile's packed panel [kc][rows * lanes].  pack: the first
    channel block's tile, which reads its inputs from the input rows xs (a plane apart), writes them to
    the panel for the other blocks and prefetches the next tile's rows (pf) into L2 (as the template)."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.tile{rows}x{lanes}{'.pack' if pack else ''}", pack)
    first_arg = len(PACK_POINTERS) if pack else 0
    xs, pf = (te.arg_ptr(i) for i in range(first_arg)) if pack else (None, None)
    xp, wt, bt, st, yt = (te.arg_ptr(first_arg + i) for i in range(len(POINTERS)))
    kc, kb, oc_valid = (te.arg_index(first_arg + len(POINTERS) + i) for i in range(3))
    in_plane = p["ID"] * p["IH"] * p["IW"]
    mr, plane = p["MR"], p["P"]
    zero = te.zeros(lanes) if lanes > 1 else te.f32(0.0)

    def load(ptr: Ptr, at: IntLike) -> ir.Value:
        return ptr.load_vector(at, lanes) if lanes > 1 else ptr[at]

    # the first K block starts from the bias, the others from the partial sums in the output rows (as the
    # template, which adds no bias to its stores)
    first = te.icmp("==", kb, 0)
    acc = [[te.var(zero, f"acc{j}_{r}") for r in range(rows)] for j in range(mr)]
    for j in range(mr):
        with te.if_then(te.icmp("<", j, oc_valid)), te.if_else(first) as (then, otherwise):
            with then:
                if p["HAS_BIAS"]:
                    bias = te.splat(bt[j], lanes) if lanes > 1 else bt[j]
                    for r in range(rows):
                        acc[j][r].set(bias)
            with otherwise:
                for r in range(rows):
                    acc[j][r].set(load(yt, j * plane + r * lanes))
    # the reduction over the block's input channels: `rows` input vectors, MR weight broadcasts
    with te.loop(kc, name="c") as c:
        if pack:
            xv = [load(xs, c * in_plane + r * lanes) for r in range(rows)]
            for r in range(rows):
                te.b.store(xv[r], (xp + (c * rows + r) * lanes).value, align=4)
                if lanes > 1:
                    te.prefetch(pf + (c * in_plane + r * lanes))
        else:
            xv = [load(xp, (c * rows + r) * lanes) for r in range(rows)]
        for j in range(mr):  # unrolled: the accumulators stay in registers
            wv = wt[c * mr + j]
            wv = te.splat(wv, lanes) if lanes > 1 else wv
            for r in range(rows):
                acc[j][r].set(te.fma(wv, xv[r], acc[j][r].get()))
    def store(j: int, yp: Ptr) -> None:
        for r in range(rows):
            te.b.store(acc[j][r].get(), (yp + r * lanes).value, align=4)
    _store_channels(te, p, (st, yt), kb, oc_valid, rows * lanes, store)
    te.ret()
    return fn


def _store_channels(te: Emitter, p: dict, pointers: tuple[Ptr, Ptr], kb: Index, oc_valid: Index,
                    pixels: int, store: Callable[[int, Ptr], None]) -> None:
    """A tile's stores, channel by channel (`store(j, its output row)`); after the last K block the skip
    and the activation in place over its `pixels` (the bias came in with the first K block)."""
    st, yt = pointers
    last = te.icmp("==", kb, p["KB"] - 1)
    for j in range(p["MR"]):
        with te.if_then(te.icmp("<", j, oc_valid)):  # rows past oc_valid: the last block's zero padding
            yp = yt + j * p["P"]
            store(j, yp)
            if p["activation"] is not None or p["RESIDUAL"]:
                with te.if_then(last):
                    sp = st + j * p["P"] if p["RESIDUAL"] else None
                    with te.loop(pixels, name="t") as t:
                        yp[t] = finish(te, p, yp[t], sp, t)


def _gemm_pixel_tile(e: Emitter, k: Kernel, rows: int, pack: bool = False) -> ir.Function:
    """The plane's last single pixels (as gemm_pixel_tile in the template): `rows` pixels x the MR output
    channels as CV vectors of VW lanes over the kc input channels of K block kb, the packed weights' row
    [c][MR] read as vectors (lanes past MR discarded; the panels end with CV x VW zeros): `rows` x CV FMAs a
    channel instead of MR x rows scalar ones.  pack: reads the input rows xs and writes the panel xp."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.tile{rows}x1{'.pack' if pack else ''}", pack)
    first_arg = len(PACK_POINTERS) if pack else 0
    xs = te.arg_ptr(0) if pack else None
    xp, wt, bt, st, yt = (te.arg_ptr(first_arg + i) for i in range(len(POINTERS)))
    kc, kb, oc_valid = (te.arg_index(first_arg + len(POINTERS) + i) for i in range(3))
    in_plane = p["ID"] * p["IH"] * p["IW"]
    mr, plane, vw, cv = p["MR"], p["P"], p["VW"], p["CV"]
    assert (cv - 1) * vw < mr <= cv * vw
    # the bias (the first K block) or the partial sums of the earlier ones, lane by lane (channels past
    # oc_valid: zero)
    first = te.icmp("==", kb, 0)
    acc = [[te.var(te.zeros(vw), f"acc{r}_{v}") for v in range(cv)] for r in range(rows)]
    for j in range(mr):
        with te.if_then(te.icmp("<", j, oc_valid)):
            start = [te.b.select(first, bt[j] if p["HAS_BIAS"] else te.f32(0.0), yt[j * plane + r]) for r in range(rows)]
            for r in range(rows):
                a = acc[r][j // vw]
                a.set(te.b.insert_element(a.get(), start[r], ir.Constant(I32, j % vw)))
    with te.loop(kc, name="c") as c:
        wv = [wt.load_vector(c * mr + v * vw, vw) for v in range(cv)]
        for r in range(rows):
            if pack:
                xv = xs[c * in_plane + r]
                xp[c * rows + r] = xv
            else:
                xv = xp[c * rows + r]
            xv = te.splat(xv, vw)
            for v in range(cv):
                acc[r][v].set(te.fma(xv, wv[v], acc[r][v].get()))
    def store(j: int, yp: Ptr) -> None:
        for r in range(rows):
            yp[r] = te.b.extract_element(acc[r][j // vw].get(), ir.Constant(I32, j % vw))
    _store_channels(te, p, (st, yt), kb, oc_valid, rows, store)
    te.ret()
    return fn


def source(p: dict, pixel: Index) -> Index:
    """Where output pixel `pixel` (of the OD x OH x OW plane) reads its channel's input plane: itself at
    stride 1, else every SD-th, SH-th, SW-th input (as `source` in the template)."""
    if not p["STRIDED"]:
        return pixel
    return (pixel // (p["OH"] * p["OW"]) * (p["SD"] * p["IH"] * p["IW"]) + pixel // p["OW"] % p["OH"] * (p["SH"] * p["IW"])
            + pixel % p["OW"] * p["SW"])


def _pack(e: Emitter, p: dict, xb: Ptr, xn: Ptr, k0: Index, kc: IntLike, full: IntLike, pb: Index,
          last_block: ir.Value) -> None:
    """Tile t's panel [kc][its width] at xb + kc * (its first pixel in the block), row by row of the input:
    one contiguous read per channel row (a strided layer's pixels gathered)."""
    nr, first = p["NV"] * p["VW"], pb * p["NC"]
    with e.loop(kc, name="c") as c:
        xs = xn + (k0 + c) * (p["ID"] * p["IH"] * p["IW"])
        with e.loop(full, name="t") as t, e.loop(nr, name="q") as q:
            xb[kc * (t * nr) + c * nr + q] = xs[source(p, first + t * nr + q)]
        for rows, lanes, offset in p["TAIL"]:
            with e.if_then(last_block), e.loop(rows * lanes, name="q") as q:
                xb[kc * offset + c * (rows * lanes) + q] = xs[source(p, first + offset + q)]


def conv_gemm(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    nr, mr, plane = p["NV"] * p["VW"], p["MR"], p["P"]
    # the template's _Static_asserts
    assert p["OCB"] * mr >= p["OC"] > (p["OCB"] - 1) * mr and p["KB"] * p["KC"] >= p["C"] > (p["KB"] - 1) * p["KC"]
    assert p["NC"] % nr == 0 and (p["PB"] - 1) * p["NC"] + p["LAST_FULL"] * nr + sum(
        r * l for r, l, _ in p["TAIL"]) == plane
    shapes = [(p["NV"], p["VW"])] + [(rows, lanes) for rows, lanes, _ in p["TAIL"]]
    def make(rows: int, lanes: int, pack: bool = False) -> ir.Function:
        return _gemm_pixel_tile(e, k, rows, pack) if lanes == 1 else _gemm_tile(e, k, rows, lanes, pack)
    tiles = {key: make(*key) for key in shapes}
    packing = {key: make(*key, pack=True) for key in shapes} if p["PACK_FIRST"] else {}
    null = Ptr(e, ir.Constant(PTR, None))
    in_plane = p["ID"] * p["IH"] * p["IW"]

    def block(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, pb = index
        xb = cap["scratch"] + thread_number(e, p["THREADS"]) * (p["KC"] * p["NC"])
        last_block = e.icmp("==", pb, p["PB"] - 1)
        full = e.iselect(last_block, e.const(p["LAST_FULL"]), e.const(p["NC"] // nr))
        xn = cap["x"] + n * (p["C"] * in_plane)   # the sample's input channels
        at = n * (p["OC"] * plane) + pb * p["NC"]
        yn, sn = cap["y"] + at, cap["r"] + at if p["RESIDUAL"] else None   # the skip: the output's layout
        with e.loop(p["KB"], name="kb") as kb:
            k0 = kb * p["KC"]
            kc = e.imin(p["C"] - k0, p["KC"])
            if not p["PACK_FIRST"]:
                _pack(e, p, xb, xn, k0, kc, full, pb, last_block)

            def run(ob: IntLike, key: tuple[int, int], offset: IntLike, pack_from: list[Ptr] = ()) -> None:
                wt = cap["w"] + (k0 * (p["OCB"] * mr) + ob * kc * mr)
                bt = cap["b"] + ob * mr if p["HAS_BIAS"] else null
                out = ob * (mr * plane) + offset
                st = sn + out if sn else null
                fn = packing[key] if pack_from else tiles[key]
                e.b.call(fn, [q.value for q in pack_from] + [
                    (xb + kc * offset).value, wt.value, bt.value, st.value, (yn + out).value,
                    e.int_value(kc), e.int_value(kb), e.int_value(e.imin(p["OC"] - ob * mr, mr))])

            def column(key: tuple[int, int], offset: IntLike) -> None:
                """The tile at pixel `offset` of the block over every channel block; with PACK_FIRST the
                first reads the input rows, packs them and prefetches the next tile's (while in the plane)."""
                if not p["PACK_FIRST"]:
                    with e.loop(p["OCB"], name="ob") as ob:
                        run(ob, key, offset)
                    return
                xs = xn + (k0 * in_plane + pb * p["NC"] + offset)
                ahead = e.icmp("<=", pb * p["NC"] + offset + 2 * nr, plane)
                pf = Ptr(e, e.b.select(ahead, (xs + nr).value, xs.value))
                run(0, key, offset, [xs, pf])
                with e.loop(p["OCB"], start=1, name="ob") as ob:
                    run(ob, key, offset)

            # tiles outer, channel blocks inner: the tile's input panel serves every block from L1
            with e.loop(full, name="t") as t:
                column((p["NV"], p["VW"]), t * nr)
            if p["TAIL"]:  # the plane's last pixels: the tail tiles
                with e.if_then(last_block):
                    for rows, lanes, offset in p["TAIL"]:
                        column((rows, lanes), offset)

    captures: dict[str, Capture] = {"x": args["x"], "w": args["w"], "y": args["y"], "scratch": scratch}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    if p["RESIDUAL"]:
        captures["r"] = args["r"]
    # threads over samples and pixel blocks; each packs its own panels into scratch [THREADS][KC * NC]
    parallel_for(e, p["THREADS"], [p["N"], p["PB"]], ["n", "pb"], captures, block, "blocks")

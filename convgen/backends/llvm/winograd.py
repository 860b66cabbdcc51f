"""Winograd convolution F(M x M, 3 x 3), as templates/winograd.c.j2 (convgen/winograd.py has the math):
a blocked, padded copy of the input; per chunk of TB tiles, the input transform (channels in vectors)
and, per register tile, the batched matrix product over the A x A transform points followed at once by
the output transform, bias and activation.  Each phase is one parallel loop.  The weights arrive
transformed and packed at compile time ([G][OCB][P][CGP][TILE], lower.pack_winograd_weights)."""
from __future__ import annotations

from typing import Callable, Sequence

from llvmlite import ir

from ...lower import Kernel
from .conv import finish, transposed_runs
from .emitter import F32, I64, PTR, VOID, Emitter, Index, IntLike, Ptr, vector
from .parallel import Capture, parallel_for, thread_number


def _combine(e: Emitter, coeffs: Sequence[float], operands: Sequence[ir.Value]) -> ir.Value:
    """sum_i coeffs[i] * operands[i] over the nonzero coefficients, left to right like the template's
    `combine` (whose `a + b * c` gcc contracts into an FMA: llvm.fmuladd here)."""
    total = None
    for c, x in zip(coeffs, operands):
        if c == 0:
            continue
        if abs(c) == 1:
            total = (x if c > 0 else e.b.fneg(x)) if total is None else e.b.fadd(total, x) if c > 0 else e.b.fsub(total, x)
            continue
        scale = ir.Constant(x.type, [ir.Constant(F32, c)] * x.type.count)
        total = e.b.fmul(x, scale) if total is None else e.muladd(x, scale, total)
    if total is None:
        raise ValueError("a transform row of zeros")
    return total


def _transform(e: Emitter, matrix: list[list[float]], d: list[list[ir.Value]]) -> list[list[ir.Value]]:
    """matrix @ d @ matrix^T on a square of vectors: rows first (s = matrix d), then columns."""
    cols = len(d[0])
    s = [[_combine(e, row, [d[k][b] for k in range(len(d))]) for b in range(cols)] for row in matrix]
    return [[_combine(e, row, s[i]) for row in matrix] for i in range(len(s))]


def _tile_function(e: Emitter, name: str) -> tuple[ir.Function, Emitter]:
    """An always-inline `void tile(vt, ut, bt, st, yt, mb, oc_valid, t0)` with noalias pointers."""
    fn = ir.Function(e.module, ir.FunctionType(VOID, [PTR] * 6 + [I64, I64]), name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    for arg, arg_name in zip(fn.args, ("vt", "ut", "bt", "st", "yt", "mb", "oc_valid", "t0")):
        arg.name = arg_name
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    return fn, e.sibling(fn)


def _products(e: Emitter, p: dict, rows: int, vt: Ptr, ut: Ptr, mb: Ptr, st: Ptr, oc_valid: Index,
              t0: Index) -> None:
    """For every transform point: the reduction over input channels, OCV weight vectors x `rows`
    broadcasts of transformed input, into the thread's buffer mb [P][R][TILE]; a residual conv's skip
    prefetched meanwhile, as the template."""
    vw, ocv, cgp, tile = p["VW"], p["OCV"], p["CGP"], p["OCV"] * p["VW"]
    with e.loop(p["A"] * p["A"], name="pt") as pt:
        vp, up = vt + pt * (p["TB"] * cgp), ut + pt * (cgp * tile)
        acc = [[e.var(e.zeros(vw), f"acc{r}_{j}") for j in range(ocv)] for r in range(rows)]
        with e.loop(cgp, name="c") as c:
            wv = [up.load_vector(c * tile + j * vw, vw) for j in range(ocv)]
            for r in range(rows):  # unrolled: the accumulators stay in registers
                xv = e.splat(vp[r * cgp + c], vw)
                for j in range(ocv):
                    acc[r][j].set(e.fma(wv[j], xv, acc[r][j].get()))
        for r in range(rows):
            for j in range(ocv):
                e.b.store(acc[r][j].get(), (mb + (pt * rows + r) * tile + j * vw).value, align=4)
        if p["RESIDUAL"] and p["ROW_RUNS"]:
            # the skip of channels pt * TILE / P.. on its way to L2 while the products run, a line a prefetch
            points = p["A"] * p["A"]
            with e.loop(e.imin((pt + 1) * tile // points, oc_valid), start=pt * tile // points, name="oc") as oc:
                def prefetch(e: Emitter, at: Index, c0: Index, c1: Index, oc: Index = oc) -> None:
                    sp = st + (oc * (p["OH"] * p["OW"]) + at)
                    with e.loop(c1, start=c0, step=16, name="x") as x:
                        e.prefetch(sp + x)
                    e.prefetch(sp + (c1 - 1))
                tile_row_runs(e, p, rows, t0, prefetch)


def tile_row_runs(e: Emitter, p: dict, rows: int, t0: Index,
                  body: Callable[[Emitter, Index, Index, Index], None]) -> None:
    """body(e, at, c0, c1) once per output row of the register tile's `rows` tiles from t0, as tile_row_runs
    in templates/winograd.c.j2: per tile row they cross, each of its rows (at: the row's first pixel in
    the plane) from column c0 to c1 (exclusive), the map's last tiles clipped."""
    m, tw = p["M"], p["TW"]
    with e.loop((t0 + (rows - 1)) // tw + 1, start=t0 // tw, name="th") as th:
        first = e.imax(t0 - th * tw, 0)
        end = e.imin(t0 + rows - th * tw, tw)
        oh0 = th * m
        c0, c1 = first * m, e.imin(end * m, p["OW"])
        with e.loop(e.imin(p["OH"] - oh0, m), name="i") as i:
            body(e, (oh0 + i) * p["OW"], c0, c1)


def store_output(e: Emitter, p: dict, o: list[list[ir.Value]], bt: Ptr, st: Ptr, yt: Ptr, oc_valid: Index,
                 j: Index, t: Index) -> None:
    """Epilogue of one output tile `o` (M x M vectors of VW channels, vector j of the block), as the
    template: bias (and, without a skip, the activation) on the channel vectors; whole tile rows transposed
    in registers, each channel's M pixels one store (transposed_runs); the map's last tile column, clipped,
    lane by lane.  A residual conv's skip and activation come after, over the register tile's rows; without
    ROW_RUNS (lower_winograd) every tile goes lane by lane, the skip and activation with it."""
    m, vw, ow = p["M"], p["VW"], p["OW"]
    oh0, ow0 = t // p["TW"] * m, t % p["TW"] * m
    rows, cols = e.imin(p["OH"] - oh0, m), e.imin(ow - ow0, m)
    # lanes past oc_valid belong to the zero padding of the last channel block
    valid = e.imin(vw, oc_valid - j * vw)
    lanes = Ptr(e, e.alloca(ir.ArrayType(vector(vw), m * m), name="lanes"))
    if p["activation"] is not None and not p["RESIDUAL"]:   # as the template: vectors first, then the lanes
        for i in range(m):
            for jj in range(m):
                e.b.store(o[i][jj], (lanes + (i * m + jj) * vw).value, align=4)
        _activate_lanes(e, p, lanes, bt, j, valid)
        o = [[lanes.load_vector((i * m + jj) * vw, vw) for jj in range(m)] for i in range(m)]
    else:
        bias = e.var(e.zeros(vw), "bias")
        if p["HAS_BIAS"]:
            with e.loop(valid, name="lane") as v:
                bias.set(e.b.insert_element(bias.get(), bt[j * vw + v], v.value))
        o = [[e.b.fadd(o[i][jj], bias.get()) for jj in range(m)] for i in range(m)]
        for i in range(m):
            for jj in range(m):
                e.b.store(o[i][jj], (lanes + (i * m + jj) * vw).value, align=4)
    out_plane = p["OH"] * ow
    first = j * vw

    def lane_by_lane(e: Emitter) -> None:
        with e.loop(valid, name="v") as v:
            at = (first + v) * out_plane + oh0 * ow + ow0
            yp = yt + at
            with e.loop(rows, name="i") as i, e.loop(cols, name="jj") as jj:
                z = lanes[(i * m + jj) * vw + v]
                yp[i * ow + jj] = finish(e, p, z, st + at, i * ow + jj) if p["RESIDUAL"] and not p["ROW_RUNS"] else z

    if not p["ROW_RUNS"]:   # lower_winograd: F(2x2), or M pixels take more lanes than a vector's
        lane_by_lane(e)
        return
    with e.if_else(e.icmp("==", cols, m)) as (whole, clipped):
        with whole:   # whole tile rows (the rows past the map's last: not stored)
            for i in range(m):
                with e.if_then(e.icmp("<", i, rows)):
                    yr = yt + ((oh0 + i) * ow + ow0)
                    transposed_runs(e, vw, o[i], 0, valid, lambda c, yr=yr: yr + (first + c) * out_plane)
        with clipped:   # the map's last tile column
            lane_by_lane(e)


def add_skip(e: Emitter, p: dict, rows: int, st: Ptr, yt: Ptr, oc_valid: Index, t0: Index) -> None:
    """A residual conv's skip and activation over the register tile's finished rows, as the template: per
    channel, per run of its tiles along a tile row, M rows of up to R * M contiguous pixels."""
    out_plane = p["OH"] * p["OW"]
    with e.loop(e.imin(oc_valid, p["OCV"] * p["VW"]), name="oc") as oc:
        def finish_row(e: Emitter, at: Index, c0: Index, c1: Index) -> None:
            yp, sp = yt + (oc * out_plane + at), st + (oc * out_plane + at)
            with e.loop(c1, start=c0, name="x") as x:
                yp[x] = finish(e, p, yp[x], sp, x)
        tile_row_runs(e, p, rows, t0, finish_row)


def _activate_lanes(e: Emitter, p: dict, lanes: Ptr, bt: Ptr, j: Index, valid: IntLike) -> None:
    """The bias and activation on the tile's whole channel vectors in `lanes`, in place, as
    templates/winograd.c.j2: per lane, along a tile's M columns, the activation stayed scalar.  One loop
    over the M x M points (the template nests rows and columns: gcc vectorized neither a/M nor a%M
    indexing), the lanes' loop vectorized VW wide."""
    m, vw = p["M"], p["VW"]
    biases = Ptr(e, e.alloca(ir.ArrayType(F32, vw), name="biases"))
    with e.loop(vw, name="v") as v:
        bias = bt[j * vw + e.imin(v, valid - 1)] if p["HAS_BIAS"] else e.f32(0.0)
        biases[v] = e.b.select(e.icmp("<", v, valid), bias, e.f32(0.0))
    with e.loop(m * m, name="i", unroll=False) as i, e.loop(vw, name="v", vector_width=vw) as v:
        at = i * vw + v
        lanes[at] = finish(e, p, e.b.fadd(lanes[at], biases[v]), None, 0)


def _gemm_tile(e: Emitter, k: Kernel, rows: int) -> ir.Function:
    """One register tile: `rows` tiles x OCV vectors of VW output channels, for every transform point,
    then the output transform A^T m A of each tile and its epilogue."""
    p = k.params
    fn, te = _tile_function(e, f"{k.fn}.tile{rows}")
    vt, ut, bt, st, yt, mb = (te.arg_ptr(i) for i in range(6))
    oc_valid, t0 = te.arg_index(6), te.arg_index(7)
    _products(te, p, rows, vt, ut, mb, st, oc_valid, t0)
    a, vw, tile = p["A"], p["VW"], p["OCV"] * p["VW"]
    with te.loop(rows, name="r") as r, te.loop(p["OCV"], name="j") as j:
        m = [[mb.load_vector(((x * a + y) * rows + r) * tile + j * vw, vw) for y in range(a)] for x in range(a)]
        store_output(te, p, _transform(te, p["AT"], m), bt, st, yt, oc_valid, j, t0 + r)
    if p["RESIDUAL"] and p["ROW_RUNS"]:
        add_skip(te, p, rows, st, yt, oc_valid, t0)
    te.ret()
    return fn


def _zero(e: Emitter, row: Ptr, begin: int, end: int) -> None:
    if end > begin:
        e.memset(row + begin, 0, 4 * (end - begin))


def _pad_blocked(e: Emitter, p: dict, x: Ptr, xb: Ptr) -> None:
    """The input, padded to whole tiles (zeros past it), channels blocked by CV: [N][G][CB][XH][XW][CV];
    zeros around the input only, inside it pixel by pixel with its CV channel lanes together."""
    cv, xh, xw, plane = p["CV"], p["TH"] * p["M"] + 2, p["TW"] * p["M"] + 2, p["IH"] * p["IW"]
    assert p["IH"] + p["PH"] <= xh and p["IW"] + p["PW"] <= xw

    def block(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        n, g, cb = index
        xq = cap["xb"] + ((n * p["G"] + g) * p["CB"] + cb) * (xh * xw * cv)
        xc = cap["x"] + (n * p["C"] + g * p["CG"] + cb * cv) * plane
        lanes = e.imin(p["CG"] - cb * cv, cv)
        _zero(e, xq, 0, p["PH"] * xw * cv)
        _zero(e, xq, (p["PH"] + p["IH"]) * xw * cv, xh * xw * cv)
        with e.loop(p["IH"], name="ih") as ih:
            row = xq + (ih + p["PH"]) * (xw * cv)
            _zero(e, row, 0, p["PW"] * cv)
            _zero(e, row, (p["PW"] + p["IW"]) * cv, xw * cv)
            with e.loop(p["IW"], name="iw") as iw:
                xp, xi = row + (iw + p["PW"]) * cv, xc + ih * p["IW"] + iw
                with e.if_else(e.icmp("==", lanes, cv)) as (whole, last):
                    with whole:
                        for l in range(cv):  # unrolled: one vector store
                            xp[l] = xi[l * plane]
                    with last:   # the last block of a group: zeros past its channels
                        with e.loop(cv, name="l") as l:
                            xp[l] = e.b.select(e.icmp("<", l, lanes), xi[e.imin(l, lanes - 1) * plane], e.f32(0.0))

    parallel_for(e, p["THREADS"], [p["N"], p["G"], p["CB"]], ["n", "g", "cb"], {"x": x, "xb": xb}, block, "pad")


def _input_transform(e: Emitter, p: dict, xb: Ptr, vbuf: Ptr, n: Index, t_first: Index, tiles: IntLike) -> None:
    """BT d BT^T of each tile of the chunk, CV channels at a time, into vbuf [G][P][TB][CGP]."""
    a, cv, cgp, tb = p["A"], p["CV"], p["CGP"], p["TB"]
    xh, xw = p["TH"] * p["M"] + 2, p["TW"] * p["M"] + 2

    def transform(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        g, cb, t = index
        with e.if_then(e.icmp("<", t, cap["tiles"])):
            tt = cap["t_first"] + t
            xt = cap["xb"] + ((cap["n"] * p["G"] + g) * p["CB"] + cb) * (xh * xw * cv) \
                + (tt // p["TW"] * (p["M"] * xw) + tt % p["TW"] * p["M"]) * cv
            d = [[xt.load_vector((y * xw + z) * cv, cv) for z in range(a)] for y in range(a)]
            v = _transform(e, p["BT"], d)
            vt = cap["vbuf"] + g * (a * a * tb * cgp) + t * cgp + cb * cv
            for i in range(a):
                for jj in range(a):
                    e.b.store(v[i][jj], (vt + (i * a + jj) * (tb * cgp)).value, align=4)

    captures: dict[str, Capture] = {"xb": xb, "vbuf": vbuf, "n": n, "t_first": t_first,
                                    "tiles": tiles if isinstance(tiles, Index) else e.const(tiles)}
    parallel_for(e, p["THREADS"], [p["G"], p["CB"], tb], ["g", "cb", "t"], captures, transform, "input")


def conv_winograd(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    m, a, tb, r_tile, tile = p["M"], p["A"], p["TB"], p["R"], p["OCV"] * p["VW"]
    last = p["T"] - (p["NCH"] - 1) * tb
    tail = last % r_tile
    # the template's _Static_asserts
    assert p["TH"] * m >= p["OH"] > (p["TH"] - 1) * m and p["TW"] * m >= p["OW"] > (p["TW"] - 1) * m
    assert p["NCH"] == -(-p["T"] // tb) and (p["NCH"] == 1 or tb % r_tile == 0)
    assert p["OCB"] * tile >= p["OCG"] > (p["OCB"] - 1) * tile and p["CGP"] >= p["CG"] > p["CGP"] - p["CV"]
    tiles_fn = {r_tile: _gemm_tile(e, k, r_tile)}
    if tail:
        tiles_fn[tail] = _gemm_tile(e, k, tail)
    vbuf, mall, xb = scratch, scratch + p["M_OFFSET"], scratch + p["XB_OFFSET"]
    _pad_blocked(e, p, args["x"], xb)
    points = a * a

    def register_tile(e: Emitter, index: list[Index], cap: dict[str, Capture]) -> None:
        g, ob, rt = index
        with e.if_then(e.icmp("<", rt, cap["groups_of_r"])):
            mb = cap["mall"] + thread_number(e, p["THREADS"]) * (points * r_tile * tile)
            vt = cap["vbuf"] + g * (points * tb * p["CGP"]) + rt * (r_tile * p["CGP"])
            ut = cap["w"] + (g * p["OCB"] + ob) * (points * p["CGP"] * tile)
            oc0 = g * p["OCG"] + ob * tile
            oc_valid = e.imin(p["OCG"] - ob * tile, tile)
            bt = cap["b"] + oc0 if p["HAS_BIAS"] else Ptr(e, ir.Constant(PTR, None))
            at = (cap["n"] * p["OC"] + oc0) * (p["OH"] * p["OW"])
            yt = cap["y"] + at
            st = cap["r"] + at if p["RESIDUAL"] else Ptr(e, ir.Constant(PTR, None))  # the skip: the output's layout
            t0 = cap["t_first"] + rt * r_tile
            pointers = [vt.value, ut.value, bt.value, st.value, yt.value, mb.value]
            call = lambda rows: e.b.call(tiles_fn[rows], pointers + [e.int_value(oc_valid), e.int_value(t0)])  # noqa: E731
            if not tail:
                call(r_tile)
            else:   # remainder tile: the last chunk's last `tail` tiles
                with e.if_else(e.icmp(">", rt * r_tile + r_tile, cap["tiles"])) as (then, otherwise):
                    with then:
                        call(tail)
                    with otherwise:
                        call(r_tile)

    with e.nest([p["N"], p["NCH"]], ["n", "q"]) as (n, q):
        t_first = q * tb
        tiles = e.imin(p["T"] - t_first, tb)
        _input_transform(e, p, xb, vbuf, n, t_first, tiles)
        # matrix products per transform point and output transform, by register tile of R tiles
        groups_of_r = (tiles + (r_tile - 1)) // r_tile
        captures: dict[str, Capture] = {
            "vbuf": vbuf, "mall": mall, "w": args["w"], "y": args["y"], "n": n, "t_first": t_first,
            "tiles": tiles if isinstance(tiles, Index) else e.const(tiles),
            "groups_of_r": groups_of_r if isinstance(groups_of_r, Index) else e.const(groups_of_r)}
        if p["HAS_BIAS"]:
            captures["b"] = args["b"]
        if p["RESIDUAL"]:
            captures["r"] = args["r"]
        parallel_for(e, p["THREADS"], [p["G"], p["OCB"], -(-tb // r_tile)], ["g", "ob", "rt"], captures,
                     register_tile, "products")

"""Normalizations, as templates/norm.c.j2: the input as [N][A][R][B], mean and variance over R per
(n, a, b), y = (x - mean) * rstd * scale + bias with the affine entry ((a % G) * R + r) // SPATIAL."""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from .emitter import I32, Emitter, Index, Ptr
from .parallel import Capture, parallel_for


def _rstd(e: Emitter, p: dict, sum_of_squares: ir.Value, width: int = 0) -> ir.Value:
    """1 / sqrt(sum / R + eps), per lane of a vector when width > 0."""
    def const(x: float) -> ir.Value:
        return e.splat(e.f32(x), width) if width else e.f32(x)
    var = e.b.fadd(e.b.fmul(sum_of_squares, const(1.0 / p["R"])), const(p["EPS"]))
    return e.b.fdiv(const(1.0), e.intrinsic("llvm.sqrt", [var]))


def _row_sum(e: Emitter, p: dict, xr: Ptr, mean: ir.Value | None) -> ir.Value:
    """The sum over R contiguous floats (of (v - mean)^2 when mean is given): U vectors of VW partial sums,
    then one vector, then the lanes in order, then single floats (the template's row_sum)."""
    vw, u_count, r = p["VW"], p["U"], p["R"]

    def term(v: ir.Value, width: int) -> ir.Value:
        if mean is None:
            return v
        d = e.b.fsub(v, e.splat(mean, width) if width > 1 else mean)
        return e.b.fmul(d, d)

    parts = [e.var(e.zeros(vw), f"part{u}") for u in range(u_count)]
    whole = r // (u_count * vw) * (u_count * vw)
    with e.loop(whole, step=u_count * vw, name="i") as i:
        for u, part in enumerate(parts):
            part.set(e.b.fadd(part.get(), term(xr.load_vector(i + u * vw, vw), vw)))
    single = whole + (r - whole) // vw * vw
    with e.loop(single, start=whole, step=vw, name="i") as i:
        parts[0].set(e.b.fadd(parts[0].get(), term(xr.load_vector(i, vw), vw)))
    folded = parts[0].get()
    for part in parts[1:]:
        folded = e.b.fadd(folded, part.get())
    # the lanes pairwise (halves, quarters, ...): log2(VW) dependent adds, not VW (short rows)
    lanes = [e.b.extract_element(folded, ir.Constant(I32, lane)) for lane in range(vw)]
    half = vw // 2
    while half >= 1:
        lanes = [e.b.fadd(lanes[lane], lanes[lane + half]) for lane in range(half)] + lanes[half:]
        half //= 2
    total = e.var(lanes[0], "total")
    with e.loop(r, start=single, name="i") as i:
        total.set(e.b.fadd(total.get(), term(xr[i], 1)))
    return total.get()


def _row(e: Emitter, p: dict, row: Index, cap: dict[str, Capture]) -> None:
    """One row of R contiguous elements (B = 1)."""
    r = p["R"]
    xr, yr = cap["x"] + row * r, cap["y"] + row * r
    mean = e.b.fmul(_row_sum(e, p, xr, None), e.f32(1.0 / r))
    rstd = _rstd(e, p, _row_sum(e, p, xr, mean))
    if p["SPATIAL"] == 1:  # an affine entry per element (G sets of R)
        first = (row % p["G"]) * r

        def element(i: Index) -> None:
            v = e.b.fmul(e.b.fsub(xr[i], mean), rstd)
            if p["HAS_SCALE"]:
                v = e.b.fmul(v, cap["scale"][first + i])
            if p["HAS_BIAS"]:
                v = e.b.fadd(v, cap["bias"][first + i])
            yr[i] = v
        e.vector_row(r, p["VW"], element)
        return
    # an affine entry per channel of SPATIAL elements: y = x * k + m
    spatial = p["SPATIAL"]
    first = (row % p["G"]) * (r // spatial)
    with e.loop(r // spatial, name="c") as c:
        k = e.b.fmul(rstd, cap["scale"][first + c]) if p["HAS_SCALE"] else rstd
        shift = cap["bias"][first + c] if p["HAS_BIAS"] else e.f32(0.0)
        m = e.b.fsub(shift, e.b.fmul(mean, k))
        xc, yc = xr + c * spatial, yr + c * spatial
        e.vector_row(spatial, p["VW"], lambda i: yc.__setitem__(i, e.muladd(xc[i], k, m)))


class _Columns:
    """Loads and stores of `width` consecutive floats (a vector, or one float when width is 1)."""

    def __init__(self, e: Emitter, width: int) -> None:
        self.e, self.width = e, width

    def load(self, p: Ptr, index: Index) -> ir.Value:
        return p.load_vector(index, self.width) if self.width > 1 else p[index]

    def store(self, p: Ptr, index: Index, value: ir.Value) -> None:
        if self.width > 1:
            self.e.b.store(value, (p + index).value, align=4)
        else:
            p[index] = value

    def splat(self, x: ir.Value) -> ir.Value:
        return self.e.splat(x, self.width) if self.width > 1 else x

    def zero(self) -> ir.Value:
        return self.e.zeros(self.width) if self.width > 1 else self.e.f32(0.0)


def _column_tile(e: Emitter, p: dict, o: Index, b: Index, count: int, width: int, cap: dict[str, Capture]) -> None:
    """`count` x `width` columns at column b of every reduced row (B apart), as the template's column_tile."""
    cols, r_count, stride = _Columns(e, width), p["R"], p["B"]
    xo, yo = cap["x"] + o * (r_count * stride), cap["y"] + o * (r_count * stride)
    means = [e.var(cols.zero(), f"mean{u}") for u in range(count)]
    with e.loop(r_count, name="r") as r:
        for u, mean in enumerate(means):
            mean.set(e.b.fadd(mean.get(), cols.load(xo, r * stride + b + u * width)))
    mean_values = [e.b.fmul(m.get(), cols.splat(e.f32(1.0 / r_count))) for m in means]
    squares = [e.var(cols.zero(), f"squares{u}") for u in range(count)]
    with e.loop(r_count, name="r") as r:
        for u, square in enumerate(squares):
            d = e.b.fsub(cols.load(xo, r * stride + b + u * width), mean_values[u])
            square.set(e.b.fadd(square.get(), e.b.fmul(d, d)))
    rstds = [_rstd(e, p, s.get(), width if width > 1 else 0) for s in squares]
    with e.loop(r_count, name="r") as r:
        s = cap["scale"][r] if p["HAS_SCALE"] else e.f32(1.0)
        t = cap["bias"][r] if p["HAS_BIAS"] else e.f32(0.0)
        for u in range(count):
            v = cols.load(xo, r * stride + b + u * width)
            scaled = e.b.fmul(e.b.fsub(v, mean_values[u]), e.b.fmul(rstds[u], cols.splat(s)))
            cols.store(yo, r * stride + b + u * width, e.b.fadd(scaled, cols.splat(t)))


def normalize(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    captures: dict[str, Capture] = {"x": args["x"], "y": args["y"]}
    if p["HAS_SCALE"]:
        captures["scale"] = args["scale"]
    if p["HAS_BIAS"]:
        captures["bias"] = args["bias"]
    rows = p["N"] * p["A"]
    if p["B"] == 1:
        parallel_for(e, p["THREADS"], [rows], ["row"], captures, lambda e, index, cap: _row(e, p, index[0], cap), "rows")
        return
    tile = p["U"] * p["VW"]
    # whole tiles of U vectors of columns, shared by the threads; then single vectors and columns
    parallel_for(e, p["THREADS"], [rows, p["TILES"]], ["o", "tile"], captures,
                 lambda e, index, cap: _column_tile(e, p, index[0], index[1] * tile, p["U"], p["VW"], cap), "tiles")
    start = p["TILES"] * tile
    vectors_end = start + (p["B"] - start) // p["VW"] * p["VW"]
    with e.loop(rows, name="o") as o:
        with e.loop(vectors_end, start=start, step=p["VW"], name="b") as b:
            _column_tile(e, p, o, b, 1, p["VW"], captures)
        with e.loop(p["B"], start=vectors_end, name="b") as b:
            _column_tile(e, p, o, b, 1, 1, captures)


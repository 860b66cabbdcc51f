"""Pooling family, as templates/pool.c.j2: max and average windows over a padded copy of the
input (the global pools lower to backends/llvm/reduce.py).  Semantics of torch: -inf padding for
max (NaN wins), the index starts at the window's first tap past the left padding, ceil_mode
windows clipped at the padded edge."""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from .emitter import F32, I1, Emitter, Index, IntLike, Ptr
from .parallel import Capture, parallel_for
from .window import pad_input


def _first_tap(e: Emitter, start: IntLike, dilation: int) -> Index:
    """`while (s < 0) s += dilation;` in closed form: the first tap at or past 0."""
    steps = (e.imax(0 - start, 0) + (dilation - 1)) // dilation
    return start + steps * dilation


def _wins(e: Emitter, v: ir.Value, best: ir.Value) -> ir.Value:
    """A later tap wins only if greater, or NaN: `v > best || v != v` (where an index follows the winner)."""
    return e.b.or_(e.fcmp(">", v, best), e.is_nan(v))


class _Max:
    """Torch's max (NaN wins) as templates/pool.c.j2's max_step and max_result: a later tap joins by a plain
    greater-than select (x86's max) and raises a NaN flag; the result is NaN if the flag is up.  A NaN
    first tap needs no flag: nothing compares greater than it."""

    def __init__(self, e: Emitter, first: ir.Value) -> None:
        self.e, self.best, self.nan = e, e.var(first, "best"), e.var(ir.Constant(I1, 0), "nan")

    def step(self, v: ir.Value) -> None:
        e, best = self.e, self.best.get()
        self.best.set(e.b.select(e.fcmp(">", v, best), v, best))
        self.nan.set(e.b.or_(self.nan.get(), e.is_nan(v)))

    def result(self) -> ir.Value:
        return self.e.b.select(self.nan.get(), self.e.f32(float("nan")), self.best.get())


def _avg_row_count(e: Emitter, p: dict, d0: Index, h0: Index) -> ir.Value | None:
    """The clipped depth x height of the row at (d0, h0), as a float (see templates/pool.c.j2); None when
    the divisor needs none."""
    if p["DIVISOR"] or p["KIND"] != "avg":
        return None
    return e.to_float(_counted_taps(e, p, d0, "D") * _counted_taps(e, p, h0, "H"))


def _counted_taps(e: Emitter, p: dict, s: Index, axis: str) -> IntLike:
    """How many taps along `axis` of the window starting at `s` the divisor counts (templates/pool.c.j2's
    counted_taps): before the end of the padded input, past the left padding unless padding counts."""
    k, d, size = p[f"K{axis}"], p[f"D{axis}"], p[f"I{axis}"]
    end = size + p[f"P{axis}E"] if p["COUNT_INCLUDE_PAD"] else size
    if d == 1:
        return e.imin(s + k, end) - (s if p["COUNT_INCLUDE_PAD"] else e.imax(s, 0))
    last = e.imin((end - 1 - s) // d, k - 1)
    if p["COUNT_INCLUDE_PAD"]:
        return last + 1
    return e.imax(last + 1 - e.iselect(e.icmp(">=", s, 0), 0, (d - 1 - s) // d), 1)   # all taps may miss


def _avg_width(e: Emitter, p: dict, ow: Index) -> ir.Value:
    """The window's width at output column `ow` (its counted taps), as a float."""
    return e.to_float(_counted_taps(e, p, ow * p["SW"] - p["PW"], "W"))


def _avg_divisor(e: Emitter, p: dict, row_count: ir.Value | None, ow: Index, widths: Ptr | None = None) -> ir.Value:
    """The row's count times the width (read from `widths` on the separable path: computed once there, as
    int64 vector multiplies and conversions to float do not vectorize on AVX2)."""
    if p["DIVISOR"]:
        return e.f32(float(p["DIVISOR"]))
    return e.b.fmul(row_count, widths[ow] if widths is not None else _avg_width(e, p, ow))


def _indices(e: Emitter, p: dict, plane: Index, best: Index) -> IntLike:
    """The index in p["INDEX_LAYOUT"] from the row-major index within the plane (see templates/pool.c.j2)."""
    if p["INDEX_LAYOUT"] == "plane":
        return best
    if p["INDEX_LAYOUT"] == "column_major":  # ONNX storage_order 1: the first spatial axis fastest
        best = best // (p["IH"] * p["IW"]) + ((best // p["IW"]) % p["IH"] + (best % p["IW"]) * p["IH"]) * p["ID"]
    return plane * (p["ID"] * p["IH"] * p["IW"]) + best  # ONNX: flattened over N*C*spatial


def _pool_row(e: Emitter, p: dict, index: list[Index], cap: dict[str, Capture]) -> None:
    plane, od, oh = index
    is_max, indices = p["KIND"] == "max", p["INDICES"]
    at_row = ((plane * p["OD"] + od) * p["OH"] + oh) * p["OW"]
    yrow, irow = cap["y"] + at_row, (cap["indices"] + at_row if indices else None)
    d0, h0 = od * p["SD"] - p["PD"], oh * p["SH"] - p["PH"]
    # the padded input under the window of output pixel 0 of this row
    xwin = cap["xs"] + ((plane * p["XD"] + od * p["SD"]) * p["XH"] + oh * p["SH"]) * p["XW"]
    if indices:  # torch's starting index: the window's first tap past the left padding
        ds, hs = _first_tap(e, d0, p["DD"]), _first_tap(e, h0, p["DH"])
    row_count = _avg_row_count(e, p, d0, h0)

    def pixel(ow: Index) -> None:
        xo = xwin + ow * p["SW"]
        window_max = _Max(e, e.f32(float("-inf"))) if is_max and not indices else None
        acc = None if window_max else e.var(e.f32(float("-inf") if is_max else 0.0), "best" if is_max else "sum")
        if indices:
            ws = _first_tap(e, ow * p["SW"] - p["PW"], p["DW"])
            best_index = e.var(e.int_value((ds * p["IH"] + hs) * p["IW"] + ws), "best_index")
        # the window's taps: compile-time trip counts, unrolled by the optimizer
        with e.nest([p["KD"], p["KH"], p["KW"]], ["kd", "kh", "kw"]) as (kd, kh, kw):
            v = xo[(kd * (p["DD"] * p["XH"]) + kh * p["DH"]) * p["XW"] + kw * p["DW"]]
            if window_max:
                window_max.step(v)
            elif is_max:
                wins = _wins(e, v, acc.get())
                acc.set(e.b.select(wins, v, acc.get()))
                if indices:
                    at = ((d0 + kd * p["DD"]) * p["IH"] + h0 + kh * p["DH"]) * p["IW"] + ow * p["SW"] - p["PW"] \
                        + kw * p["DW"]
                    best_index.set(e.b.select(wins, e.int_value(at), best_index.get()))
            else:
                acc.set(e.b.fadd(acc.get(), v))
        if window_max:
            yrow[ow] = window_max.result()
        elif is_max:
            yrow[ow] = acc.get()
            if indices:
                irow[ow] = e.int_value(_indices(e, p, plane, Index(e, best_index.get())))
        else:
            yrow[ow] = e.b.fdiv(acc.get(), _avg_divisor(e, p, row_count, ow))

    e.vector_row(p["OW"], p["VW"], pixel, name="ow")


def _reduce_taps(e: Emitter, p: dict, taps: list[ir.Value]) -> ir.Value:
    """The max (NaN wins) or the sum of a column's vertical taps."""
    if p["KIND"] == "max":
        window_max = _Max(e, taps[0])
        for v in taps[1:]:
            window_max.step(v)
        return window_max.result()
    total = taps[0]
    for v in taps[1:]:
        total = e.b.fadd(total, v)
    return total


def _separable_rows(e: Emitter, p: dict, index: list[Index], cap: dict[str, Capture]) -> None:
    """Per block of output rows, the (kd, kh) taps over input rows reduce, in one pass, into a column
    buffer over each row's span (contiguous, vectorized; a padding row reads the fill row, padding
    columns keep the fill: no padded copy), then the kw taps of each output pixel reduce from the
    buffer.  A block, not one row: see templates/pool.c.j2 (store forwarding)."""
    plane, od, block = index
    first = block * p["ROWS"]
    count = e.imin(p["OH"] - first, p["ROWS"])
    d0 = od * p["SD"] - p["PD"]
    col = Ptr(e, e.alloca(ir.ArrayType(F32, p["ROWS"] * p["SPAN"]), name="col"))
    fill = e.f32(float("-inf") if p["KIND"] == "max" else 0.0)
    with e.loop(count, name="r") as r:
        h0 = (first + r) * p["SH"] - p["PH"]
        rows = []  # the taps' input rows, indexed by the span's column minus PW
        for kd in range(p["KD"]):
            for kh in range(p["KH"]):
                d, hh = d0 + kd * p["DD"], h0 + kh * p["DH"]
                inside = e.all_of([e.icmp(">=", d, 0), e.icmp("<", d, p["ID"]), e.icmp(">=", hh, 0),
                                   e.icmp("<", hh, p["IH"])])
                xk = cap["x"] + ((plane * p["ID"] + d) * p["IH"] + hh) * p["IW"]
                rows.append(Ptr(e, e.b.select(inside, xk.value, (cap["fill"] + p["PW"]).value)))
        c = col + r * p["SPAN"]
        with e.loop(p["COL_LO"], name="i") as i:
            c[i] = fill
        with e.loop(p["SPAN"], start=p["COL_HI"], name="i") as i:
            c[i] = fill

        def column(i: Index) -> None:
            c[i] = _reduce_taps(e, p, [row[i - p["PW"]] for row in rows])

        e.vector_row(p["COL_HI"], p["VW"], column, start=p["COL_LO"], name="i")
    with e.loop(count, name="r") as r:
        oh = first + r
        h0 = oh * p["SH"] - p["PH"]
        c = col + r * p["SPAN"]
        yrow = cap["y"] + ((plane * p["OD"] + od) * p["OH"] + oh) * p["OW"]
        row_count = _avg_row_count(e, p, d0, h0)

        def pixel(ow: Index) -> None:
            if p["KIND"] == "max":
                window_max = _Max(e, c[ow * p["SW"]])
                with e.loop(p["KW"], start=1, name="kw") as kw:
                    window_max.step(c[ow * p["SW"] + kw * p["DW"]])
                yrow[ow] = window_max.result()
                return
            acc = e.var(c[ow * p["SW"]], "acc")
            with e.loop(p["KW"], start=1, name="kw") as kw:
                acc.set(e.b.fadd(acc.get(), c[ow * p["SW"] + kw * p["DW"]]))
            yrow[ow] = e.b.fdiv(acc.get(), _avg_divisor(e, p, row_count, ow, cap.get("widths")))

        e.vector_row(p["OW"], p["VW"], pixel, name="ow")


def pool(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    if p["SEPARABLE"]:  # reads the input itself; padding rows read a row of the fill, shared by the threads
        fill = Ptr(e, e.alloca(ir.ArrayType(F32, p["SPAN"]), name="fill_row"))
        with e.loop(p["SPAN"], name="i") as i:
            fill[i] = e.f32(float("-inf") if p["KIND"] == "max" else 0.0)
        captures: dict[str, Capture] = {"x": args["x"], "y": args["y"], "fill": fill}
        if p["KIND"] == "avg" and not p["DIVISOR"]:  # each output column's clipped width, shared by the threads
            widths = Ptr(e, e.alloca(ir.ArrayType(F32, p["OW"]), name="widths"))
            with e.loop(p["OW"], name="ow") as ow:
                widths[ow] = _avg_width(e, p, ow)
            captures["widths"] = widths
    else:
        captures = {"xs": pad_input(e, p, args["x"], scratch, float("-inf") if p["KIND"] == "max" else 0.0),
                    "y": args["y"]}
    if p["INDICES"]:
        captures["indices"] = args["indices"]
    # threads over (n, c) planes and output rows (blocks of rows when separable)
    if p["SEPARABLE"]:
        parallel_for(e, p["THREADS"], [p["N"] * p["C"], p["OD"], -(-p["OH"] // p["ROWS"])], ["plane", "od", "block"],
                     captures, lambda e, index, cap: _separable_rows(e, p, index, cap), "rows")
    else:
        parallel_for(e, p["THREADS"], [p["N"] * p["C"], p["OD"], p["OH"]], ["plane", "od", "oh"], captures,
                     lambda e, index, cap: _pool_row(e, p, index, cap), "rows")

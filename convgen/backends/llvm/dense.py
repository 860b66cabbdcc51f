"""Dense family, as templates/dense.c.j2: linear layers (output features in vectors, weights
packed like conv), softmax and concat."""
from __future__ import annotations

from llvmlite import ir

from ...lower import Kernel
from . import activation
from .emitter import Emitter, Index, Ptr, vector
from .parallel import Capture, parallel_for


def _pack_weights(e: Emitter, p: dict, w: Ptr, wp: Ptr) -> None:
    """Pack weights (M, K), or (K, M) when W_KN, -> [OCB][K][TILE], zero past M."""
    tile = p["OCV"] * p["VW"]
    with e.nest([p["OCB"], p["K"], tile], ["ob", "kk", "t"]) as (ob, kk, t):
        m = ob * tile + t
        with e.if_else(e.icmp("<", m, p["M"])) as (then, otherwise):
            with then:
                wp[(ob * p["K"] + kk) * tile + t] = w[kk * p["M"] + m if p["W_KN"] else m * p["K"] + kk]
            with otherwise:
                wp[(ob * p["K"] + kk) * tile + t] = e.f32(0.0)


def _scaled(e: Emitter, factor: float, value):
    """`factor * value`, or the value alone when the factor is 1 (the templates' scaled)."""
    return value if factor == 1 else e.b.fmul(e.f32(factor), value)


def _block(e: Emitter, p: dict, index: list[Index], cap: dict[str, Capture]) -> None:
    """One row x one block of OCV vectors of output features."""
    row, ob = index
    vw, ocv, tile = p["VW"], p["OCV"], p["OCV"] * p["VW"]
    xr, wb = cap["x"] + row * p["X_ROW"], cap["wp"] + ob * (p["K"] * tile)
    acc = [e.var(e.zeros(vw), f"acc{j}") for j in range(ocv)]
    with e.loop(p["K"], name="kk") as kk:
        xv = e.splat(xr[kk * p["X_COL"]], vw)
        for j in range(ocv):
            acc[j].set(e.fma(wb.load_vector(kk * tile + j * vw, vw), xv, acc[j].get()))
    lanes = Ptr(e, e.alloca(ir.ArrayType(vector(vw), ocv), name="lanes"))
    for j in range(ocv):
        e.b.store(acc[j].get(), (lanes + j * vw).value, align=4)
    # one loop over the block's features (past M: the zero padding of the last block), which vectorizes
    with e.loop(e.imin(tile, p["M"] - ob * tile), name="t") as t:
        m = ob * tile + t
        s = _scaled(e, p["ALPHA"], lanes[t])
        if p["HAS_BIAS"]:
            c = cap["b"][row * p["B_ROW"] + m * p["B_COL"]]
            s = e.b.fadd(s, c) if p["BETA"] == 1 else e.muladd(e.f32(p["BETA"]), c, s)
        cap["y"][row * p["M"] + m] = activation.apply(e, p["activation"], s)


def linear(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    if p["PACK_AT_RUNTIME"]:
        wp = scratch
        _pack_weights(e, p, args["w"], wp)
    else:
        wp = args["w"]  # packed at compile time: [OCB][K][TILE]
    captures: dict[str, Capture] = {"x": args["x"], "wp": wp, "y": args["y"]}
    if p["HAS_BIAS"]:
        captures["b"] = args["b"]
    parallel_for(e, p["THREADS"], [p["N"] * p["ROWS"], p["OCB"]], ["row", "ob"], captures,
                 lambda e, index, cap: _block(e, p, index, cap), "blocks")


def softmax(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    axis, inner = p["AXIS"], p["INNER"]
    with e.nest([p["N"] * p["OUTER"], inner], ["o", "i"]) as (o, i):
        xp, yp = args["x"] + o * (axis * inner) + i, args["y"] + o * (axis * inner) + i
        largest = e.var(e.f32(float("-inf")), "largest")
        with e.loop(axis, name="a") as a:
            v = xp[a * inner]
            largest.set(e.b.select(e.fcmp(">", v, largest.get()), v, largest.get()))
        total = e.var(e.f32(0.0), "total")
        with e.loop(axis, name="a") as a:
            yp[a * inner] = e.intrinsic("llvm.exp", [e.b.fsub(xp[a * inner], largest.get())])
            total.set(e.b.fadd(total.get(), yp[a * inner]))
        with e.loop(axis, name="a") as a:
            yp[a * inner] = e.b.fdiv(yp[a * inner], total.get())


def concat(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    with e.loop(p["N"] * p["OUTER"], name="o") as o:
        for j, (chunk, offset) in enumerate(zip(p["CHUNKS"], p["OFFSETS"])):
            e.memcpy(args["y"] + (o * p["TOTAL"] + offset), args[f"x{j}"] + o * chunk, 4 * chunk)

"""Lowering: an optimized Graph -> a LoweredModel of kernels with plain-integer parameters.

Each op family has one lowering function that reads the op's attributes and
types and the schedule's choices, and returns a KernelSpec: which template
macro to render, its parameters (ints, floats, bools), which values it reads
and writes, how much scratch it needs, and any weights packed at compile time.
The planner then places every value: graph inputs and outputs are the caller's
pointers, constants live in the weights blob, intermediates and scratch share
one arena by liveness.  Both backends consume the LoweredModel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import ops, schedule, schedule_gemm, shapes, winograd
from .errors import UnsupportedError
from .ir import Graph, Node, TensorType
from .memory import Interval, align, plan_arena
from .ops.binary import KINDS as BINARY_KINDS
from .ops.dense import normalize_axis
from .target import Target
from .names import fragment, identifier, unique_identifiers


@dataclass(frozen=True)
class Buffer:
    kind: str            # "input" | "output" | "arena" | "weights" | "null"
    offset: int = 0      # input/output position, or byte offset in the arena / weights blob
    dtype: str = "float32"


@dataclass(frozen=True)
class Arg:
    name: str
    buffer: Buffer
    is_output: bool


@dataclass(frozen=True, eq=False)
class Kernel:
    fn: str
    template: str
    layer: str
    op: str
    params: dict
    args: tuple[Arg, ...]
    scratch: Buffer
    scratch_bytes: int

    def arg(self, name: str) -> Arg:
        return next(a for a in self.args if a.name == name)


@dataclass(frozen=True, eq=False)
class KernelSpec:
    template: str
    params: dict
    inputs: list[tuple[str, str | None]]   # (argument name, value read; None for an absent bias)
    outputs: list[tuple[str, str]]
    scratch_bytes: int = 0
    packed: dict = field(default_factory=dict)  # argument name -> array packed at compile time


@dataclass(frozen=True)
class IOSpec:
    name: str
    ident: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True, eq=False)
class LoweredModel:
    prefix: str
    graph_name: str
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    kernels: tuple[Kernel, ...]
    copies: tuple[tuple[Buffer, Buffer, int], ...]   # (destination, source, bytes) after the kernels
    workspace_bytes: int   # per call; with batch None, per sample (a call needs batch x this)
    weights: bytes
    threads: int
    batch: int | None      # None: the batch is a run-time argument, and every kernel loops over it
    vector_bytes: int = 16  # the target's widest SIMD register: kernels with transcendental math ask for it

    @property
    def dynamic_batch(self) -> bool:
        return self.batch is None


@dataclass(frozen=True)
class LowerContext:
    graph: Graph
    target: Target
    threads: int
    dynamic_batch: bool = False
    schedules: dict = field(default_factory=dict)   # conv layer name -> ConvSchedule chosen by tuning
    winograd: bool = True   # 3x3 stride-1 layers may run as Winograd F(m x m, 3 x 3) where the cost model says

    def type(self, value: str) -> TensorType:
        return self.graph.type_of(value)

    def is_constant(self, value: str) -> bool:
        return value in self.graph.constants


LoweringFn = Callable[[Node, LowerContext], KernelSpec | None]
LOWERINGS: dict[str, LoweringFn] = {}


def lowering(op: str):
    def register(fn: LoweringFn) -> LoweringFn:
        if op in LOWERINGS:
            raise ValueError(f"lowering for {op!r} registered twice")
        LOWERINGS[op] = fn
        return fn
    return register


def as_3d(values, fill) -> tuple:
    """1-D and 2-D windows run through the 3-D kernels with leading unit axes."""
    values = tuple(values)
    return (fill,) * (3 - len(values)) + values


def activation_params(act) -> dict | None:
    return None if act is None else {"kind": act.kind, "params": list(act.params)}


def _batch_and_inner(t: TensorType) -> dict:
    """Elementwise kernels loop over N x INNER elements: the batch, and one sample's elements."""
    batch = t.shape[0] if t.ndim else 1
    return dict(N=batch, INNER=t.size // batch)


def _batch_outside(node: Node, ctx: LowerContext, axis: int) -> int:
    """The batch, for a kernel working along `axis`; along the batch axis itself the whole tensor is one
    block (N = 1), which a batch given at call time cannot be."""
    if axis > 0:
        return node.type.shape[0]
    if ctx.dynamic_batch:
        raise UnsupportedError(f"layer {node.name!r} ({node.op}) works along the batch axis; "
                               "compile it with a fixed batch")
    return 1


def _check_runtime_packing(node: Node, ctx: LowerContext, w_value: str) -> None:
    # weights that are inputs are packed per call into scratch of a fixed size, while a run-time batch
    # scales the whole arena; keep that combination out
    if ctx.dynamic_batch and not ctx.is_constant(w_value):
        raise UnsupportedError(f"layer {node.name!r} ({node.op}): batch=None needs constant weights, "
                               f"but {w_value!r} is an input")


def _window_params(x: TensorType, out: TensorType, kernel, stride, dilation, pads) -> dict:
    (ID, IH, IW), (OD, OH, OW) = as_3d(x.shape[2:], 1), as_3d(out.shape[2:], 1)
    (KD, KH, KW), (SD, SH, SW), (DD, DH, DW) = as_3d(kernel, 1), as_3d(stride, 1), as_3d(dilation, 1)
    (PD, PDE), (PH, PHE), (PW, PWE) = as_3d(pads, (0, 0))
    return dict(N=x.shape[0], C=x.shape[1], ID=ID, IH=IH, IW=IW, OD=OD, OH=OH, OW=OW, KD=KD, KH=KH, KW=KW,
                SD=SD, SH=SH, SW=SW, DD=DD, DH=DH, DW=DW, PD=PD, PH=PH, PW=PW, PDE=PDE, PHE=PHE, PWE=PWE)


def _padded_extents(p: dict) -> dict:
    """The input region a window kernel reads: a padded copy when windows reach past the input
    (padding, or a ceil_mode window hanging over the end), else the input itself."""
    extent = {axis: (p[f"O{axis}"] - 1) * p[f"S{axis}"] + (p[f"K{axis}"] - 1) * p[f"D{axis}"] + 1
              for axis in "DHW"}
    padded = any(p[k] for k in ("PD", "PH", "PW")) or any(extent[a] > p[f"I{a}"] for a in "DHW")
    if not padded:
        return dict(PAD_COPY=False, XD=p["ID"], XH=p["IH"], XW=p["IW"])
    return dict(PAD_COPY=True, XD=extent["D"], XH=extent["H"], XW=extent["W"])


def _padded_plane_bytes(p: dict) -> int:
    return p["XD"] * p["XH"] * p["XW"] * 4


def _narrow_read_layout(p: dict, sched: schedule.ConvSchedule, scratch: int) -> int:
    """The narrow path's input strides (channel CS, row RS, kernel column KWS) and, for flat row blocks, the
    copy per kernel column it reads ([N][C][KW][XD][XH][OW] at FLAT_OFFSET): the scratch bytes then used."""
    if sched.flat and (p["SH"] != 1 or p["OH"] % sched.tile_rows):
        raise UnsupportedError(f"flat narrow row blocks need stride 1 down the rows and blocks of rows that divide "
                           f"them: stride {p['SH']}, {p['OH']} rows in blocks of {sched.tile_rows}")
    p["FLAT"] = sched.flat
    if not sched.flat:
        p.update(CS=p["XD"] * p["XH"] * p["XW"], RS=p["XW"], KWS=p["DW"])
        return scratch
    plane = p["XD"] * p["XH"] * p["OW"]
    p.update(CS=p["KW"] * plane, RS=p["OW"], KWS=plane, FLAT_OFFSET=align(scratch) // 4)
    return align(scratch) + p["N"] * p["C"] * p["KW"] * plane * 4


def _pad_scratch_bytes(p: dict) -> int:
    return p["N"] * p["C"] * _padded_plane_bytes(p) if p["PAD_COPY"] else 0


def pack_conv_weights(w: np.ndarray, groups: int, blocks: int, oc_vectors: int, width: int) -> np.ndarray:
    """(OC, C/g, *k) -> [g][block][C/g][kd][kh][kw][oc_vectors][width], zero-filled past OC/g.

    Mirrors the runtime packing loop in templates/conv.c.j2.
    """
    oc, cg = w.shape[:2]
    k = math.prod(w.shape[2:])
    ocg, tile = oc // groups, oc_vectors * width
    padded = np.zeros((groups, blocks * tile, cg, k), np.float32)
    padded[:, :ocg] = w.reshape(groups, ocg, cg, k)
    return np.ascontiguousarray(padded.reshape(groups, blocks, tile, cg, k).transpose(0, 1, 3, 4, 2))


def _flatten_pointwise(p: dict) -> bool:
    """A 1x1 convolution with stride 1 and no padding reads each plane as one long row: view it so."""
    if any(p[k] != 1 for k in ("KD", "KH", "KW", "SD", "SH", "SW")) or any(
            p[k] for k in ("PD", "PH", "PW", "PDE", "PHE", "PWE")):
        return False
    plane = p["ID"] * p["IH"] * p["IW"]
    p.update(ID=1, IH=1, IW=plane, OD=1, OH=1, OW=plane)
    return True


def conv_geometry(node: Node, ctx: LowerContext, gemm: bool = True) -> tuple[dict, schedule.ConvSchedule]:
    """A conv's window parameters and the cost model's schedule for it (gemm=False: not the 1x1 matrix
    product, for tuning's other candidates)."""
    a = node.attrs
    x, w_type = ctx.type(node.inputs[0]), ctx.type(node.inputs[1])
    p = _window_params(x, node.type, a.kernel, a.stride, a.dilation, a.pads)
    pointwise = _flatten_pointwise(p)
    p.update(_padded_extents(p))
    oc, g = node.type.shape[1], a.groups
    p.update(OC=oc, G=g, CG=x.shape[1] // g, OCG=oc // g)
    flops, constant_weights = conv_flops(node, ctx), ctx.is_constant(node.inputs[1])
    sched = schedule.conv_schedule(oc // g, p["OW"], flops, ctx.target, ctx.threads, stride_w=p["SW"],
                                   one_row=pointwise or p["OD"] * p["OH"] == 1,
                                   weight_bytes=w_type.nbytes, kernel_w=p["KW"], out_height=p["OH"])
    if sched.path == "direct" and g == 1 and p["SW"] == 1:   # few channels: pixels in vectors, if they fill more lanes
        sched = schedule.narrow_schedule(oc, p["OW"], p["OH"], flops, ctx.target, ctx.threads, stride_h=p["SH"],
                                         kernel_h=p["KH"]) or sched
    # strided 1x1 layers stay direct unless tuning picks the gather (64 -> 128 56x56 stride 2, Sapphire
    # Rapids, 1 thread: gathered 360 us, direct 88; 256 -> 512 14x14: 95 against 70)
    if gemm and gemm_applies(p, ctx, constant_weights) and p["SD"] * p["SH"] * p["SW"] == 1:
        sched = schedule_gemm.gemm_schedule(oc, flops, ctx.target, ctx.threads)
    if sched.path == "rowwise" and depthwise_applies(p, ctx.target):
        sched = schedule.depthwise_schedule(g, p["OCG"], p["OH"], p["OW"], _phase_axes(p)[1].extent, flops,
                                            ctx.target, ctx.threads, _column_taps(p))
    if ctx.winograd and winograd_applies(p, constant_weights):
        m = schedule.choose_winograd(p["N"], p["CG"], p["OCG"], g, p["OH"], p["OW"], flops, ctx.target)
        if m:
            sched = schedule.winograd_schedule(m, p["CG"], p["OCG"], g, p["OH"], p["OW"], flops, ctx.target,
                                               ctx.threads)
    return p, sched


def conv_flops(node: Node, ctx: LowerContext) -> int:
    """The conv's multiply-adds without its bias and skip (the op's FLOP rule on data and weights alone):
    what the schedules' thread counts and cost models weigh."""
    return ops.get("conv").flops(node.attrs, [ctx.type(node.inputs[0]), ctx.type(node.inputs[1])], node.types)


def gemm_applies(p: dict, ctx: LowerContext, constant_weights: bool) -> bool:
    """A 1x1 unpadded layer of one group runs as a matrix product (lower_conv1x1) where its output plane
    holds two pixel vectors and its weights can be packed at compile time; a stride gathers its pixels."""
    pointwise = p["KD"] * p["KH"] * p["KW"] == 1 and not p["PAD_COPY"]
    return (constant_weights and pointwise and p["G"] == 1
            and schedule_gemm.applies(p["OD"] * p["OH"] * p["OW"], p["OC"], ctx.target))


def winograd_applies(p: dict, constant_weights: bool) -> bool:
    """Winograd F(m x m, 3 x 3) computes 2-D 3x3 stride-1 undilated layers whose weights it can
    transform at compile time."""
    return (constant_weights and p["KD"] == 1 and p["ID"] == 1 and (p["KH"], p["KW"]) == (3, 3)
            and (p["SH"], p["SW"], p["DH"], p["DW"]) == (1, 1, 1, 1))


def pack_winograd_weights(w: np.ndarray, m: int, groups: int, blocks: int, tile: int, cgp: int) -> np.ndarray:
    """(OC, CG, 3, 3) -> G g G^T in float64, cast once, as [G][OCB][P][CGP][TILE], zero past OCG and CG
    (the layout templates/winograd.c.j2 reads)."""
    u = winograd.transform_weights(w, m)                  # (alpha, alpha, OC, CG)
    oc, cg = w.shape[:2]
    points, ocg = u.shape[0] * u.shape[1], oc // groups
    u = u.reshape(points, groups, ocg, cg)
    padded = np.zeros((points, groups, blocks * tile, cgp))
    padded[:, :, :ocg, :cg] = u
    packed = padded.reshape(points, groups, blocks, tile, cgp).transpose(1, 2, 0, 4, 3)
    return np.ascontiguousarray(packed, np.float32)


def lower_winograd(node: Node, ctx: LowerContext, p: dict, sched: schedule.ConvSchedule) -> KernelSpec:
    """Scratch: one chunk's transformed input [G][P][TB][CGP], a [P][R][TILE] product buffer per thread,
    then the padded, channel-blocked input [N][G][CB][XH][XW][CV] (last: with a run-time batch it grows)."""
    m, t = sched.winograd_m, winograd.transforms(sched.winograd_m)
    cv = schedule._vector_width_for(p["CG"], ctx.target)
    tile = sched.oc_vectors * sched.vector_width
    th, tw = math.ceil(p["OH"] / m), math.ceil(p["OW"] / m)
    p.update(M=m, A=t.alpha, AT=t.AT.tolist(), BT=t.BT.tolist(), TH=th, TW=tw, T=th * tw,
             TB=sched.chunk_tiles, NCH=math.ceil(th * tw / sched.chunk_tiles), R=sched.row_tile,
             VW=sched.vector_width, OCV=sched.oc_vectors, OCB=math.ceil(p["OCG"] / tile),
             CV=cv, CB=math.ceil(p["CG"] / cv), CGP=math.ceil(p["CG"] / cv) * cv,
             # a tile row's M channel vectors transpose in registers (zero vectors up to a power of two)
             # where that many lanes fit a vector (not F(6x6) on 4-lane vectors), and the skip is added over
             # the finished rows after; not F(2x2), whose 2-pixel runs were slower in ResNet-18 (Zen 4, 1
             # thread, perf samples against unchanged layers: 256x14 +skip +13 %, without +0-4 %; F(4x4)
             # 64x56 and 128x28 +skip -7 to -12 %)
             ROW_RUNS=m >= 4 and 1 << (m - 1).bit_length() <= sched.vector_width)
    points = t.alpha ** 2
    v_floats = p["G"] * points * p["TB"] * p["CGP"]
    m_floats = sched.threads * points * p["R"] * tile
    p.update(M_OFFSET=align(4 * v_floats) // 4, XB_OFFSET=align(align(4 * v_floats) + 4 * m_floats) // 4)
    xb_bytes = p["N"] * p["G"] * p["CB"] * (th * m + 2) * (tw * m + 2) * cv * 4
    packed = {"w": pack_winograd_weights(ctx.graph.constants[node.inputs[1]], m, p["G"], p["OCB"], tile, p["CGP"])}
    return KernelSpec("conv_winograd", p, conv_operands(node, node.inputs[1]), [("y", node.output)],
                      4 * p["XB_OFFSET"] + xb_bytes, packed)


def depthwise_applies(p: dict, target: Target) -> bool:
    """The depthwise kernel takes 2-D layers of one input plane per group (1-D and 3-D ones stay rowwise)
    with short rows (schedule.DEPTHWISE_MAX_ROW, longer where strided), or rows of up to
    schedule.DEPTHWISE_STACKED_MAX_ROW where its stacked tiles fit the registers."""
    if not (p["CG"] == 1 and p["KD"] == 1 and p["XD"] == 1 and p["OH"] > 1):
        return False
    if p["OW"] <= schedule.DEPTHWISE_MAX_ROW * (2 if p["SW"] > 1 else 1):
        return True
    return (p["OW"] <= schedule.DEPTHWISE_STACKED_MAX_ROW
            and schedule.stacked_tile(p["OH"], p["OW"], _column_taps(p), target) is not None)


def _phase_axes(p: dict) -> tuple[shapes.PhaseAxis, shapes.PhaseAxis]:
    return (shapes.phase_axis(p["XH"], p["SH"], p["PH"], p["IH"]), shapes.phase_axis(p["XW"], p["SW"], p["PW"], p["IW"]))


def _depthwise_columns(p: dict) -> list[tuple[int, list[tuple[int, int]]]]:
    """The window's taps by the column of the phases they read: (the column's float offset in a channel's
    phases, [(tap kh * KW + kw, its row offset in the phase)]), columns in offset order."""
    rows_axis, cols_axis = _phase_axes(p)
    plane = rows_axis.extent * cols_axis.extent
    columns: dict[int, list[tuple[int, int]]] = {}
    for kh in range(p["KH"]):
        a, dh = rows_axis.tap(kh, p["SH"], p["DH"])
        for kw in range(p["KW"]):
            b, dw = cols_axis.tap(kw, p["SW"], p["DW"])
            columns.setdefault((a * p["SW"] + b) * plane + dw, []).append((kh * p["KW"] + kw, dh))
    return sorted(columns.items())


def _column_taps(p: dict) -> schedule.ColumnTaps:
    columns = _depthwise_columns(p)
    return schedule.ColumnTaps(len(columns), max(len(m) for _, m in columns),
                               max(dh for _, m in columns for _, dh in m), p["KH"] * p["KW"])


def lower_depthwise(node: Node, p: dict, sched: schedule.ConvSchedule) -> KernelSpec:
    """The input plane of each group split into its stride phases, padded (shapes.PhaseAxis), per thread in
    scratch, then [CT channels' phases + slack][CT channels' band buffers]; TAPS: each tap's float offset in
    a channel's phases; BANDS: [first band, bands, rows, vectors per tile, full tiles, remainder vectors,
    band buffer floats to finish]; TILES: each tile's [rows, vectors] (flat tiles: rows 0).  Stacked tiles
    (sched.stacked): COLUMNS ([offset, [[tap, row offset], ...]], _depthwise_columns), band buffer rows
    QPITCH apart (a row's vectors); flat ones: vectors along the band, its rows PWW apart as in the phases."""
    rows_axis, cols_axis = _phase_axes(p)
    pitch, vw = cols_axis.extent, sched.vector_width
    plane = rows_axis.extent * pitch
    taps = []
    for kh in range(p["KH"]):
        a, dh = rows_axis.tap(kh, p["SH"], p["DH"])
        for kw in range(p["KW"]):
            b, dw = cols_axis.tap(kw, p["SW"], p["DW"])
            taps.append((a * p["SW"] + b) * plane + dh * pitch + dw)
    columns = _depthwise_columns(p)
    reach = max(dh for _, members in columns for _, dh in members)
    band_rows = sched.tile_rows
    full, last = divmod(p["OH"], band_rows)
    row_vectors = math.ceil(p["OW"] / vw)
    qpitch = row_vectors * vw if sched.stacked else pitch
    bands, tiles, reads_end, band_floats = [], set(), 0, 0
    for first, count, rows in [(0, full, band_rows), (full, 1, last)]:
        if not count or not rows:
            continue
        band_start = (first + count - 1) * band_rows * pitch
        if sched.stacked:
            split = schedule.depthwise_tiles(row_vectors, sched.row_tile)
            floats = rows * qpitch
            reads_end = max(reads_end, band_start + columns[-1][0] + (rows - 1 + reach) * pitch + row_vectors * vw)
        else:
            vectors = math.ceil(((rows - 1) * pitch + p["OW"]) / vw)
            split = schedule.depthwise_tiles(vectors, sched.row_tile)
            floats = vectors * vw
            reads_end = max(reads_end, band_start + vectors * vw + max(taps))
        bands.append([first, count, rows, *split, floats])
        tiles |= {(rows if sched.stacked else 0, size) for size in (split[0], split[2]) if size}
        band_floats = max(band_floats, floats)
    phases = p["SH"] * p["SW"] * plane
    pset = -(-max(phases, reads_end) // 16) * 16   # a channel's phases and the slack its last vectors read
    p.update(VW=vw, CT=sched.oc_vectors, PHH=rows_axis.extent, PWW=pitch, PP=plane, PHASES_END=phases, PSET=pset,
             QSET=band_floats, ROW_PHASES=[list(t) for t in zip(rows_axis.before, rows_axis.copied, rows_axis.first)],
             COL_PHASES=[list(t) for t in zip(cols_axis.before, cols_axis.copied, cols_axis.first)],
             TAPS=taps, BANDS=bands, RB=band_rows, STACKED=sched.stacked, QPITCH=qpitch,
             COLUMNS=[[offset, [list(m) for m in members]] for offset, members in columns],
             TILES=[list(t) for t in sorted(tiles)],
             # strided column phases of at least 2 vectors a row fill in one loop over a row's columns, their
             # loads one interleaved group the compilers vectorize with permutes (3x3 stride 2 16x112x112,
             # Zen 4, 1 thread, C: 49 -> 42 us); not shorter rows, left scalar either way, where the shared
             # row loop was slower (5x5 stride 2 288x14x14: 29 -> 39 us)
             FILL_TOGETHER=p["SW"] > 1 and min(cols_axis.copied) >= 2 * vw)
    scratch = sched.threads * sched.oc_vectors * (pset + band_floats) * 4
    return KernelSpec("conv_depthwise", p, conv_operands(node, node.inputs[1]), [("y", node.output)], scratch)


def conv_operands(node: Node, w_value: str) -> list[tuple[str, str | None]]:
    """x, w, b (None: no bias) and, for a residual conv, r: the skip its epilogue adds (ConvAttrs.residual)."""
    operands = [("x", node.inputs[0]), ("w", w_value), ("b", node.inputs[2] if len(node.inputs) >= 3 else None)]
    return operands + ([("r", node.inputs[3])] if node.attrs.residual else [])


def _read_in_place(p: dict, sched: schedule.ConvSchedule, scratch: int) -> int:
    """A direct conv padded only along H and W reads its input in place (p["CLIP"]: its border rows and tiles
    leave out the taps outside the input) where schedule.in_place_row_tiles says so; the pad scratch goes.
    Returns the scratch before the packed weights."""
    p["CLIP"] = False
    if not p["PAD_COPY"] or p["PD"] or p["PDE"] or p["XD"] > p["ID"]:
        return scratch
    inside = shapes.windows_inside(p["IW"], p["OW"], p["KW"], p["SW"], p["DW"], p["PW"])
    tiles = schedule.in_place_row_tiles(sched, p["OW"], inside)
    if tiles is None:
        return scratch
    p.update(CLIP=True, PAD_COPY=False, XD=p["ID"], XH=p["IH"], XW=p["IW"], LEFT_TILES=[list(t) for t in tiles.left],
             INTERIOR=list(tiles.interior), RIGHT_TILES=[list(t) for t in tiles.right])
    return 0


@lowering("conv")
def lower_conv(node: Node, ctx: LowerContext) -> KernelSpec:
    a, w_value = node.attrs, node.inputs[1]
    p, sched = conv_geometry(node, ctx)
    sched = ctx.schedules.get(node.name, sched)
    g = p["G"]
    p.update(THREADS=sched.threads, HAS_BIAS=len(node.inputs) >= 3, RESIDUAL=a.residual,
             activation=activation_params(a.activation))
    if sched.path == "winograd":
        return lower_winograd(node, ctx, p, sched)
    if sched.path == "gemm":
        return lower_conv1x1.lower_conv_gemm(node, ctx, p, sched)
    if sched.path == "depthwise":
        return lower_depthwise(node, p, sched)
    scratch = _pad_scratch_bytes(p)
    packed = {}
    if sched.path in ("direct", "pixels", "narrow"):
        _check_runtime_packing(node, ctx, w_value)
        # packed weights: [G][blocks][CG][KK][tile], tile = OCV vectors of VW channels, or MR channels
        ocv, width = (sched.oc_vectors, sched.vector_width) if sched.path == "direct" else (1, sched.oc_vectors)
        tile = ocv * width
        blocks = math.ceil(p["OCG"] / tile)
        p.update(OCB=blocks, BLOCKS_INNER=sched.blocks_inner, PACK_AT_RUNTIME=not ctx.is_constant(w_value),
                 WPACK_OFFSET=align(scratch) // 4)
        if sched.path == "direct":
            scratch = _read_in_place(p, sched, scratch)
            p["WPACK_OFFSET"] = align(scratch) // 4
            out_floats = p["OC"] * p["OD"] * p["OH"] * p["OW"]
            p.update(VW=sched.vector_width, OCV=sched.oc_vectors, RW=sched.row_tile, RH=sched.tile_rows,
                     OHB=math.ceil(p["OH"] / sched.tile_rows),
                     FULL_HINTS=schedule.fills_register_file(sched, ctx.target),
                     ACTIVATION_AFTER=schedule.activation_after_layer(out_floats, p["OW"], ctx.target.max_vector_width,
                                                                      sched.threads))
        elif sched.path == "narrow":
            scratch = _narrow_read_layout(p, sched, scratch)
            p["WPACK_OFFSET"] = align(scratch) // 4
            row = sched.tile_rows * p["OW"] if sched.flat else p["OW"]
            full, tail, tail_at = schedule.narrow_row_tiles(row, sched.vector_width, sched.row_tile)
            p.update(VW=sched.vector_width, MR=sched.oc_vectors, NV=sched.row_tile, RH=sched.tile_rows,
                     OHB=math.ceil(p["OH"] / sched.tile_rows), FULL=full, TAIL=tail, TAIL_AT=tail_at)
        else:
            full = p["OW"] // (sched.row_tile * sched.vector_width)
            per_chunk = schedule.tiles_per_chunk(full, sched.row_tile * sched.vector_width)
            p.update(VW=sched.vector_width, MR=sched.oc_vectors, NV=sched.row_tile, TPC=per_chunk,
                     CHUNKS=max(1, math.ceil(full / per_chunk)),
                     TAIL=schedule.row_tail(p["OW"], sched.row_tile, sched.vector_width))
        if ctx.is_constant(w_value):
            packed["w"] = pack_conv_weights(ctx.graph.constants[w_value], g, blocks, ocv, width)
        else:
            scratch = align(scratch) + g * blocks * tile * p["CG"] * p["KD"] * p["KH"] * p["KW"] * 4
    else:
        # one input plane per group (depthwise): each thread pads the plane it works on into its own
        # buffer instead of a padded copy of the whole input
        p.update(OWB=sched.row_tile, PLANE_PAD=p["PAD_COPY"] and p["CG"] == 1)
        if p["PLANE_PAD"]:
            scratch = sched.threads * _padded_plane_bytes(p)
    return KernelSpec("conv_" + sched.path, p, conv_operands(node, w_value), [("y", node.output)], scratch, packed)


@lowering("locally_connected")
def lower_locally_connected(node: Node, ctx: LowerContext) -> KernelSpec:
    a = node.attrs
    x = ctx.type(node.inputs[0])
    p = _window_params(x, node.type, a.kernel, a.stride, a.dilation, a.pads)
    p.update(_padded_extents(p))
    p.update(OC=node.type.shape[1], HAS_BIAS=len(node.inputs) == 3, THREADS=1,
             activation=activation_params(a.activation))
    return KernelSpec("locally_connected", p, [("x", node.inputs[0]), ("w", node.inputs[1]),
                                               ("b", node.inputs[2] if len(node.inputs) == 3 else None)],
                      [("y", node.output)], _pad_scratch_bytes(p))


@lowering("pool")
def lower_pool(node: Node, ctx: LowerContext) -> KernelSpec:
    a = node.attrs
    x = ctx.type(node.inputs[0])
    p = _window_params(x, node.type, a.kernel, a.stride, a.dilation, a.pads)
    p.update(_padded_extents(p))
    flops = ops.get("pool").flops(a, [x], node.types)
    span = (p["OW"] - 1) * p["SW"] + (p["KW"] - 1) * p["DW"] + 1
    p.update(KIND=a.kind, COUNT_INCLUDE_PAD=a.count_include_pad, DIVISOR=a.divisor_override or 0,
             INDICES=a.return_indices, INDEX_LAYOUT=a.index_layout, THREADS=schedule.threads_for(flops, ctx.threads),
             SPAN=span, SEPARABLE=schedule.separable_pool(a.return_indices, p["KD"] * p["KH"], span),
             COL_LO=min(p["PW"], span), COL_HI=max(min(p["PW"], span), min(span, p["PW"] + p["IW"])),
             ROWS=schedule.pool_rows(span, p["OH"]),
             VW=ctx.target.max_vector_width)  # the LLVM mirror splits its row loops at whole vectors (gcc does it itself)
    outputs = [("y", node.outputs[0])] + ([("indices", node.outputs[1])] if a.return_indices else [])
    scratch = 0 if p["SEPARABLE"] else _pad_scratch_bytes(p)  # the separable path reads the input itself
    return KernelSpec("pool", p, [("x", node.inputs[0])], outputs, scratch)


@lowering("activation")
def lower_activation(node: Node, ctx: LowerContext) -> KernelSpec:
    return KernelSpec("activation", dict(**_batch_and_inner(node.type), activation=activation_params(node.attrs)),
                      [("x", node.inputs[0])], [("y", node.output)])


@lowering("batch_norm")
def lower_batch_norm(node: Node, ctx: LowerContext) -> KernelSpec:
    shape = node.type.shape
    p = dict(N=shape[0], C=shape[1], INNER=math.prod(shape[2:]), EPS=node.attrs.eps,
             activation=activation_params(node.attrs.activation))
    names = ("x", "gamma", "beta", "mean", "var")
    return KernelSpec("batch_norm", p, list(zip(names, node.inputs)), [("y", node.output)])


def _strided_loops(out_shape: tuple[int, ...], in_strides: list[tuple[int, ...]],
                   batch_strides: list[int] | None = None, offsets: list[int] | None = None) -> dict:
    """The fewest loops over the output (C order) and each input's stride per loop.  With batch_strides
    (each input's stride along the batch), the batch stays its own outermost loop N, whose bound may be a
    run-time value; else N = 1 and every axis may merge.  `offsets`: each input's first element (slices)."""
    out_strides = shapes.contiguous_strides(out_shape)
    offsets = list(offsets or [0] * len(in_strides))
    if batch_strides is None or not out_shape:
        dims, strides = shapes.collapse_axes(out_shape, [out_strides, *in_strides])
        return dict(N=1, BATCH_STRIDES=[0] * len(in_strides), OUT_BATCH_STRIDE=0, DIMS=list(dims),
                    OUT_STRIDES=list(strides[0]), STRIDES=[list(s) for s in strides[1:]], OFFSETS=offsets)
    dims, strides = shapes.collapse_axes(out_shape[1:], [out_strides[1:], *(s[1:] for s in in_strides)])
    return dict(N=out_shape[0], BATCH_STRIDES=list(batch_strides), OUT_BATCH_STRIDE=out_strides[0],
                DIMS=list(dims), OUT_STRIDES=list(strides[0]), STRIDES=[list(s) for s in strides[1:]], OFFSETS=offsets)


def _batch_stride(node: Node, ctx: LowerContext, value: str) -> int:
    """An operand's stride along the batch: 0 for constants (broadcast to every sample)."""
    if ctx.is_constant(value):
        return 0
    t = ctx.type(value)
    if t.ndim != node.type.ndim:
        raise UnsupportedError(f"layer {node.name!r} ({node.op}): input {value!r} of shape {list(t.shape)} "
                               "broadcasts across the batch axis; compile it with a fixed batch")
    return shapes.contiguous_strides(t.shape)[0]


def lower_binary(node: Node, ctx: LowerContext) -> KernelSpec:
    out = node.type.shape
    batch_strides = [_batch_stride(node, ctx, v) for v in node.inputs] if ctx.dynamic_batch else None
    p = _strided_loops(out, [shapes.broadcast_strides(ctx.type(v).shape, out) for v in node.inputs], batch_strides)
    p.update(OP=node.op, activation=activation_params(node.attrs.activation))
    return KernelSpec("strided", p, [(f"x{i}", v) for i, v in enumerate(node.inputs)], [("y", node.output)])


for _op in BINARY_KINDS:
    lowering(_op)(lower_binary)


@lowering("transpose")
def lower_transpose(node: Node, ctx: LowerContext) -> KernelSpec:
    x = ctx.type(node.inputs[0]).shape
    perm = shapes.transpose_perm(node.name, len(x), node.attrs.perm)
    in_strides = shapes.contiguous_strides(x)
    permuted = tuple(in_strides[a] for a in perm)
    # with a run-time batch, check_batch_axis has made sure the batch stays axis 0 (perm[0] == 0)
    p = _strided_loops(node.type.shape, [permuted], [permuted[0]] if ctx.dynamic_batch else None)
    p.update(OP="copy", activation=None)
    return KernelSpec("strided", p, [("x0", node.inputs[0])], [("y", node.output)])


@lowering("lrn")
def lower_lrn(node: Node, ctx: LowerContext) -> KernelSpec:
    a, shape = node.attrs, node.type.shape
    inner = math.prod(shape[2:])
    p = dict(N=shape[0], C=shape[1], INNER=inner, BEFORE=a.window_before, AFTER=a.window_after,
             SCALE=a.alpha / a.size, BIAS=a.bias, BETA=a.beta)
    return KernelSpec("lrn", p, [("x", node.inputs[0])], [("y", node.output)], scratch_bytes=4 * inner)


@lowering("pad")
def lower_pad(node: Node, ctx: LowerContext) -> KernelSpec:
    a, shape = node.attrs, ctx.type(node.inputs[0]).shape
    # an unpadded batch axis is the kernel's outer loop N (a run-time batch needs that)
    per_sample = len(shape) >= 2 and a.pads[0] == (0, 0)
    if not per_sample and ctx.dynamic_batch:
        raise UnsupportedError(f"layer {node.name!r} (pad) pads the batch axis; compile it with a fixed batch")
    axes = shapes.pad_loops(shape[1:], a.pads[1:]) if per_sample else shapes.pad_loops(shape, a.pads)
    p = dict(N=shape[0] if per_sample else 1, AXES=axes, MODE=a.mode, VALUE=a.value,
             IN_SAMPLE=math.prod(axis["I"] for axis in axes), OUT_SAMPLE=math.prod(axis["O"] for axis in axes),
             IN_STRIDES=list(shapes.contiguous_strides([axis["I"] for axis in axes])),
             OUT_STRIDES=list(shapes.contiguous_strides([axis["O"] for axis in axes])))
    return KernelSpec("pad", p, [("x", node.inputs[0])], [("y", node.output)])


@dataclass(frozen=True)
class DenseLayout:
    """How the linear kernel reads a matrix product y[row, m] = alpha * sum_k X[row, k] W[m, k] + beta * C[row, m]:
    X[row, k] = x[row * x_row + k * x_col]; W from w (M, K), or (K, M) when w_kn; C[row, m] = b[row * b_row + m * b_col].
    The rows are `batch` samples (the kernel's N loop, a run-time bound under batch=None) of rows / batch."""
    batch: int
    rows: int
    k: int
    m: int
    x_row: int
    x_col: int = 1
    w_kn: bool = False
    alpha: float = 1.0
    beta: float = 1.0
    b_row: int = 0
    b_col: int = 1


def _dense_spec(node: Node, ctx: LowerContext, layout: DenseLayout, x: str, w: str, b: str | None) -> KernelSpec:
    flops = ops.get(node.op).flops(node.attrs, [ctx.type(v) for v in node.inputs], node.types)
    sched = schedule.dense_schedule(layout.m, flops, ctx.target, ctx.threads)
    tile = sched.vector_width * sched.oc_vectors
    blocks = math.ceil(layout.m / tile)
    p = dict(N=layout.batch, ROWS=layout.rows // layout.batch, K=layout.k, M=layout.m, VW=sched.vector_width, OCV=sched.oc_vectors, OCB=blocks,
             THREADS=sched.threads, HAS_BIAS=b is not None, PACK_AT_RUNTIME=not ctx.is_constant(w),
             X_ROW=layout.x_row, X_COL=layout.x_col, W_KN=layout.w_kn, ALPHA=layout.alpha, BETA=layout.beta,
             B_ROW=layout.b_row, B_COL=layout.b_col, activation=activation_params(node.attrs.activation))
    packed, scratch = {}, 0
    _check_runtime_packing(node, ctx, w)
    if ctx.is_constant(w):
        weights = ctx.graph.constants[w]
        weights = weights.reshape(layout.k, layout.m).T if layout.w_kn else weights.reshape(layout.m, layout.k)
        packed["w"] = pack_conv_weights(np.ascontiguousarray(weights), 1, blocks, sched.oc_vectors, sched.vector_width)
    else:
        scratch = blocks * tile * layout.k * 4
    return KernelSpec("linear", p, [("x", x), ("w", w), ("b", b)], [("y", node.output)], scratch, packed)


@lowering("linear")
def lower_linear(node: Node, ctx: LowerContext) -> KernelSpec:
    x, (m_out, k) = ctx.type(node.inputs[0]), ctx.type(node.inputs[1]).shape
    layout = DenseLayout(batch=x.shape[0] if x.ndim >= 2 else 1, rows=x.size // k, k=k, m=m_out, x_row=k)
    return _dense_spec(node, ctx, layout, node.inputs[0], node.inputs[1], node.inputs[2] if len(node.inputs) == 3 else None)


@lowering("gemm")
def lower_gemm(node: Node, ctx: LowerContext) -> KernelSpec:
    a, (rows, m_out) = node.attrs, node.type.shape
    k = ctx.type(node.inputs[0]).size // rows
    c = node.inputs[2] if len(node.inputs) == 3 else None
    b_row, b_col = shapes.broadcast_strides(ctx.type(c).shape, (rows, m_out)) if c else (0, 1)
    # a run-time batch is M: A^T's columns and a constant C's rows are laid out for the compiled M
    if ctx.dynamic_batch and (a.trans_a or (c is not None and b_row and ctx.is_constant(c))):
        raise UnsupportedError(f"layer {node.name!r} (gemm): batch=None needs transA=0 and a C without "
                               "constant per-row values; compile it with a fixed batch")
    layout = DenseLayout(batch=1 if a.trans_a else rows, rows=rows, k=k, m=m_out, x_row=1 if a.trans_a else k,
                         x_col=rows if a.trans_a else 1, w_kn=not a.trans_b, alpha=a.alpha, beta=a.beta,
                         b_row=b_row, b_col=b_col)
    return _dense_spec(node, ctx, layout, node.inputs[0], node.inputs[1], c)


@lowering("matmul")
def lower_matmul(node: Node, ctx: LowerContext) -> KernelSpec:
    a, b = ctx.type(node.inputs[0]).shape, ctx.type(node.inputs[1]).shape
    if any(d != 1 for d in b[:-2]):
        raise UnsupportedError(f"layer {node.name!r} (matmul): B of shape {b} is a batch of matrices; "
                               "the kernel takes one matrix B (K, N) or a vector (K,)")
    k, m_out = (b[-2], b[-1]) if len(b) > 1 else (b[0], 1)
    layout = DenseLayout(batch=a[0] if len(a) >= 2 else 1, rows=math.prod(a) // k, k=k, m=m_out, x_row=k, w_kn=True)
    return _dense_spec(node, ctx, layout, node.inputs[0], node.inputs[1], None)


@lowering("softmax")
def lower_softmax(node: Node, ctx: LowerContext) -> KernelSpec:
    shape = node.type.shape
    axis = normalize_axis(node.name, node.attrs.axis, len(shape))
    batch = _batch_outside(node, ctx, axis)
    p = dict(N=batch, OUTER=math.prod(shape[:axis]) // batch, AXIS=shape[axis], INNER=math.prod(shape[axis + 1:]))
    return KernelSpec("softmax", p, [("x", node.inputs[0])], [("y", node.output)])


@lowering("concat")
def lower_concat(node: Node, ctx: LowerContext) -> KernelSpec:
    shape = node.type.shape
    axis = normalize_axis(node.name, node.attrs.axis, len(shape))
    inner = math.prod(shape[axis + 1:])
    chunks = [ctx.type(v).shape[axis] * inner for v in node.inputs]
    batch = _batch_outside(node, ctx, axis)
    p = dict(N=batch, OUTER=math.prod(shape[:axis]) // batch, CHUNKS=chunks, OFFSETS=[sum(chunks[:i]) for i in range(len(chunks))],
             TOTAL=sum(chunks))
    return KernelSpec("concat", p, [(f"x{i}", v) for i, v in enumerate(node.inputs)], [("y", node.output)])


@lowering("flatten")
@lowering("reshape")
def lower_view(node: Node, ctx: LowerContext) -> None:
    return None  # a view: the output shares its input's storage


# -- planning ----------------------------------------------------------------------------

class WeightsBlob:
    """The constants the kernels read, concatenated at 64-byte alignment; each added once."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._placed: dict[str, Buffer] = {}

    def add(self, array: np.ndarray, key: str | None = None) -> Buffer:
        if key is not None and key in self._placed:
            return self._placed[key]
        offset = align(len(self.data))
        self.data.extend(b"\0" * (offset - len(self.data)))
        self.data.extend(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        buffer = Buffer("weights", offset)
        if key is not None:
            self._placed[key] = buffer
        return buffer


@dataclass
class Placement:
    """Where every value lives, and the graph outputs that need a copy at the end."""
    buffers: dict[str, Buffer]
    scratch: dict[str, Buffer]
    copies: list[tuple[int, str]]
    arena_bytes: int


def _resolve_aliases(graph: Graph, specs: dict[str, KernelSpec | None]) -> dict[str, str]:
    """Views (flatten, reshape) share their input's storage: map each view to the value that owns it."""
    alias: dict[str, str] = {}
    for node in graph.nodes:
        if specs[node.name] is None:
            source = node.inputs[0]
            alias[node.output] = alias.get(source, source)
    return alias


def _place(graph: Graph, order: list[Node], specs: dict[str, KernelSpec], root) -> Placement:
    """Graph inputs and outputs are the caller's pointers; intermediates and scratch share the arena."""
    buffers = {name: Buffer("input", i, t.dtype) for i, (name, t) in enumerate(graph.inputs)}
    produced = {v for n in order for v in n.outputs}
    copies = []
    for j, value in enumerate(graph.outputs):
        r = root(value)
        if r in produced and r not in buffers:
            buffers[r] = Buffer("output", j, graph.type_of(value).dtype)
        else:  # an input, a constant, or a value already given to another output
            copies.append((j, r))
    first, last = {}, {}
    for i, node in enumerate(order):
        for v in node.outputs:
            first.setdefault(root(v), i)
        for v in node.inputs:
            last[root(v)] = i
    for _, r in copies:
        last[r] = len(order)
    intervals = [Interval(v, align(graph.type_of(v).nbytes), i, max(last.get(v, i), i))
                 for v, i in first.items() if v not in buffers]
    intervals += [Interval(f"scratch:{n.name}", specs[n.name].scratch_bytes, i, i)
                  for i, n in enumerate(order) if specs[n.name].scratch_bytes]
    offsets, arena_bytes = plan_arena(intervals)
    for v in first:
        if v not in buffers:
            buffers[v] = Buffer("arena", offsets[v], graph.type_of(v).dtype)
    scratch = {n.name: Buffer("arena", offsets[f"scratch:{n.name}"]) if specs[n.name].scratch_bytes
               else Buffer("null") for n in order}
    return Placement(buffers, scratch, copies, arena_bytes)


def _bind(index: int, node: Node, spec: KernelSpec, graph: Graph, placement: Placement, blob: WeightsBlob,
          root) -> Kernel:
    args = []
    for arg_name, value in spec.inputs:
        if value is None:
            buffer = Buffer("null")
        elif arg_name in spec.packed:
            buffer = blob.add(spec.packed[arg_name])
        elif root(value) in graph.constants:  # a constant, or a view (reshape) of one
            buffer = blob.add(graph.constants[root(value)], key=root(value))
        else:
            buffer = placement.buffers[root(value)]
        args.append(Arg(arg_name, buffer, False))
    args += [Arg(arg_name, placement.buffers[root(value)], True) for arg_name, value in spec.outputs]
    fn = f"layer{index}_{node.op}_" + fragment(node.name)   # the index keeps it unique
    return Kernel(fn, spec.template, node.name, node.op, spec.params, tuple(args), placement.scratch[node.name],
                  spec.scratch_bytes)


def _io_specs(graph: Graph) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    """The inputs' and outputs' names as callers know them (the graph's input names, its output_names
    or else the output values) and their C identifiers for the run function's parameters: sanitized
    input names, output / output<j>."""
    in_idents = unique_identifiers(n for n, _ in graph.inputs)
    names = ["output"] if len(graph.outputs) == 1 else [f"output{j}" for j in range(len(graph.outputs))]
    out_idents = unique_identifiers(names, taken=in_idents)
    inputs = tuple(IOSpec(n, ident, t.shape, t.dtype) for (n, t), ident in zip(graph.inputs, in_idents))
    out_names = graph.output_names or graph.outputs
    outputs = tuple(IOSpec(name, ident, graph.type_of(v).shape, graph.type_of(v).dtype)
                    for v, name, ident in zip(graph.outputs, out_names, out_idents))
    return inputs, outputs


def lower(graph: Graph, target: Target, threads: int, dynamic_batch: bool = False,
          schedules: dict | None = None, winograd: bool = True) -> LoweredModel:
    """Lower `graph`; with dynamic_batch, `graph` is at batch 1 and the kernels take the batch at run time
    (every arena offset then scales with it).  `schedules`: conv layer name -> ConvSchedule replacing
    the cost model's (from tuning)."""
    ctx = LowerContext(graph, target, threads, dynamic_batch, schedules or {}, winograd)
    specs: dict[str, KernelSpec | None] = {}
    for node in graph.nodes:
        if node.op not in LOWERINGS:
            raise UnsupportedError(f"layer {node.name!r}: no lowering for op {node.op!r}")
        specs[node.name] = LOWERINGS[node.op](node, ctx)
    alias = _resolve_aliases(graph, specs)
    root = lambda v: alias.get(v, v)  # noqa: E731
    order = [n for n in graph.nodes if specs[n.name] is not None]
    placement = _place(graph, order, specs, root)
    blob = WeightsBlob()
    kernels = tuple(_bind(i, n, specs[n.name], graph, placement, blob, root) for i, n in enumerate(order))
    copies = tuple((Buffer("output", j, graph.type_of(graph.outputs[j]).dtype),
                    placement.buffers.get(r) or blob.add(graph.constants[r], key=r),
                    graph.type_of(graph.outputs[j]).nbytes) for j, r in placement.copies)
    inputs, outputs = _io_specs(graph)
    return LoweredModel(identifier(graph.name), graph.name, inputs, outputs, kernels, copies,
                        placement.arena_bytes, bytes(blob.data), threads, None if dynamic_batch else _batch_of(graph),
                        target.vector_bytes)


def _batch_of(graph: Graph) -> int:
    """The batch a graph was traced at: its first input's leading axis."""
    shape = graph.inputs[0][1].shape if graph.inputs else ()
    return shape[0] if shape else 1


# -- transposed convolution and Lp pooling --------------------------------------------------

def pack_conv_transpose_weights(w: np.ndarray, groups: int, blocks: int, oc_vectors: int, width: int) -> np.ndarray:
    """(C_in, C_out/g, *k) -> the conv packing [g][block][C_in/g][kd][kh][kw][oc_vectors][width].

    Mirrors the runtime packing loop in templates/conv_transpose.c.j2.
    """
    cin, ocg = w.shape[:2]
    by_output = w.reshape((groups, cin // groups, ocg) + w.shape[2:]).swapaxes(1, 2)
    return pack_conv_weights(by_output.reshape((groups * ocg, cin // groups) + w.shape[2:]), groups, blocks,
                             oc_vectors, width)


def _transposed_phase_params(x: TensorType, out: TensorType, a) -> dict:
    """Per axis: the stride-phase tables of shapes.transposed_phases and the zero padding of the input copy."""
    p: dict = {}
    ins, outs = as_3d(x.shape[2:], 1), as_3d(out.shape[2:], 1)
    kernel, stride, dilation = as_3d(a.kernel, 1), as_3d(a.stride, 1), as_3d(a.dilation, 1)
    crops = as_3d([pb for pb, _ in a.pads], 0)
    for axis, i, o, k, s, d, crop in zip("DHW", ins, outs, kernel, stride, dilation, crops):
        ph = shapes.transposed_phases(i, o, k, s, d, crop)
        p.update({f"CROP_{axis}": crop, f"TSTEP_{axis}": ph.tap_step, f"ISTEP_{axis}": ph.input_step,
                  f"LAST_{axis}": list(ph.last), f"TAPS_{axis}": list(ph.taps), f"OFF_{axis}": list(ph.offset),
                  f"P{axis}": ph.pad_begin, f"X{axis}": ph.pad_begin + i + ph.pad_end,
                  f"OFIRST_{axis}": list(ph.out_first), f"OCOUNT_{axis}": list(ph.out_count),
                  f"JFIRST_{axis}": list(ph.in_first)})
    p["PAD_COPY"] = (p["XD"], p["XH"], p["XW"]) != ins
    return p


@lowering("conv_transpose")
def lower_conv_transpose(node: Node, ctx: LowerContext) -> KernelSpec:
    a = node.attrs
    x, w_value, out = ctx.type(node.inputs[0]), node.inputs[1], node.type
    p = _window_params(x, out, a.kernel, a.stride, a.dilation, ((0, 0),) * a.ndim)
    p.update(_transposed_phase_params(x, out, a))
    g, oc = a.groups, out.shape[1]
    flops = ops.get("conv_transpose").flops(a, [x, ctx.type(w_value)], node.types)
    sched = schedule.conv_transpose_schedule(oc // g, max(p["OCOUNT_W"]), flops, ctx.target, ctx.threads)
    tile = sched.oc_vectors * sched.vector_width
    blocks = math.ceil(oc // g / tile)
    p.update(OC=oc, G=g, CG=x.shape[1] // g, OCG=oc // g, VW=sched.vector_width, OCV=sched.oc_vectors, OCB=blocks,
             RW=sched.row_tile, TAILS=sorted({c % sched.row_tile for c in p["OCOUNT_W"]} - {0}),
             THREADS=sched.threads, HAS_BIAS=len(node.inputs) == 3, PACK_AT_RUNTIME=not ctx.is_constant(w_value),
             activation=activation_params(a.activation))
    _check_runtime_packing(node, ctx, w_value)
    scratch, packed = _pad_scratch_bytes(p), {}
    p["WPACK_OFFSET"] = align(scratch) // 4
    if ctx.is_constant(w_value):
        packed["w"] = pack_conv_transpose_weights(ctx.graph.constants[w_value], g, blocks, sched.oc_vectors,
                                                  sched.vector_width)
    else:
        scratch = align(scratch) + g * blocks * tile * p["CG"] * p["KD"] * p["KH"] * p["KW"] * 4
    return KernelSpec("conv_transpose", p, [("x", node.inputs[0]), ("w", w_value),
                                            ("b", node.inputs[2] if len(node.inputs) == 3 else None)],
                      [("y", node.output)], scratch, packed)


@lowering("lp_pool")
def lower_lp_pool(node: Node, ctx: LowerContext) -> KernelSpec:
    a = node.attrs
    x = ctx.type(node.inputs[0])
    p = _window_params(x, node.type, a.kernel, a.stride, a.dilation, a.pads)
    p.update(_padded_extents(p))
    flops = ops.get("lp_pool").flops(a, [x], node.types)
    p.update(P=float(a.p), ABS=a.convention == "onnx", MAX_ABS=math.isinf(a.p),
             RESCALE=a.convention == "torch" and a.ceil_mode and math.isfinite(a.p),
             THREADS=schedule.threads_for(flops, ctx.threads))
    return KernelSpec("lp_pool", p, [("x", node.inputs[0])], [("y", node.output)], _pad_scratch_bytes(p))


@lowering("global_lp_pool")
def lower_global_lp_pool(node: Node, ctx: LowerContext) -> KernelSpec:
    x = ctx.type(node.inputs[0])
    return KernelSpec("global_lp_pool", dict(N=x.shape[0], C=x.shape[1], SIZE=math.prod(x.shape[2:]),
                                             P=float(node.attrs.p), MAX_ABS=math.isinf(node.attrs.p)),
                      [("x", node.inputs[0])], [("y", node.output)])


from . import lower_cast, lower_conv1x1, lower_movement, lower_norm, lower_reduce, lower_resample  # noqa: E402,F401  (register the conversions', copies', normalizations', reductions' and resamples' lowerings; the 1x1 matrix product)

"""How each kernel runs: vector width, register tile, threads.  The op says what; this says how.

A small cost model picks the tiles; every choice is a plain integer the
templates use as a compile-time constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .target import Target

# Below this many FLOPs a layer runs on one thread: waking a team costs more than it saves.
MIN_FLOPS_PER_THREAD = 400_000


# Packed weights up to this size stay in L2 while a row of input serves every channel block.
BLOCKS_INNER_MAX_WEIGHT_BYTES = 256 * 1024


@dataclass(frozen=True)
class ConvSchedule:
    path: str            # "direct": output channels in vectors; "rowwise": output pixels in vectors;
                         # "pixels": output pixels in vectors, output channels broadcast (stride 1 along W)
    vector_width: int    # float lanes per vector (of output channels for direct, of pixels for pixels)
    oc_vectors: int      # direct: output-channel vectors in the register tile; pixels: output channels
    row_tile: int        # direct: output pixels along W in the tile; pixels: pixel vectors in the tile
    threads: int
    blocks_inner: bool = False  # channel blocks innermost (input row reused) rather than outermost
    winograd_m: int = 0  # "winograd": the output tile edge m of F(m x m, 3 x 3); row_tile: tiles per register tile
    chunk_tiles: int = 0  # "winograd": tiles whose transformed input is held (in L2) at once
    tile_rows: int = 1   # "direct": output rows in the register tile (2-D tiles over rows shorter than it)
    stacked: bool = False  # "depthwise": tiles of tile_rows output rows x row_tile vectors a row, which share
                           # each input row's loads (else row_tile vectors along the flattened band)
    flat: bool = False   # "narrow": blocks of tile_rows output rows run as one row of whole pixel vectors


@dataclass(frozen=True)
class DenseSchedule:
    vector_width: int
    oc_vectors: int
    threads: int


def threads_for(flops: int, threads: int) -> int:
    return max(1, min(threads, flops // MIN_FLOPS_PER_THREAD))


def _vector_width_for(channels: int, target: Target) -> int:
    """The narrowest of 4/8/16 lanes (up to the target's) that covers `channels`, to waste few lanes."""
    width = 4
    while width < target.max_vector_width and width < channels:
        width *= 2
    return width


def accumulator_budget(target: Target, path: str = "direct") -> int:
    """Vector registers for accumulators, from the register file.

    16 registers (AVX2), measured on a Zen 3, 1 thread: the direct path takes 8 (12, in 6-pixel rows,
    measured slower on both backends: 3x3 64x56x56 C / LLVM 3327 / 2942 -> 4704 / 3304 us, 7x7 stride 2
    LLVM 3046 -> 3621); the pixels path 12, besides them its tile holds only its input vectors and one
    broadcast weight (1x1 256->64 56x56 3014 / 2080 -> 1724 / 1665, conv1d 64x16000 k3 12136 / 7304
    -> 9501 / 6572 for 8 -> 12).
    32 registers (AVX-512): one-row direct tiles keep half the file: 14 x 2 tiles on 28-pixel rows measured
    slower than 7 x 2 (Sapphire Rapids, 1 thread, quiet run, C / LLVM us: 3x3 stride 2 128x56 1252 / 1207
    -> 1397 / 1426, dilated 256x28 4777 / 4757 -> 5103 / 5149).  2-D tiles over short rows ("rows") take
    28 as oneDNN does, leaving 2 weight vectors, a broadcast and a spare, held in registers by the _FULL
    hints of model.c.j2 and LLVM's barrier (3x3 512x7x7, 2 rows x 7 x 2: C 1294 -> 1228 us).  "pixels" keeps
    half the file (14 channels x 2 vectors measured no faster in C, and LLVM spilled them); the pixels path's
    own tile is pixels_accumulators'.
    """
    if target.vector_registers <= 16:
        return 12 if path == "pixels" else 8
    if path == "rows":
        return target.vector_registers - 4
    return target.vector_registers // 2


def fills_register_file(sched: ConvSchedule, target: Target) -> bool:
    """A direct tile with more accumulators than half the register file, which needs the register hints."""
    return sched.tile_rows * sched.row_tile * sched.oc_vectors > target.vector_registers // 2


def register_fit(target: Target, oc_vectors: int, pixels: int = 2) -> int:
    """The most accumulators a direct tile of `oc_vectors` channel vectors can hold: its weight vectors
    (held for the tile's pixels; a 1-pixel tile reads each in its FMA), one broadcast and one spare take
    the rest of the register file."""
    return max(1, target.vector_registers - 2 - (oc_vectors if pixels > 1 else 0))


# A direct convolution's output up to this many floats (one sample) stays in L1 for a last activation pass.
ACTIVATION_PASS_MAX_FLOATS = 8192


def activation_after_layer(out_floats: int, out_width: int, vector_width: int, threads: int) -> bool:
    """The direct path applies its activation over each finished output row (in cache, vectorized), unless
    the rows end short of a vector (a scalar tail in every row: LeNet-5's 28-pixel rows, where tanh's tail
    cost as much as its vectors) and the whole output, small and written by one thread, can take the
    activation in one pass at the end (LeNet-5, Zen 3, 1 thread, medians of 3 runs: C 29 -> 26 us, LLVM 28 -> 25)."""
    return threads == 1 and out_width % vector_width != 0 and out_floats <= ACTIVATION_PASS_MAX_FLOATS


def row_block(out_width: int) -> int:
    """Output pixels a rowwise kernel accumulates at once (a stack buffer the compiler vectorizes)."""
    return min(out_width, 256)


def _row_tile(out_width: int, oc_vectors: int, max_rows: int, wide_rows: int, chains: int) -> int:
    """Pixels per register tile along a row: balanced tiles of max_rows (or up to wide_rows, where that
    leaves a smaller remainder), whichever takes the fewest FMA issue slots per row, a tile with fewer than
    `chains` accumulators (the target's FMA units x latency: 2 x 4 on Zen 3 and 4 and Intel since Skylake)
    counting `chains`: it waits on its dependent FMAs; ties go to the narrower tile.  14-pixel rows take 5 + 5 + 4
    rather than 4 + 4 + 4 + 2 (Zen 3, 1 thread, C / LLVM us: 3x3 256x14x14 3273 / 3552 -> 3091 / 3100,
    3x3 stride 2 128x28x28 -> 256: 1620 / 1790 -> 1522 / 1556)."""
    def slots(rows: int) -> int:
        tile = math.ceil(out_width / math.ceil(out_width / rows))  # balanced: the remainder tile is small
        full, tail = divmod(out_width, tile)
        return full * max(tile * oc_vectors, chains) + (max(tail * oc_vectors, chains) if tail else 0)
    best = min(range(max_rows, max(max_rows, wide_rows) + 1), key=slots)
    return math.ceil(out_width / math.ceil(out_width / best))


def conv_schedule(out_channels_per_group: int, out_width: int, flops: int, target: Target, threads: int, *,
                  stride_w: int = 1, one_row: bool = False, weight_bytes: int = 0,
                  kernel_w: int = 1, out_height: int = 1, budget: int = 0) -> ConvSchedule:
    """The cost model: rowwise below 4 output channels per group; pixels when the output is one long row
    of consecutive pixels (1-D, or a 1x1 stride-1 plane flattened: vector loads of input, contiguous
    stores, no lane scatter; measured 1.1-1.4x faster there, slower on 2-D 3x3 rows); else direct, its
    register tile sized by the target's register file (accumulator_budget, register_fit, or `budget`
    accumulators where given)."""
    ocg = out_channels_per_group
    inner = weight_bytes <= BLOCKS_INNER_MAX_WEIGHT_BYTES
    if ocg < 4:
        return ConvSchedule("rowwise", 0, 0, row_block(out_width), threads_for(flops, threads))
    if stride_w == 1 and one_row and out_width >= 2 * target.max_vector_width:
        return pixels_schedule(ocg, out_width, target, threads_for(flops, threads), inner)
    width = _vector_width_for(ocg, target)
    budget = budget or accumulator_budget(target)
    oc_vectors = 2 if ocg >= 2 * width else 1
    if out_height == 1:
        # short rows leave accumulators idle: spend them on more channel vectors (1-pixel rows: LeNet's C5
        # 1.9 -> 1.4 us with 8 independent FMA chains instead of 2); with rows to stack, 2-D tiles instead
        wider = min(math.ceil(ocg / width), budget // out_width)
        while wider > oc_vectors and wider * out_width > register_fit(target, wider, out_width):
            wider -= 1
        oc_vectors = max(oc_vectors, wider)
    budget = min(budget, register_fit(target, oc_vectors))
    max_rows = max(1, budget // oc_vectors)
    # a quarter more accumulators where that shortens the remainder tile; not under kernels wider than 3,
    # whose overlapping broadcasts LLVM keeps live across the columns (LeNet-5 C3, 5x5, 2 x 5 tile: 10 -> 17 us)
    wide = min(budget + budget // 4, register_fit(target, oc_vectors))
    wide_rows = max(1, wide // oc_vectors) if kernel_w <= 3 else max_rows
    row_tile = _row_tile(out_width, oc_vectors, max_rows, wide_rows, target.fma_chains)
    rows_budget = min(max(budget, accumulator_budget(target, "rows")), register_fit(target, oc_vectors))
    return ConvSchedule("direct", width, oc_vectors, row_tile, threads_for(flops, threads), inner,
                        tile_rows=_tile_rows(out_height, out_width, row_tile, oc_vectors, rows_budget))


def _tile_rows(out_height: int, out_width: int, row_tile: int, oc_vectors: int, budget: int) -> int:
    """Output rows per register tile: on short rows, those whose every tile together fits the budget and
    whose one tile leaves at least half of it idle (7-pixel rows x 2 vectors on 28 accumulators; 14-pixel
    rows in tiles of 7), as many rows as the budget holds, balanced over the map's rows (7 rows: 2 + 2 +
    2 + 1).  Each weight vector then serves twice the pixels.  3x3 256x14x14 direct, 2 rows x 7 x 2 against
    1 x 7 x 2, Sapphire Rapids AVX-512, 1 thread, best of ~1 s of calls, two interleaved runs: C 1029 ->
    1006 / 1012 us, LLVM 1016 -> 995 / 999.  Not on 28-pixel rows (3x3 stride 2 128x56, 2 x 7 x 2: no
    faster on either backend)."""
    if out_width * oc_vectors > budget or 2 * row_tile * oc_vectors > budget:
        return 1
    most = min(out_height, budget // (row_tile * oc_vectors))
    return math.ceil(out_height / math.ceil(out_height / most))


# The depthwise kernel's band of output rows accumulates in a buffer of at most this many floats (16 KB:
# it stays in L1 beside the input's phases until its rows are stored).
DEPTHWISE_BAND_FLOATS = 4096
# Rows of up to this many output pixels (twice as many under a stride, which the rowwise kernel gathers) take
# the depthwise kernel; longer ones the rowwise kernel, which stores its rows without the band buffer's extra
# pass.  Sapphire Rapids AVX-512, 1 thread, us, rowwise / depthwise, C and LLVM: 5x5 576x7x7 90 / 43 and
# 95 / 42, 5x5 240x14x14 94 / 52 and 74 / 47, 5x5 stride 2 288x14x14 56 / 25 and 57 / 24, 3x3 stride 2
# 72x56x56 52 / 45 and 49 / 45; but 3x3 88x28x28 43 / 32 and 22 / 32, 7x7 192x28x28 797 / 275 and 225 / 264,
# 3x3 144x56x56 214 / 294 and 190 / 194, 3x3 stride 2 16x112x112 44 / 47 and 50 / 51.
DEPTHWISE_MAX_ROW = 16
# Rows of up to this many output pixels take it where its stacked tiles fit the registers (stacked_tile).
# AMD Zen 4 AVX-512, 1 thread, thread time, us, before (rowwise or flat tiles) -> stacked, C / LLVM: 7x7
# 192x28x28 894 -> 178 / 287 -> 183 (onnxruntime 192), 3x3 144x56x56 174 -> 154 / 153 -> 160, 3x3 88x28x28
# 37 -> 23 / 26 -> 26, 5x5 240x14x14 56 -> 33 / 49 -> 34, 5x5 stride 2 96x28x28 39 -> 35 / 25 -> 23, 3x3 stride 2
# 72x56x56 45 -> 43 / 50 -> 43, 3x3 stride 2 16x112x112 49 -> 46 / 50 -> 48.  Wider rows are not measured.
DEPTHWISE_STACKED_MAX_ROW = 64


def depthwise_schedule(groups: int, multiplier: int, out_height: int, out_width: int, row_pitch: int, flops: int,
                       target: Target, threads: int, columns: ColumnTaps | None = None) -> ConvSchedule:
    """The depthwise kernel (one input plane per group): a plane's output pixels, rows `row_pitch` apart
    (its input phases' row length), in vectors of the widest width.  Stacked tiles (stacked_tile) where
    the register file holds them; else register tiles of up to the pixels path's accumulator budget of
    vectors along the flattened band (tile_rows: rows per band, balanced over the plane); where a band
    has fewer vectors than the FMA chains (7x7 maps: 5 vectors of 16), one tile serves several channels
    (oc_vectors: channels per tile, a divisor of the groups) so that the chains stay busy."""
    width = target.max_vector_width
    stacked = stacked_tile(out_height, out_width, columns, target) if columns else None
    if stacked:
        rows, vectors = stacked
        return ConvSchedule("depthwise", stacked_width(out_width, target), 1, vectors, threads_for(flops, threads),
                            tile_rows=rows, stacked=True)
    budget = accumulator_budget(target, "pixels")
    most = max(1, min(out_height, DEPTHWISE_BAND_FLOATS // row_pitch))
    rows = math.ceil(out_height / math.ceil(out_height / most))
    vectors = math.ceil(((rows - 1) * row_pitch + out_width) / width)
    channels = 1
    while (multiplier == 1 and channels * min(vectors, budget) < target.fma_chains
           and 2 * channels * vectors <= budget and groups % (2 * channels) == 0):
        channels *= 2
    tile = max(1, min(vectors, budget // channels))
    return ConvSchedule("depthwise", width, channels, tile, threads_for(flops, threads), tile_rows=rows)


@dataclass(frozen=True)
class ColumnTaps:
    """A depthwise window's taps grouped by the column of the phases they read (taps of one column, in
    different rows, read the same input row for different output rows): how many columns, the most taps
    in one, and the farthest row offset of a tap (in phase rows)."""
    columns: int
    most: int
    reach: int
    taps: int


def stacked_width(out_width: int, target: Target) -> int:
    """Lanes of the stacked tile's vectors: the widest register's; but where the FMA pipes are narrower
    (Target.fma_bytes: Zen 4 runs a 512-bit FMA on both its 256-bit pipes) and a row fits one pipe-wide
    vector, that width: its FMAs cost the pipes the same per lane and a 7-pixel row leaves 1 lane of 8 idle,
    not 9 of 16."""
    pipe = target.fma_bytes // 4
    return pipe if 0 < pipe < target.max_vector_width and out_width <= pipe else target.max_vector_width


def stacked_tile(out_height: int, out_width: int, columns: ColumnTaps, target: Target) -> tuple[int, int] | None:
    """(output rows, vectors a row) of the depthwise kernel's stacked tile, or None where it does not pay.

    A stacked tile holds R output rows x V vectors (a row's pixels, or a balanced share of them) and walks
    the window column by column: the column's taps' weights in registers, each input row the column
    reads loaded once (V vectors) for the taps of every output row it serves.  Per output vector that is
    columns x (R + reach) / R loads and taps / (R V) broadcasts instead of the flat tile's one load and
    broadcast per tap (7x7: ~14 against ~50), which made the flat tile load-bound.  R and V: the fewest
    loads per output vector whose accumulators, weights, one row's loads and a spare fit the registers,
    with at least as many accumulators as FMA chains (7-row maps keep the flat tile's channel pairs), or, in
    pipe-wide vectors (stacked_width), the whole plane: 5x5 576x7x7 on Zen 4 AVX-512, 1 thread, thread time,
    flat tiles of 2 channels x 5 zmm -> 7 rows x 1 ymm (7 accumulators): C 47-53 -> 29-34 us, LLVM 44-66 ->
    29-31 (onnxruntime 47 with its Hardswish)."""
    width, registers = stacked_width(out_width, target), target.vector_registers
    row_vectors = math.ceil(out_width / width)
    chains = target.fma_chains if width == target.max_vector_width else min(target.fma_chains, out_height * row_vectors)
    best, best_cost = None, math.inf
    for most_vectors in range(1, row_vectors + 1):
        vectors, _, _ = depthwise_tiles(row_vectors, most_vectors)
        most_rows = min(out_height, (registers - 1 - columns.most - vectors) // vectors)
        if most_rows < 2:
            continue
        rows = math.ceil(out_height / math.ceil(out_height / most_rows))
        if rows * vectors < chains:
            continue
        cost = (columns.columns * (rows + columns.reach) * vectors + columns.taps) / (rows * vectors)
        if cost < best_cost:
            best, best_cost = (rows, vectors), cost
    return best


def depthwise_tiles(vectors: int, most: int) -> tuple[int, int, int]:
    """A band of `vectors` vectors in balanced register tiles of up to `most`: (vectors per tile, full
    tiles, vectors of the remainder tile, 0 for none)."""
    tile = math.ceil(vectors / math.ceil(vectors / most))
    return tile, vectors // tile, vectors % tile


# At most this many border tiles (each its own variant of the tile) for a row read without a padded copy.
MAX_BORDER_TILES = 4


@dataclass(frozen=True)
class RowTiles:
    """A row's register tiles read straight from the unpadded input: those before `interior` and those
    from its end on read columns of the padding (each compiled with its taps outside the row left out,
    [first pixel, pixels]); the full tiles in `interior` ([first pixel, end)) read only the row."""
    left: tuple[tuple[int, int], ...]
    interior: tuple[int, int]
    right: tuple[tuple[int, int], ...]


def row_tiles(out_width: int, row_tile: int, inside: tuple[int, int]) -> RowTiles:
    """The tiles of a row of `row_tile` pixels (the last one shorter), given the outputs [first, end) whose
    windows lie inside the input (shapes.windows_inside)."""
    first, end = inside
    tiles = [(ow, min(row_tile, out_width - ow)) for ow in range(0, out_width, row_tile)]
    clean = [ow for ow, r in tiles if r == row_tile and ow >= first and ow + r <= end]
    start = clean[0] if clean else out_width
    stop = clean[-1] + row_tile if clean else out_width
    return RowTiles(tuple(t for t in tiles if t[0] < start), (start, stop), tuple(t for t in tiles if t[0] >= stop))


def in_place_row_tiles(sched: ConvSchedule, out_width: int, inside: tuple[int, int]) -> RowTiles | None:
    """Direct one-row tiles read the unpadded input in place, without the padded copy, where few tiles of a
    row touch its padding: the copy was a pass over the input before the first FMA (3x3 stride 2 128x56,
    Sapphire Rapids, 1 thread, C: ~5 % of the layer's time).  None: keep the copy."""
    if sched.path != "direct" or sched.tile_rows != 1:
        return None
    tiles = row_tiles(out_width, sched.row_tile, inside)
    return tiles if len(tiles.left) + len(tiles.right) <= MAX_BORDER_TILES else None


def pixels_accumulators(target: Target) -> tuple[int, int]:
    """The pixels tile's (pixel vectors, accumulators) at most: a vector of pixels per 8 registers and 3/4 of
    the file as accumulators, the rest its input vectors and one broadcast weight.  16 registers: 2 vectors x 6
    channels (accumulator_budget's measured 12).  32: 4 x 6, each broadcast weight serving 4 FMAs and each
    input vector 6 (10 loads per 24 FMAs, 2 x 8 took 10 per 16): conv1d 64x16000 k3, AMD EPYC Zen 4 AVX-512,
    1 thread, thread-time medians interleaved in one process, us, C / LLVM: 2 x 8 6373 / 5397 -> 4 x 6
    5238 / 4979 and 4509 / 4715 in a second run (4 x 5: 4692 / 4711; 2 x 12 and 2 x 14 slower, LLVM 6635 /
    8409: its spills; 4 x 7 5570 / 6676)."""
    return max(1, target.vector_registers // 8), target.vector_registers * 3 // 4


def pixels_schedule(ocg: int, out_width: int, target: Target, threads: int, inner: bool) -> ConvSchedule:
    """Up to pixels_accumulators' vectors of pixels x as many output channels as its accumulators leave."""
    width = target.max_vector_width
    most, accumulators = pixels_accumulators(target)
    vectors = max(1, min(most, out_width // width))
    channels = max(1, min(ocg, accumulators // most))
    return ConvSchedule("pixels", width, channels, vectors, threads, inner)


def tiles_per_chunk(full_tiles: int, tile_pixels: int) -> int:
    """Long rows (1-D signals, flattened 1x1 planes) split into chunks of about 1024 pixels: work
    for every thread, and a chunk's input stays in cache while its tiles run."""
    return max(1, min(full_tiles, 1024 // tile_pixels))


def row_tail(out_width: int, vectors: int, width: int) -> list[list[int]]:
    """The tiles after the full ones along a row, as [vectors, lanes, offset]: whole vectors first,
    then halved vectors down to 4 lanes, then single pixels (lanes 1)."""
    done = out_width // (vectors * width) * vectors * width
    tail, lanes = [], width
    while done < out_width:
        count = (out_width - done) // lanes
        if count:
            tail.append([count, lanes, done])
            done += count * lanes
        lanes = lanes // 2 if lanes > 4 else 1
    return tail


# The separable pool's column buffer lives on the stack: at most this many floats.
MAX_POOL_SPAN = 8192


def separable_pool(indices: bool, vertical_taps: int, span: int) -> bool:
    """Reduce the (kd, kh) taps over whole rows first, then the kw taps: when there are vertical taps to
    share, no indices to track, and the row's span fits the stack buffer."""
    return not indices and vertical_taps > 1 and span <= MAX_POOL_SPAN


# The separable pool's column buffer holds a block of output rows: at most this many floats (8 KB of L1).
POOL_BLOCK_FLOATS = 2048


def pool_rows(span: int, out_height: int) -> int:
    """Output rows per column buffer of the separable pool: enough that the horizontal pass reads columns
    stored a row or more earlier (store forwarding fails on overlapping vectors), within the block."""
    return max(1, min(out_height, POOL_BLOCK_FLOATS // span))


def dense_schedule(out_features: int, flops: int, target: Target, threads: int) -> DenseSchedule:
    """Blocks of up to fma_chains feature vectors (each an FMA chain over the whole reduction), balanced:
    LeNet-5's 84 features in one block of 6 vectors of 16, not 2 of 4 (a third of their weights padding)."""
    width = _vector_width_for(out_features, target)
    vectors = math.ceil(out_features / width)
    oc_vectors = math.ceil(vectors / math.ceil(vectors / target.fma_chains))
    return DenseSchedule(width, oc_vectors, threads_for(flops, threads))


def conv_transpose_schedule(out_channels_per_group: int, row_length: int, flops: int, target: Target,
                            threads: int) -> ConvSchedule:
    """Always the direct tile (output channels in vectors, at least 4 lanes): a transposed row splits
    into stride phases too short to vectorize over pixels.  row_length: the longest phase.  Half the
    register file for accumulators, as measured before the direct path took 28 on AVX-512: its tile
    has no register hints."""
    return conv_schedule(max(out_channels_per_group, 4), row_length, flops, target, threads,
                         budget=target.vector_registers // 2)


# -- Winograd F(m x m, 3 x 3) -------------------------------------------------------------------

# Output tile edges the cost model considers.  F(6x6) is not among them: measured against F(4x4) on
# the benchmark's 3x3 layers (Sapphire Rapids AVX-512, 1 thread, both backends, README "Winograd") it
# never won: 64x56 +6-10 %, 128x28 +10-20 %, 256x14 +20 %, 64x56 batch 8 +2-18 %, VGG 64x224 level;
# its products are 9-18 % fewer, but its transforms (44 + 38 nonzero coefficients against 22 + 18) and
# its 64-point product buffer cost more than they save.  `tune=True` still measures it (WINOGRAD_TUNED):
# its float32 error, up to 2.7e-5 of the output's scale there, is inside the 1e-4 the tests hold.
WINOGRAD_TILES = (2, 4)
WINOGRAD_TUNED = (2, 4, 6)
# Fewest channels per group (input and output) for Winograd: below it the transforms cost as much as
# the products they save.
WINOGRAD_MIN_CHANNELS = 16
# The direct path's measured share of the FMA peak on regular 3x3 layers (41-85 %: 0.7 typical).
DIRECT_EFFICIENCY = 0.7
# The Winograd products' share of the FMA peak, the input and output transforms' cost in vector
# operations per transformed value and channel vector, and the scalar stores of the epilogue.
WINOGRAD_GEMM_EFFICIENCY = 0.8
WEIGHT_STREAM_BYTES_PER_CYCLE = 2   # transformed weights past L2 stream from L3 at about this rate (measured:
# F(4x4) on 512x7x7 streamed its 37 MB in 3.7 ms on the shared Sapphire Rapids host, ~2.5 bytes a cycle;
# F(2x2) there, 17 MB, ran 1.4x slower than onnxruntime: that layer stays direct)


def winograd_accumulators(target: Target) -> int:
    """The products' register tile: R tiles x OCV vectors, plus OCV weight vectors and a broadcast."""
    return target.vector_registers * 3 // 4


def winograd_tiles(out_h: int, out_w: int, m: int) -> int:
    return -(-out_h // m) * -(-out_w // m)


def winograd_schedule(m: int, in_channels_per_group: int, out_channels_per_group: int, groups: int,
                      out_h: int, out_w: int, flops: int, target: Target, threads: int) -> ConvSchedule:
    """F(m x m, 3 x 3): OCV vectors of output channels x R tiles in registers; chunks of tiles whose
    transformed input ([G][P][TB][CG]) takes half of L2, whole register tiles."""
    width = _vector_width_for(out_channels_per_group, target)
    oc_vectors = 2 if out_channels_per_group >= 2 * width else 1
    tiles = winograd_tiles(out_h, out_w, m)
    most = max(1, winograd_accumulators(target) // oc_vectors)
    # balanced register tiles: the remainder tile about as large as the others
    rtile = math.ceil(tiles / math.ceil(tiles / most))
    cv = _vector_width_for(in_channels_per_group, target)
    points, cgp = (m + 2) ** 2, math.ceil(in_channels_per_group / cv) * cv
    fit = max(1, target.l2_bytes // 2 // (groups * points * cgp * 4) // rtile) * rtile
    chunk = tiles if tiles <= fit else fit
    return ConvSchedule("winograd", width, oc_vectors, rtile, threads_for(flops, threads),
                        winograd_m=m, chunk_tiles=chunk)


def winograd_cycles(m: int, batch: int, cg: int, ocg: int, groups: int, out_h: int, out_w: int,
                    target: Target) -> float:
    """Estimated cycles of F(m x m, 3 x 3) on one core: the products at WINOGRAD_GEMM_EFFICIENCY of the
    FMA peak, transforms as vector operations (one per nonzero coefficient), the epilogue's scalar
    stores, and the transformed weights streamed once per sample when they do not fit L2."""
    lanes, alpha = target.max_vector_width, m + 2
    points, tiles = alpha * alpha, winograd_tiles(out_h, out_w, m)
    cgp, ocgp = math.ceil(cg / lanes) * lanes, math.ceil(ocg / lanes) * lanes
    per_cycle = target.flops_per_cycle
    gemm = batch * groups * points * tiles * cgp * ocgp * 2 / (per_cycle * WINOGRAD_GEMM_EFFICIENCY)
    # each transform: two passes of alpha (or m) rows of ~alpha/2 + 1 terms, per tile and channel vector
    terms = alpha // 2 + 1
    transforms = batch * groups * tiles * (cgp / lanes * 2 * points * terms
                                          + ocgp / lanes * (alpha + m) * m * terms)
    stores = batch * groups * ocg * out_h * out_w + batch * groups * cg * (out_h + 2) * (out_w + 2)
    weights = groups * points * cgp * ocgp * 4
    stream = batch * weights / WEIGHT_STREAM_BYTES_PER_CYCLE if weights > target.l2_bytes else 0
    return max(gemm, stream) + transforms + stores


def direct_cycles(flops: int, target: Target) -> float:
    return flops / (target.flops_per_cycle * DIRECT_EFFICIENCY)


def choose_winograd(batch: int, cg: int, ocg: int, groups: int, out_h: int, out_w: int, flops: int,
                    target: Target) -> int:
    """The m of the fastest F(m x m, 3 x 3) by the estimate, or 0 where the direct path is estimated
    faster or the groups are too narrow."""
    if min(cg, ocg) < WINOGRAD_MIN_CHANNELS:
        return 0
    best = min(WINOGRAD_TILES, key=lambda m: winograd_cycles(m, batch, cg, ocg, groups, out_h, out_w, target))
    faster = winograd_cycles(best, batch, cg, ocg, groups, out_h, out_w, target) < direct_cycles(flops, target)
    return best if faster else 0


# -- narrow: few output channels, output pixels in vectors over whole rows -------------------------

def _lane_use(useful: int, width: int, target: Target) -> float:
    """The share of the widest vector's lanes that hold useful values, in vectors of `width` lanes
    covering `useful` values (a narrower vector leaves the rest of the register idle)."""
    return useful / (math.ceil(useful / width) * width) * width / target.max_vector_width


def _pixel_width(out_width: int, target: Target) -> int:
    """The widest of the target's vectors, 8 or 4 lanes, that fits in an output row (0: none)."""
    width = target.max_vector_width
    while width > 4 and width > out_width:
        width //= 2
    return width if width <= out_width else 0


# The most output channels per group the narrow path takes: up to half of AVX-512's 16 lanes, where the direct
# path's channel vectors are half-width registers; past it the channels' blocks would re-read the input.
NARROW_MAX_CHANNELS = 8


def narrow_schedule(out_channels_per_group: int, out_width: int, out_height: int, flops: int, target: Target,
                    threads: int, stride_h: int = 1, kernel_h: int = 1) -> ConvSchedule | None:
    """Output pixels along a row in vectors, the last one ending at the row's end (overlapping the one
    before it: no tail, no masks), every output channel of a block broadcast from its packed weights:
    where those vectors hold more of the register's lanes than the direct path's channel vectors.
    LeNet-5's C1, 1 -> 6 channels, 28-pixel rows: direct 8-channel vectors use 6 of 16 lanes on
    AVX-512, 2 vectors of 16 pixels 28 of 32 (Sapphire Rapids, 1 thread, C: 4.35 -> 2.93 us with tanh,
    1.43 us without); flat blocks of 4 rows (7 vectors) all 112 (flat_pays)."""
    ocg = out_channels_per_group
    width = _pixel_width(out_width, target)
    if not width or ocg > NARROW_MAX_CHANNELS:
        return None
    if _lane_use(out_width, width, target) <= _lane_use(ocg, _vector_width_for(ocg, target), target):
        return None
    flat = stride_h == 1 and flat_pays(ocg, out_width, out_height, kernel_h, target)
    return narrow_tiles(ocg, out_width, out_height, target, threads_for(flops, threads), flat=flat)


def flat_rows(out_width: int, out_height: int, width: int) -> int:
    """The fewest output rows whose pixels make whole vectors of `width` (4 rows of 28 in 16-pixel vectors),
    where a row does not and they divide the plane's rows; else 0."""
    if out_width % width == 0:
        return 0
    rows = width // math.gcd(out_width, width)
    return rows if out_height % rows == 0 else 0


def flat_pays(ocg: int, out_width: int, out_height: int, kernel_h: int, target: Target) -> bool:
    """Whether flat row blocks save more FMAs than their input copy costs: per input channel and kernel
    column, a row's copy is about a row of stores, against the lanes a row wastes (its last vector's
    overlap) times the ocg channels and kernel_h rows of taps that read it."""
    width = _pixel_width(out_width, target)
    if not width or not flat_rows(out_width, out_height, width):
        return False
    wasted = math.ceil(out_width / width) * width - out_width
    return wasted * ocg * kernel_h > out_width


def narrow_tiles(ocg: int, out_width: int, out_height: int, target: Target, threads: int,
                 flat: bool = False) -> ConvSchedule:
    """The narrow path's register tile: MR channels x NV pixel vectors x RH rows of accumulators, with
    the RH * NV input vectors and a broadcast within the register file (one spare); the fewest channel
    blocks (each re-reads the input) that leave room for two pixel vectors, then the most accumulators,
    balanced along the row and down the plane.  Needs an output row of at least 4 pixels.  With `flat`
    (where flat_rows finds blocks; the layer's rows at stride 1), blocks of flat_rows rows run as one row
    of tiles of 1 row x NV vectors: tile_rows is then the block's rows."""
    width = _pixel_width(out_width, target)
    block = flat_rows(out_width, out_height, width) if flat else 0
    if block:
        return replace(_narrow_register_tile(ocg, block * out_width, 1, width, target, threads), tile_rows=block,
                       flat=True)
    return _narrow_register_tile(ocg, out_width, out_height, width, target, threads)


def _narrow_register_tile(ocg: int, out_width: int, out_height: int, width: int, target: Target,
                          threads: int) -> ConvSchedule:
    """narrow_tiles' tile for rows of `out_width` pixels in vectors of `width`."""
    row_vectors = math.ceil(out_width / width)
    budget = target.vector_registers - 2
    most = max(1, budget // min(2, row_vectors) - 1)
    mr = math.ceil(ocg / math.ceil(ocg / most))
    best = (1, 1)
    for rows in range(1, out_height + 1):
        for vectors in range(1, row_vectors + 1):
            if rows * vectors * (mr + 1) <= budget and (rows * vectors, vectors) > (best[0] * best[1], best[1]):
                best = (rows, vectors)
    rows, vectors = best
    vectors = math.ceil(row_vectors / math.ceil(row_vectors / vectors))
    rows = math.ceil(out_height / math.ceil(out_height / rows))
    return ConvSchedule("narrow", width, mr, vectors, threads, tile_rows=rows)


def narrow_row_tiles(out_width: int, width: int, vectors: int) -> tuple[int, list[int], int]:
    """An output row in tiles of `vectors` pixel vectors: (full tiles, each `vectors` x `width` pixels
    from the row's start; the last tile's vector offsets from its start, empty if none; where it starts).
    The row's last vector ends at the row's end, overlapping the one before it where `width` does not
    divide the row (28 pixels in 16: vectors at 0 and 12; the 4 pixels both hold are computed twice alike)."""
    starts = [min(i * width, out_width - width) for i in range(math.ceil(out_width / width))]
    full = len(starts) // vectors if out_width % width == 0 else (len(starts) - 1) // vectors
    rest = starts[full * vectors:]
    return full, [s - rest[0] for s in rest], rest[0] if rest else 0

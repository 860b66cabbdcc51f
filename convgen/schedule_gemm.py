"""How a 1x1 convolution runs as a matrix product: Y[OC][P] = W[OC][C] x X[C][P] per sample (NCHW:
each input and output channel is one contiguous row of P pixels).  The register tile, the cache
blocks and the threads, from the target's facts; templates/conv1x1.c.j2 and
backends/llvm/conv1x1.py take them as plain integers.

The micro-kernel holds MR output channels x NV vectors of VW pixels in registers: per input channel,
NV vector loads of the packed input panel and MR weight broadcasts feed MR * NV FMAs (as BLIS's
sgemm kernels: the broadcast side is the weights, packed at compile time as [OCB][C][MR]).  Measured
against the pixels path it replaces (Sapphire Rapids AVX-512, 1 thread, C, us): 256->64 56x56 740 ->
669, 64->256 604 -> 633/601, 96->384 1427 -> 1311/1267, 384->96 1637 -> 1384/1402.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .schedule import ConvSchedule, row_tail, threads_for
from .target import Target


@dataclass(frozen=True)
class GemmBlocks:
    kc: int             # input channels per K block: the packed input micro-panel [KC][NR] stays in L1
    nc: int             # pixels per block, whole register tiles: a thread's packed panels [KC][NC] stay in L2
    last_full: int      # full register tiles in the last pixel block
    tail: list[list[int]]  # the last block's tail tiles after them, [vectors, lanes, offset in the block]


# Vector registers besides the accumulators and the NV input vectors: one weight broadcast, one spare.
SPARE_REGISTERS = 2


def register_tile(target: Target, out_channels: int) -> tuple[int, int]:
    """(MR, NV): NV the most pixel vectors that leave room for at least FMA-chains (8) channels, their
    input vectors, a broadcast and a spare (MR * NV + NV + 2 <= registers; 2 where none does); MR the
    channels, up to that room, with the fewest loads per useful FMA: (MR + NV) / (MR * NV), times the
    padding of the last channel block.  16 ymm: 6 x 2 (BLIS's haswell 6 x 16 floats); 32 zmm: 3 vectors
    of 8 or 9 channels.  Measured, Sapphire Rapids, 1 thread, 56x56, C, two interleaved runs (us): 14 x 2
    / 9 x 3 / 8 x 3 / 6 x 4: 256->64 711,714 / 723,716 / 669,666 / 694,701; 64->256 723,701 / 630,646 /
    633,601 / 642,638; 96->384 1539,1440 / 1347,1205 / 1311,1267 / 1391,1264; 384->96 1410,1353 /
    1410,1418 / 1384,1402 / 1462,1406."""
    def room(nv: int) -> int:
        return (target.vector_registers - SPARE_REGISTERS - nv) // nv
    nv = max([v for v in range(2, target.vector_registers) if room(v) >= target.fma_chains], default=2)

    def loads_per_fma(mr: int) -> float:
        padded = math.ceil(out_channels / mr) * mr
        return padded / out_channels * (mr + nv) / (mr * nv)
    best = min(range(1, max(1, room(nv)) + 1), key=lambda mr: (loads_per_fma(mr), math.ceil(out_channels / mr) * mr))
    return balanced_channels(best, out_channels), nv


def balanced_channels(mr: int, out_channels: int) -> int:
    """At most mr channels per block, as few blocks as that takes, the channels spread evenly over them."""
    mr = min(mr, out_channels)
    return math.ceil(out_channels / math.ceil(out_channels / mr))


def tile_variants(target: Target) -> list[tuple[int, int]]:
    """(MR, NV) for NV = 2..4 pixel vectors, each with the most channels that fit (tuning measures them)."""
    fits = [((target.vector_registers - SPARE_REGISTERS - nv) // nv, nv) for nv in (2, 3, 4)]
    return [(mr, nv) for mr, nv in fits if mr >= 1]


def k_block(in_channels: int, nr: int, target: Target) -> int:
    """Input channels per K block: the input micro-panel [KC][NR] in half of L1 (the weights' [KC][MR]
    panel streams through the rest), balanced over the input channels."""
    most = max(8, target.l1d_bytes // 2 // (4 * nr))
    return math.ceil(in_channels / math.ceil(in_channels / most))


def pixel_block(pixels: int, kc: int, out_channels: int, nr: int, target: Target) -> int:
    """Pixels per block, whole register tiles: the block's packed input [KC][NC] and its output rows
    [OC][NC] (read back between K blocks) in a quarter of L2."""
    most = max(1, target.l2_bytes // 4 // (4 * (kc + out_channels)) // nr) * nr
    return min(most, math.ceil(pixels / nr) * nr)


def gemm_schedule(out_channels: int, flops: int, target: Target, threads: int) -> ConvSchedule:
    """The matrix product's register tile as a ConvSchedule (path "gemm": oc_vectors holds MR output
    channels, row_tile NV pixel vectors of vector_width), so tuning measures it beside the other paths."""
    mr, nv = register_tile(target, out_channels)
    return ConvSchedule("gemm", target.max_vector_width, mr, nv, threads_for(flops, threads))


def gemm_blocks(sched: ConvSchedule, in_channels: int, out_channels: int, pixels: int, batch: int,
                target: Target) -> GemmBlocks:
    """The cache blocks of a "gemm" schedule; with threads and few blocks, the pixel block (whole tiles, at
    most the cache's) that loads the busiest thread least."""
    nr = sched.row_tile * sched.vector_width
    kc = k_block(in_channels, nr, target)
    nc = pixel_block(pixels, kc, out_channels, nr, target)
    if sched.threads > 1 and batch * math.ceil(pixels / nc) < FEW_ITEMS * sched.threads:
        nc = min(range(nc, 0, -nr), key=lambda size: (busiest_thread(pixels, size, batch, sched.threads), -size))
    last = pixels - (math.ceil(pixels / nc) - 1) * nc
    return GemmBlocks(kc, nc, last // nr, row_tail(last, sched.row_tile, sched.vector_width))


# Below this many (sample, pixel block) items a thread, gemm_blocks balances the threads' pixels.
FEW_ITEMS = 8


def busiest_thread(pixels: int, nc: int, batch: int, threads: int) -> int:
    """The pixels of the busiest thread when the (sample, pixel block) items, blocks of nc pixels and a
    shorter last, split into contiguous shares as OpenMP's static schedule (and the LLVM backend's) does:
    768 -> 192 28x28 at 2 threads had blocks 384, 384, 16, one thread 768 pixels and the other 16."""
    blocks = math.ceil(pixels / nc)
    items = ([nc] * (blocks - 1) + [pixels - (blocks - 1) * nc]) * batch
    share, extra = divmod(len(items), threads)
    loads, at = [], 0
    for t in range(threads):
        count = share + (t < extra)
        loads.append(sum(items[at:at + count]))
        at += count
    return max(loads)


def applies(pixels: int, out_channels: int, target: Target) -> bool:
    """The matrix product runs 1x1 layers with at least two vectors of pixels and a few output channels
    (below 4 the rowwise path); shorter maps (7x7) stay on the channel-vector paths."""
    return out_channels >= 4 and pixels >= 2 * target.max_vector_width

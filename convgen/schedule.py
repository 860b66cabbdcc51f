"""How each kernel runs: vector width, register tile, threads.  The op says what; this says how.

A small cost model picks the tiles; every choice is a plain integer the
templates use as a compile-time constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .target import Target

# Below this many FLOPs a layer runs on one thread: waking a team costs more than it saves.
MIN_FLOPS_PER_THREAD = 400_000


@dataclass(frozen=True)
class ConvSchedule:
    path: str            # "direct": output channels in vectors; "rowwise": output pixels in vectors
    vector_width: int    # float lanes per output-channel vector
    oc_vectors: int      # output-channel vectors in the register tile
    row_tile: int        # output pixels along W in the register tile
    threads: int


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


def accumulator_budget(target: Target) -> int:
    """Vector registers for accumulators.

    Half the register file: the rest holds weights and broadcast inputs.  Measured on a
    32-register AVX-512 host (3x3 64x56x56 conv, 1 thread): 28 accumulators made gcc spill
    (45 % of peak), 22 gave 82 %, 16 gave 80 % and the best 7x7/stride-2 and dilated layers.
    """
    return target.vector_registers // 2


def row_block(out_width: int) -> int:
    """Output pixels a rowwise kernel accumulates at once (a stack buffer the compiler vectorizes)."""
    return min(out_width, 256)


def conv_schedule(out_channels_per_group: int, out_width: int, flops: int, target: Target,
                  threads: int) -> ConvSchedule:
    if out_channels_per_group < 4:
        return ConvSchedule("rowwise", 0, 0, row_block(out_width), threads_for(flops, threads))
    width = _vector_width_for(out_channels_per_group, target)
    oc_vectors = 2 if out_channels_per_group >= 2 * width else 1
    max_rows = max(1, accumulator_budget(target) // oc_vectors)
    tiles = math.ceil(out_width / max_rows)
    row_tile = math.ceil(out_width / tiles)  # balance the tiles so the remainder tile is small
    return ConvSchedule("direct", width, oc_vectors, row_tile, threads_for(flops, threads))


def dense_schedule(out_features: int, flops: int, target: Target, threads: int) -> DenseSchedule:
    width = _vector_width_for(out_features, target)
    oc_vectors = min(4, math.ceil(out_features / width))
    return DenseSchedule(width, oc_vectors, threads_for(flops, threads))

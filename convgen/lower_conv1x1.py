"""Lowering of a 1x1 unpadded convolution of one group to the matrix-product kernel "conv_gemm"
(templates/conv1x1.c.j2, backends/llvm/conv1x1.py): Y[OC][P] = W[OC][C] x X[C][P] per sample, its
weights packed at compile time into [KB][OCB][KC][MR] panels, its blocks from convgen/schedule_gemm.py."""
from __future__ import annotations

import math

import numpy as np

from . import schedule_gemm
from .ir import Node
from .lower import KernelSpec, LowerContext, conv_operands, pack_conv_weights
from .schedule import ConvSchedule


def lower_conv_gemm(node: Node, ctx: LowerContext, p: dict, sched: ConvSchedule) -> KernelSpec:
    """p: the conv's window parameters; a stride-1 plane flattened to one row of OW pixels
    (lower._flatten_pointwise), a strided one (STRIDED) gathered by the packing.
    Scratch: each thread's packed input panels, [THREADS][KC * NC]."""
    pixels, mr = p["OD"] * p["OH"] * p["OW"], sched.oc_vectors
    blocks = schedule_gemm.gemm_blocks(sched, p["C"], p["OC"], pixels, p["N"], ctx.target)
    p.update(P=pixels, VW=sched.vector_width, MR=mr, NV=sched.row_tile, OCB=math.ceil(p["OC"] / mr),
             KC=blocks.kc, KB=math.ceil(p["C"] / blocks.kc), NC=blocks.nc, PB=math.ceil(pixels / blocks.nc),
             LAST_FULL=blocks.last_full, TAIL=blocks.tail, STRIDED=(p["SD"], p["SH"], p["SW"]) != (1, 1, 1))
    # stride 1: the first channel block's tiles pack their panels from the input rows as they compute (a
    # separate packing pass could not overlap the FMAs: a fifth of 256->64 56x56); a stride gathers first
    p["PACK_FIRST"] = not p["STRIDED"]
    weights = k_blocked_weights(pack_conv_weights(ctx.graph.constants[node.inputs[1]], 1, p["OCB"], 1, mr),
                                blocks.kc)
    # the single-pixel tail tiles read a channel block's weights as CV vectors of VW: the last block's read
    # passes its MR floats
    p["CV"] = math.ceil(mr / sched.vector_width)
    weights = np.concatenate([weights, np.zeros(p["CV"] * sched.vector_width, np.float32)])
    scratch = sched.threads * blocks.kc * blocks.nc * 4
    return KernelSpec("conv_gemm", p, conv_operands(node, node.inputs[1]), [("y", node.output)], scratch,
                      {"w": weights})


def k_blocked_weights(packed: np.ndarray, kc: int) -> np.ndarray:
    """[1][OCB][C][1][MR] -> [KB][OCB][kc][MR] (the last K block holds the remaining channels): a tile's
    channel blocks read one K block's weights as one stream (the prefetchers follow it; [OCB][C][MR] jumped
    C x MR floats between blocks: 192 -> 768 and 768 -> 192 28x28, C, 1 thread, -3 %)."""
    panels = packed.reshape(packed.shape[1], packed.shape[2], packed.shape[-1])
    return np.concatenate([panels[:, k0:k0 + kc].ravel() for k0 in range(0, panels.shape[1], kc)])

"""Lowering of a 1x1 unpadded convolution of one group to the matrix-product kernel "conv_gemm"
(templates/conv1x1.c.j2, backends/llvm/conv1x1.py): Y[OC][P] = W[OC][C] x X[C][P] per sample, its
weights packed at compile time into [OCB][C][MR] panels, its blocks from convgen/schedule_gemm.py."""
from __future__ import annotations

import math

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
    weights = pack_conv_weights(ctx.graph.constants[node.inputs[1]], 1, p["OCB"], 1, mr)  # [1][OCB][C][1][MR]
    scratch = sched.threads * blocks.kc * blocks.nc * 4
    return KernelSpec("conv_gemm", p, conv_operands(node, node.inputs[1]), [("y", node.output)], scratch,
                      {"w": weights})

"""Matrix products, lowered onto the linear kernel (dense.c.j2):

    "gemm"    GemmAttrs(alpha=1.0, beta=1.0, trans_a=False, trans_b=False, activation=None)
              inputs A, B[, C]: y = alpha * A' B' + beta * C (ONNX Gemm; A' = A^T when trans_a,
              B' = B^T when trans_b; C broadcasts to (M, N): a scalar, (N,), (1, N), (M, 1), (M, N))
    "matmul"  MatMulAttrs(activation=None)
              inputs A, B: numpy matmul (ONNX MatMul, torch.matmul); A may have leading axes,
              B must be a matrix (or a vector) for the kernel: a batched B is refused at compile time

Either B may be a constant (packed at compile time) or a run-time value (packed by the kernel);
C may be a constant or a run-time value.  `activation` is a fusable epilogue, as for linear.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..ir import TensorType, check_input_types
from .activation import Activation, apply_optional
from .registry import OpDef, register


@dataclass(frozen=True)
class GemmAttrs:
    alpha: float = 1.0
    beta: float = 1.0
    trans_a: bool = False
    trans_b: bool = False
    activation: Activation | None = None


@dataclass(frozen=True)
class MatMulAttrs:
    activation: Activation | None = None


def _infer_gemm(layer: str, attrs: GemmAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, (2, 3))
    c = types[2].shape if len(types) == 3 else None
    return (TensorType(shapes.gemm_shape(layer, types[0].shape, types[1].shape, c, attrs.trans_a, attrs.trans_b)),)


def gemm_reference(attrs: GemmAttrs, a, b, c=None) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    y = attrs.alpha * ((a.T if attrs.trans_a else a) @ (b.T if attrs.trans_b else b))
    if c is not None:
        y = y + attrs.beta * c.astype(np.float64)
    return apply_optional(attrs.activation, y).astype(np.float32)


def _gemm_flops(a: GemmAttrs, ins: list[TensorType], outs: tuple[TensorType, ...]) -> int:
    k = ins[0].shape[0] if a.trans_a else ins[0].shape[1]
    return outs[0].size * (2 * k + 2 * (len(ins) == 3))


register(OpDef(name="gemm", infer=_infer_gemm, flops=_gemm_flops, reference=gemm_reference, data_inputs=1))


def _infer_matmul(layer: str, attrs: MatMulAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 2)
    return (TensorType(shapes.matmul_shape(layer, types[0].shape, types[1].shape)),)


def matmul_reference(attrs: MatMulAttrs, a, b) -> np.ndarray:
    y = np.matmul(a.astype(np.float64), b.astype(np.float64))
    return apply_optional(attrs.activation, y).astype(np.float32)


register(OpDef(
    name="matmul",
    infer=_infer_matmul,
    flops=lambda a, ins, outs: 2 * outs[0].size * ins[0].shape[-1],
    reference=matmul_reference,
    data_inputs=1,
))

"""Local response normalization across channels, op "lrn" with LRNAttrs(size, alpha, beta, bias, before):

    y[n, c, ...] = x[n, c, ...] / (bias + alpha / size * sum of x[n, j, ...]^2 over the window)^beta

the window being channels c - before .. c - before + size - 1, clipped to [0, C).  ONNX LRN puts
(size - 1) // 2 channels before c (before=None means that); torch.nn.LocalResponseNorm puts
size // 2 before (k is its bias).  The two differ only for even sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


@dataclass(frozen=True)
class LRNAttrs:
    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 1.0
    before: int | None = None

    @property
    def window_before(self) -> int:
        """Channels before c in the window."""
        return (self.size - 1) // 2 if self.before is None else self.before

    @property
    def window_after(self) -> int:
        return self.size - 1 - self.window_before


def _infer(layer: str, attrs: LRNAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    if types[0].ndim < 2:
        raise ShapeError(f"{layer}: input must have rank >= 2 (N, C, ...), got shape {types[0].shape}")
    if attrs.size < 1 or not 0 <= attrs.window_before < attrs.size:
        raise ShapeError(f"{layer}: size must be >= 1 with 0 <= before < size, got size={attrs.size}, "
                         f"before={attrs.before}")
    return (types[0],)


def lrn_reference(attrs: LRNAttrs, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    channels = x.shape[1]
    squares = np.zeros_like(x)
    for c in range(channels):
        lo, hi = max(0, c - attrs.window_before), min(channels - 1, c + attrs.window_after)
        squares[:, c] = np.sum(x[:, lo:hi + 1] ** 2, axis=1)
    return (x / (attrs.bias + attrs.alpha / attrs.size * squares) ** attrs.beta).astype(np.float32)


register(OpDef(
    name="lrn",
    infer=_infer,
    flops=lambda a, ins, outs: (2 * a.size + 4) * outs[0].size,
    reference=lrn_reference,
))

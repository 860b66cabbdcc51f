"""Per-channel elementwise ops: batch_norm (inference).  add/sub/mul/div/sum live in binary.py."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .activation import Activation, apply_optional
from .registry import OpDef, register


@dataclass(frozen=True)
class BatchNormAttrs:
    eps: float = 1e-5
    activation: Activation | None = None


def _infer_batch_norm(layer: str, attrs: BatchNormAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 5)
    x = types[0]
    if x.ndim < 2:
        raise ShapeError(f"{layer}: input must have rank >= 2 (N, C, ...), got shape {x.shape}")
    for what, t in zip(("weight", "bias", "running_mean", "running_var"), types[1:]):
        if t.shape != (x.shape[1],):
            raise ShapeError(f"{layer}: axis 1 (channels): {what} must have shape ({x.shape[1]},), got {t.shape}")
    return (x,)


def batch_norm_scale_shift(eps: float, gamma, beta, mean, var) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm at inference is y = x*scale + shift per channel."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return scale, beta.astype(np.float64) - mean.astype(np.float64) * scale


def batch_norm_reference(attrs: BatchNormAttrs, x, gamma, beta, mean, var) -> np.ndarray:
    scale, shift = batch_norm_scale_shift(attrs.eps, gamma, beta, mean, var)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    y = x.astype(np.float64) * scale.reshape(per_channel) + shift.reshape(per_channel)
    return apply_optional(attrs.activation, y).astype(np.float32)


register(OpDef(
    name="batch_norm",
    infer=_infer_batch_norm,
    flops=lambda a, ins, outs: 2 * outs[0].size,
    reference=batch_norm_reference,
))

"""Convolution (1-D/2-D/3-D, groups, dilation) and the locally connected layer.

conv inputs: x (N, C, *spatial), weight (OC, C/groups, *kernel), optional bias (OC,); with
attrs.residual, always the bias and then a fourth input, a tensor of the output's shape added before the
activation (passes/fuse_residual.py makes these from conv -> add: a bias of zeros where there was none).
locally_connected inputs: x, weight (*out_spatial, OC, C, *kernel), optional bias (OC, *out_spatial):
a convolution whose weights are not shared across positions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .activation import Activation, apply_optional
from .registry import OpDef, register


@dataclass(frozen=True)
class ConvAttrs:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int = 1
    activation: Activation | None = None
    residual: bool = False   # y = activation(conv(x) + bias + skip), skip the fourth input

    @property
    def ndim(self) -> int:
        return len(self.kernel)


@dataclass(frozen=True)
class LocallyConnectedAttrs:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    activation: Activation | None = None

    @property
    def ndim(self) -> int:
        return len(self.kernel)

    @property
    def dilation(self) -> tuple[int, ...]:
        return (1,) * self.ndim


def conv_output_type(layer: str, attrs, x: TensorType, out_channels: int) -> TensorType:
    shapes.check_rank(layer, x.shape, attrs.ndim + 2)
    spatial = shapes.window_output_shape(layer, x.shape[2:], attrs.kernel, attrs.stride,
                                         attrs.pads, attrs.dilation)
    return TensorType((x.shape[0], out_channels) + spatial)


def _check_param(layer: str, what: str, t: TensorType, expected: tuple[int, ...]) -> None:
    if t.shape != expected:
        raise ShapeError(f"{layer}: {what} must have shape {expected}, got {t.shape}")


def _infer_conv(layer: str, attrs: ConvAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 4 if attrs.residual else (2, 3))
    if attrs.residual:
        out = _infer_conv(layer, replace(attrs, residual=False), types[:3])
        _check_param(layer, "residual input", types[3], out[0].shape)
        return out
    x, w = types[0], types[1]
    shapes.check_rank(layer, w.shape, attrs.ndim + 2, "weight")
    out_channels = w.shape[0]
    shapes.check_groups(layer, x.shape[1] if x.ndim > 1 else 0, out_channels, attrs.groups)
    shapes.check_channels(layer, x.shape[1], w.shape[1] * attrs.groups)
    _check_param(layer, "weight", w, (out_channels, x.shape[1] // attrs.groups) + attrs.kernel)
    if len(types) == 3:
        _check_param(layer, "bias", types[2], (out_channels,))
    return (conv_output_type(layer, attrs, x, out_channels),)


def _window_flops(in_channels_per_output: int, attrs, ins: list[TensorType], outs: tuple[TensorType, ...]) -> int:
    """A multiply and an add per tap of every output, plus its bias (and a residual conv's skip)."""
    macs_per_output = in_channels_per_output * math.prod(attrs.kernel)
    return outs[0].size * (2 * macs_per_output + len(ins) - 2)


def window_of(attrs, x: TensorType) -> tuple[tuple[int, int, int], ...]:
    return tuple(zip(attrs.kernel, attrs.stride, attrs.dilation))


def window_slices(start: tuple[int, ...], out_spatial: tuple[int, ...], stride: tuple[int, ...]):
    return tuple(slice(b, b + (o - 1) * s + 1, s) for b, o, s in zip(start, out_spatial, stride))


def _pad_input(x: np.ndarray, attrs) -> np.ndarray:
    return np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [tuple(p) for p in attrs.pads])


def conv_reference(attrs: ConvAttrs, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                   skip: np.ndarray | None = None) -> np.ndarray:
    n, c = x.shape[:2]
    oc, g = w.shape[0], attrs.groups
    out_spatial = shapes.window_output_shape("reference", x.shape[2:], attrs.kernel, attrs.stride,
                                             attrs.pads, attrs.dilation)
    xp = _pad_input(x, attrs)
    xp = xp.reshape((n, g, c // g) + xp.shape[2:])
    wg = w.astype(np.float64).reshape((g, oc // g, c // g) + attrs.kernel)
    out = np.zeros((n, g, oc // g) + out_spatial)
    for k in np.ndindex(*attrs.kernel):
        start = tuple(ki * d for ki, d in zip(k, attrs.dilation))
        patch = xp[(slice(None),) * 3 + window_slices(start, out_spatial, attrs.stride)]
        out += np.einsum("ngc...,goc->ngo...", patch, wg[(Ellipsis,) + k])
    out = out.reshape((n, oc) + out_spatial)
    if b is not None:
        out += b.astype(np.float64).reshape((1, oc) + (1,) * len(out_spatial))
    if attrs.residual:
        out += skip.astype(np.float64)
    return apply_optional(attrs.activation, out).astype(np.float32)


register(OpDef(
    name="conv",
    infer=_infer_conv,
    flops=lambda a, ins, outs: _window_flops(ins[1].shape[1], a, ins, outs),
    reference=conv_reference,
    window=window_of,
))


def _infer_locally_connected(layer: str, attrs: LocallyConnectedAttrs, types: list[TensorType]):
    check_input_types(layer, types, (2, 3))
    x, w = types[0], types[1]
    shapes.check_rank(layer, w.shape, 2 * attrs.ndim + 2, "weight")
    out_channels = w.shape[attrs.ndim]
    out = conv_output_type(layer, attrs, x, out_channels)
    _check_param(layer, "weight", w, out.shape[2:] + (out_channels, x.shape[1]) + attrs.kernel)
    if len(types) == 3:
        _check_param(layer, "bias", types[2], (out_channels,) + out.shape[2:])
    return (out,)


def locally_connected_reference(attrs: LocallyConnectedAttrs, x: np.ndarray, w: np.ndarray,
                                b: np.ndarray | None = None) -> np.ndarray:
    nd = attrs.ndim
    out_spatial = w.shape[:nd]
    xp = _pad_input(x, attrs)
    out = np.zeros((x.shape[0], w.shape[nd]) + out_spatial)
    letters = "hwd"[:nd]
    for k in np.ndindex(*attrs.kernel):
        patch = xp[(slice(None),) * 2 + window_slices(k, out_spatial, attrs.stride)]
        wk = w.astype(np.float64)[(Ellipsis,) + k]  # (*out_spatial, OC, C)
        out += np.einsum(f"nc{letters},{letters}oc->no{letters}", patch, wk)
    if b is not None:
        out += b.astype(np.float64)[None]
    return apply_optional(attrs.activation, out).astype(np.float32)


register(OpDef(
    name="locally_connected",
    infer=_infer_locally_connected,
    flops=lambda a, ins, outs: _window_flops(ins[0].shape[1], a, ins, outs),
    reference=locally_connected_reference,
    window=window_of,
))

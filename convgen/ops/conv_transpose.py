"""Transposed convolution (1-D/2-D/3-D): torch's ConvTransposeNd and ONNX ConvTranspose.

op "conv_transpose", attrs ConvTransposeAttrs:
    kernel, stride, dilation     one int per spatial axis
    pads                         (begin, end) per axis: crops the full result (torch `padding` p is (p, p))
    output_padding               extra outputs at the end of each axis (>= 0; the torch front ends also
                                 check torch's "smaller than stride or dilation")
    groups, activation           as conv
inputs: x (N, C_in, *spatial), weight (C_in, C_out/groups, *kernel) as torch and ONNX store it,
optional bias (C_out,).

    out = (in - 1)*stride - pad_begin - pad_end + dilation*(k-1) + 1 + output_padding

ONNX's auto_pad and output_shape resolve to (pads, output_padding) with
shapes.transposed_auto_pads / shapes.transposed_pads_for_output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .activation import Activation, apply_optional
from .registry import OpDef, register


@dataclass(frozen=True)
class ConvTransposeAttrs:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int = 1
    activation: Activation | None = None

    @property
    def ndim(self) -> int:
        return len(self.kernel)


def conv_transpose_output_shape(layer: str, attrs: ConvTransposeAttrs, in_spatial) -> tuple[int, ...]:
    return shapes.transposed_output_shape(layer, in_spatial, attrs.kernel, attrs.stride, attrs.pads,
                                          attrs.dilation, attrs.output_padding)


def _infer(layer: str, attrs: ConvTransposeAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, (2, 3))
    x, w = types[0], types[1]
    shapes.check_rank(layer, x.shape, attrs.ndim + 2)
    shapes.check_rank(layer, w.shape, attrs.ndim + 2, "weight")
    if len(attrs.output_padding) != attrs.ndim:
        raise ShapeError(f"{layer}: output_padding {attrs.output_padding} must give one size per spatial axis")
    if attrs.groups < 1:
        raise ShapeError(f"{layer}: groups must be >= 1, got {attrs.groups}")
    shapes.check_channels(layer, x.shape[1], w.shape[0])
    out_channels = w.shape[1] * attrs.groups
    shapes.check_groups(layer, x.shape[1], out_channels, attrs.groups)
    expected = (x.shape[1], out_channels // attrs.groups) + attrs.kernel
    if w.shape != expected:
        raise ShapeError(f"{layer}: weight must have shape {expected} (C_in, C_out/groups, *kernel), got {w.shape}")
    if len(types) == 3 and types[2].shape != (out_channels,):
        raise ShapeError(f"{layer}: bias must have shape {(out_channels,)}, got {types[2].shape}")
    spatial = conv_transpose_output_shape(layer, attrs, x.shape[2:])
    return (TensorType((x.shape[0], out_channels) + spatial),)


def _flops(attrs: ConvTransposeAttrs, ins: list[TensorType], outs: tuple[TensorType, ...]) -> int:
    """A multiply and an add per input element, tap and output channel of its group (taps cropped by
    the padding included, as profilers count), plus a bias per output."""
    out_channels_per_group = ins[1].shape[1]
    macs = ins[0].size * out_channels_per_group * math.prod(attrs.kernel)
    return 2 * macs + (outs[0].size if len(ins) == 3 else 0)


def _window(attrs: ConvTransposeAttrs, x: TensorType):
    return tuple(zip(attrs.kernel, attrs.stride, attrs.dilation))


def conv_transpose_reference(attrs: ConvTransposeAttrs, x: np.ndarray, w: np.ndarray,
                             b: np.ndarray | None = None) -> np.ndarray:
    """Scatter in float64: input i, tap k lands on padded output i*stride + k*dilation; then crop."""
    n, c = x.shape[:2]
    g = attrs.groups
    ocg = w.shape[1]
    out_spatial = conv_transpose_output_shape("reference", attrs, x.shape[2:])
    full = tuple(max((i - 1) * s + shapes.effective_kernel(k, d), pb + o)
                 for i, k, s, d, (pb, _), o in zip(x.shape[2:], attrs.kernel, attrs.stride, attrs.dilation,
                                                   attrs.pads, out_spatial))
    buffer = np.zeros((n, g, ocg) + full)
    xg = x.astype(np.float64).reshape((n, g, c // g) + x.shape[2:])
    wg = w.astype(np.float64).reshape((g, c // g, ocg) + attrs.kernel)
    for k in np.ndindex(*attrs.kernel):
        at = tuple(slice(ki * d, ki * d + (i - 1) * s + 1, s)
                   for ki, d, i, s in zip(k, attrs.dilation, x.shape[2:], attrs.stride))
        buffer[(slice(None),) * 3 + at] += np.einsum("ngc...,gco->ngo...", xg, wg[(Ellipsis,) + k])
    crop = tuple(slice(pb, pb + o) for (pb, _), o in zip(attrs.pads, out_spatial))
    out = buffer[(slice(None),) * 3 + crop].reshape((n, g * ocg) + out_spatial)
    if b is not None:
        out = out + b.astype(np.float64).reshape((1, -1) + (1,) * len(out_spatial))
    return apply_optional(attrs.activation, out).astype(np.float32)


register(OpDef(
    name="conv_transpose",
    infer=_infer,
    flops=_flops,
    reference=conv_transpose_reference,
    window=_window,
    transposed=True,
))

"""Normalizations by statistics of the input itself: layer_norm, instance_norm and group_norm.

Each takes a mean and a (biased) variance over some of the input's elements and computes

    y = (x - mean) / sqrt(var + eps) * scale + bias

- layer_norm (LayerNormAttrs(axis, eps, end_axis)): statistics over axes [axis, end_axis) for each
  index of the other axes; scale and bias have the shape of those axes.  end_axis None is the rank
  (ONNX LayerNormalization, torch.nn.LayerNorm); end_axis = axis + 1 = 2 on NCHW is a LayerNorm over
  the channels of a channels-last block, computed without the permutes (passes/channels_last_norm).
- instance_norm (InstanceNormAttrs(eps)): statistics per sample and channel over the spatial axes;
  scale and bias per channel (ONNX InstanceNormalization, torch.nn.InstanceNorm1d/2d/3d).
- group_norm (GroupNormAttrs(groups, eps)): statistics per sample and group of C / groups channels
  over those channels and the spatial axes; scale and bias per channel (torch.nn.GroupNorm, ONNX
  GroupNormalization-21).

Inputs: x, then optionally scale, then optionally bias (absent: 1 and 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..errors import ShapeError
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


@dataclass(frozen=True)
class LayerNormAttrs:
    axis: int = -1
    eps: float = 1e-5
    end_axis: int | None = None


@dataclass(frozen=True)
class InstanceNormAttrs:
    eps: float = 1e-5


@dataclass(frozen=True)
class GroupNormAttrs:
    groups: int
    eps: float = 1e-5


def _check_affine(layer: str, types: list[TensorType], shape: tuple[int, ...], where: str) -> None:
    for what, t in zip(("scale", "bias"), types[1:]):
        if t.shape != shape:
            raise ShapeError(f"{layer}: {where}: {what} must have shape {shape}, got {t.shape}")


def _infer_layer_norm(layer: str, attrs: LayerNormAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, (1, 3))
    x = types[0]
    begin, end = shapes.normalized_axes(layer, x.ndim, attrs.axis, attrs.end_axis)
    _check_affine(layer, types, x.shape[begin:end], f"axes [{begin}, {end}) of input {x.shape}")
    return (x,)


def _infer_per_channel(layer: str, types: list[TensorType], min_rank: int) -> tuple[TensorType, ...]:
    check_input_types(layer, types, (1, 3))
    x = types[0]
    if x.ndim < min_rank:
        raise ShapeError(f"{layer}: input must have rank >= {min_rank} (N, C{', spatial...' if min_rank > 2 else ', ...'}),"
                         f" got shape {x.shape}")
    _check_affine(layer, types, (x.shape[1],), "axis 1 (channels)")
    return (x,)


def _infer_instance_norm(layer: str, attrs: InstanceNormAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    return _infer_per_channel(layer, types, 3)


def _infer_group_norm(layer: str, attrs: GroupNormAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    out = _infer_per_channel(layer, types, 2)
    shapes.check_norm_groups(layer, types[0].shape[1], attrs.groups)
    return out


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _affine(y: np.ndarray, scale, bias, shape: tuple[int, ...]) -> np.ndarray:
    if scale is not None:
        y = y * scale.astype(np.float64).reshape(shape)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(shape)
    return y.astype(np.float32)


def layer_norm_reference(attrs: LayerNormAttrs, x, scale=None, bias=None) -> np.ndarray:
    begin, end = shapes.normalized_axes("layer_norm", x.ndim, attrs.axis, attrs.end_axis)
    affine = x.shape[begin:end] + (1,) * (x.ndim - end)
    return _affine(_normalize(x, tuple(range(begin, end)), attrs.eps), scale, bias, affine)


def instance_norm_reference(attrs: InstanceNormAttrs, x, scale=None, bias=None) -> np.ndarray:
    per_channel = (-1,) + (1,) * (x.ndim - 2)
    return _affine(_normalize(x, tuple(range(2, x.ndim)), attrs.eps), scale, bias, per_channel)


def group_norm_reference(attrs: GroupNormAttrs, x, scale=None, bias=None) -> np.ndarray:
    grouped = x.reshape((x.shape[0], attrs.groups, -1))
    y = _normalize(grouped, (2,), attrs.eps).reshape(x.shape)
    return _affine(y, scale, bias, (-1,) + (1,) * (x.ndim - 2))


def _flops(attrs, ins: list[TensorType], outs: tuple[TensorType, ...]) -> int:
    """A sum, a sum of squared deviations (3 per element), the normalization and the affine (2 each)."""
    return (1 + 3 + 2 + 2 * (len(ins) - 1)) * outs[0].size


register(OpDef(name="layer_norm", infer=_infer_layer_norm, flops=_flops, reference=layer_norm_reference))
register(OpDef(name="instance_norm", infer=_infer_instance_norm, flops=_flops, reference=instance_norm_reference))
register(OpDef(name="group_norm", infer=_infer_group_norm, flops=_flops, reference=group_norm_reference))

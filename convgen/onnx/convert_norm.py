"""Converters of LayerNormalization, InstanceNormalization and GroupNormalization (ops/norm.py)."""
from __future__ import annotations

import numpy as np

from .. import ops, shapes
from ..errors import ShapeError
from ..trace import Tensor
from .context import NodeView
from .converters import converter, data


def _affine(node: NodeView, i: int, shape: tuple[int, ...], what: str):
    """Input i as a scale or bias of `shape`: a constant broadcast to it (ONNX lets LayerNormalization's
    be any shape that broadcasts), a run-time value of exactly that shape, or None when absent."""
    if not node.has_input(i):
        return None
    value = node.input(i)
    if isinstance(value, Tensor):
        if value.shape != shape:
            raise node.unsupported(f"{what} computed at run time must have shape {shape}, got {value.shape}")
        return node.operand(i)
    try:
        expanded = np.broadcast_to(np.asarray(value, np.float32), shape)
    except ValueError:
        raise ShapeError(f"{node.label}: {what} of shape {value.shape} does not broadcast to {shape}") from None
    return node.ctx.constant(node.input_names[i], np.ascontiguousarray(expanded))


def _inputs(node: NodeView, x: Tensor, shape: tuple[int, ...]) -> list:
    """x, then the scale and bias that are present (a bias alone comes with a scale of ones)."""
    scale, bias = _affine(node, 1, shape, "scale"), _affine(node, 2, shape, "bias")
    if scale is None and bias is not None:
        scale = node.ctx.constant(node.name + "_ones", np.ones(shape, np.float32))
    return [x] + [v for v in (scale, bias) if v is not None]


@converter("LayerNormalization")
def _layer_norm(node: NodeView) -> list:
    """Y only: the Mean and InvStdDev outputs are training statistics convgen does not compute."""
    if any(node.output_names[1:]):
        raise node.unsupported("the Mean and InvStdDev outputs (training statistics) are not computed; "
                               "only Y is")
    x = data(node)
    axis = int(node.attr("axis", -1))
    begin, end = shapes.normalized_axes(node.label, x.type.ndim, axis)
    attrs = ops.LayerNormAttrs(begin, float(node.attr("epsilon", 1e-5)))
    y = node.emit("layer_norm", attrs, _inputs(node, x, x.shape[begin:end]))
    return [y]


@converter("InstanceNormalization")
def _instance_norm(node: NodeView) -> list:
    x = data(node)
    if x.type.ndim < 3:
        raise ShapeError(f"{node.label}: input must have rank >= 3 (N, C, spatial...), got shape {x.shape}")
    return [node.emit("instance_norm", ops.InstanceNormAttrs(float(node.attr("epsilon", 1e-5))),
                      _inputs(node, x, (x.shape[1],)))]


@converter("GroupNormalization")
def _group_norm(node: NodeView) -> list:
    """Opset 21 scales and shifts per channel, opset 18 per group: a scale of num_groups entries (where
    that is not also the channel count) is the opset-18 form, repeated over each group's channels."""
    x = data(node)
    groups = node.attr("num_groups")
    if groups is None:
        raise ShapeError(f"{node.label}: num_groups is required")
    channels = x.shape[1] if x.type.ndim >= 2 else 0
    shapes.check_norm_groups(node.label, channels, int(groups))
    attrs = ops.GroupNormAttrs(int(groups), float(node.attr("epsilon", 1e-5)))
    affine = []
    for i, what in ((1, "scale"), (2, "bias")):
        value = node.input(i)
        if not isinstance(value, Tensor) and value.shape == (groups,) and groups != channels:
            value = np.repeat(value.astype(np.float32), channels // groups)
            affine.append(node.ctx.constant(node.input_names[i], value))
        else:
            affine.append(_affine(node, i, (channels,), what))
    return [node.emit("group_norm", attrs, [x] + affine)]

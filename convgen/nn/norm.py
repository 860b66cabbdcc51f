"""The DSL's normalizations by the input's own statistics, under torch's names (reached as convgen.nn.X):
LayerNorm, GroupNorm, InstanceNorm1d/2d/3d and the functions layer_norm, group_norm, instance_norm.
ops/norm.py holds the formulas and the numpy references.

>>> nn.manual_seed(0)
>>> x = nn.Input((2, 8, 5, 5))
>>> [f(x).shape for f in (nn.GroupNorm(2, 8), nn.InstanceNorm2d(8), nn.LayerNorm((5, 5)))]
[(2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5)]
>>> model = convgen.compile(nn.graph(nn.layer_norm(nn.Input((1, 4)), (4,)), name="ln"))
>>> np.round(model(np.array([[1, 2, 3, 4]], np.float32)), 4)
array([[-1.3416, -0.4472,  0.4472,  1.3416]], dtype=float32)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import ops
from ..errors import ShapeError
from .module import Module, _emit
from .params import _int, _parameter_shape
from ..trace import Tensor


__all__ = ["LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "layer_norm",
           "group_norm", "instance_norm"]


def _sizes(normalized_shape) -> tuple[int, ...]:
    return (_int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(
        _int(d) for d in normalized_shape)


def _check_trailing(label: str, shape: tuple[int, ...], normalized: tuple[int, ...]) -> None:
    """torch's rule: the input's last axes are normalized_shape."""
    if len(shape) < len(normalized) or shape[len(shape) - len(normalized):] != normalized:
        raise ShapeError(f"{label}: the last {len(normalized)} axes of input {shape} must be normalized_shape "
                         f"{normalized}")


def _constants(x: Tensor, name: str, arrays: dict[str, np.ndarray | None]) -> list:
    return [x.tracer.constant(f"{name}.{key}", value) for key, value in arrays.items() if value is not None]


class LayerNorm(Module):
    """torch.nn.LayerNorm: statistics over the last len(normalized_shape) axes, weight (ones) and bias
    (zeros) of normalized_shape unless elementwise_affine=False (bias=False: no bias).  ShapeError when
    the input's last axes are not normalized_shape.

    >>> nn.LayerNorm(16)(nn.Input((2, 3, 16))).shape
    (2, 3, 16)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        self.normalized_shape = _parameter_shape(type(self).__name__, _sizes(normalized_shape))
        self.eps = float(eps)
        affine = np.ones(self.normalized_shape, np.float32) if elementwise_affine else None
        self.register_parameter("weight", affine)
        self.register_parameter("bias", np.zeros(self.normalized_shape, np.float32)
                                if elementwise_affine and bias else None)

    def forward(self, x: Tensor) -> Tensor:
        name = self.layer_name(x.tracer)
        _check_trailing(self.label(name), x.shape, self.normalized_shape)
        attrs = ops.LayerNormAttrs(-len(self.normalized_shape), self.eps)
        return _emit(self, x, "layer_norm", attrs, ("weight", "bias"), name=name)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class GroupNorm(Module):
    """torch.nn.GroupNorm: statistics per sample over each group of num_channels / num_groups channels,
    weight (ones) and bias (zeros) per channel unless affine=False.  ShapeError when num_groups does
    not divide num_channels."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_groups, self.num_channels, self.eps = _int(num_groups), _int(num_channels), float(eps)
        if self.num_groups < 1 or self.num_channels % self.num_groups:
            raise ShapeError(f"GroupNorm: num_channels={self.num_channels} is not divisible into "
                             f"num_groups={self.num_groups} groups")
        _parameter_shape(type(self).__name__, (self.num_channels,))
        self.register_parameter("weight", np.ones(self.num_channels, np.float32) if affine else None)
        self.register_parameter("bias", np.zeros(self.num_channels, np.float32) if affine else None)

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "group_norm", ops.GroupNormAttrs(self.num_groups, self.eps), ("weight", "bias"))

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


class _InstanceNorm(Module):
    """torch.nn.InstanceNorm1d/2d/3d: statistics per sample and channel over the spatial axes; weight
    (ones) and bias (zeros) when affine=True.  With track_running_stats=True torch's eval mode uses the
    running statistics instead (a batch norm; load them with load_state_dict)."""
    spatial = 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False) -> None:
        super().__init__()
        self.num_features, self.eps = _int(num_features), float(eps)
        _parameter_shape(type(self).__name__, (self.num_features,))
        self.register_parameter("weight", np.ones(self.num_features, np.float32) if affine else None)
        self.register_parameter("bias", np.zeros(self.num_features, np.float32) if affine else None)
        self.track_running_stats = bool(track_running_stats)
        if self.track_running_stats:
            self.register_parameter("running_mean", np.zeros(self.num_features, np.float32))
            self.register_parameter("running_var", np.ones(self.num_features, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        name = self.layer_name(x.tracer)
        if x.type.ndim != self.spatial + 2 or x.shape[1] != self.num_features:
            raise ShapeError(f"{self.label(name)}: input must have shape (N, {self.num_features}, "
                             f"{self.spatial} spatial axes), got {x.shape}")
        if not self.track_running_stats:
            return _emit(self, x, "instance_norm", ops.InstanceNormAttrs(self.eps), ("weight", "bias"), name=name)
        ones, zeros = np.ones(self.num_features, np.float32), np.zeros(self.num_features, np.float32)
        weight, bias = self.param("weight"), self.param("bias")
        inputs = _constants(x, name, {"weight": ones if weight is None else weight,
                                      "bias": zeros if bias is None else bias,
                                      "running_mean": self.param("running_mean"),
                                      "running_var": self.param("running_var")})
        return x.tracer.emit(name, "batch_norm", ops.BatchNormAttrs(self.eps), [x] + inputs, kind=type(self).__name__)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class InstanceNorm1d(_InstanceNorm):
    spatial = 1


class InstanceNorm2d(_InstanceNorm):
    spatial = 2


class InstanceNorm3d(_InstanceNorm):
    spatial = 3


def _functional(x: Tensor, op: str, attrs, weight, bias, label: str) -> Tensor:
    tracer = x.tracer
    name = tracer.auto_name(label)
    if weight is None and bias is not None:
        weight = np.ones(np.shape(bias), np.float32)
    arrays = {"weight": None if weight is None else np.asarray(weight, np.float32),
              "bias": None if bias is None else np.asarray(bias, np.float32)}
    return tracer.emit(name, op, attrs, [x] + _constants(x, name, arrays), kind=label)


def layer_norm(x: Tensor, normalized_shape: Sequence[int] | int, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.layer_norm with constant weight and bias (arrays, or None)."""
    sizes = _sizes(normalized_shape)
    _check_trailing(f"layer_norm({sizes})", x.shape, sizes)
    return _functional(x, "layer_norm", ops.LayerNormAttrs(-len(sizes), float(eps)), weight, bias, "layer_norm")


def group_norm(x: Tensor, num_groups: int, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
               eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.group_norm with constant weight and bias."""
    return _functional(x, "group_norm", ops.GroupNormAttrs(_int(num_groups), float(eps)), weight, bias, "group_norm")


def instance_norm(x: Tensor, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                  eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.instance_norm without running statistics, constant weight and bias."""
    return _functional(x, "instance_norm", ops.InstanceNormAttrs(float(eps)), weight, bias, "instance_norm")

"""Convolution layers: Conv1d/2d/3d, ConvTranspose1d/2d/3d, LocallyConnected1d/2d."""
from __future__ import annotations

import math
from typing import Sequence

from .. import ops, shapes
from ..errors import ShapeError, UnsupportedError
from ..trace import Tensor
from .module import Module, _emit
from .params import _int, _uniform


class _ConvNd(Module):
    """torch.nn.Conv1d / Conv2d / Conv3d: weight (out_channels, in_channels/groups, *kernel), bias
    (out_channels,) unless bias=False, initialised as torch does from nn.manual_seed's generator.

    padding is an int, one per axis, per-side (begin, end) pairs per axis, "valid" or "same" (ONNX
    SAME_UPPER, at any stride); stride, dilation and groups (depthwise: groups == in_channels) as in
    torch.  Raises ShapeError for channels < 1 or not divisible by groups, and when called on an input
    of the wrong rank or channel count, or smaller than the dilated kernel.

    >>> nn.manual_seed(0)
    >>> conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    >>> conv.param("weight").shape
    (8, 3, 3, 3)
    >>> conv(nn.Input((1, 3, 16, 16))).shape
    (1, 8, 8, 8)
    >>> nn.Conv1d(4, 4, 3, padding="same", groups=4)(nn.Input((1, 4, 10))).shape
    (1, 4, 10)
    >>> nn.Conv3d(2, 4, 3, padding=((0, 0), (1, 1), (2, 0)))(nn.Input((1, 2, 5, 5, 5))).shape
    (1, 4, 3, 5, 5)
    >>> nn.Conv2d(3, 8, 3)(nn.Input((1, 4, 16, 16)))
    Traceback (most recent call last):
    ...
    convgen.errors.ShapeError: layer 'conv2d0' (Conv2d): axis 1 (channels): input has 4 channels, the layer expects 3
    """
    ndim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        label = type(self).__name__
        self.in_channels, self.out_channels, self.groups = _int(in_channels), _int(out_channels), _int(groups)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = shapes.as_tuple(stride, self.ndim, "stride", label)
        self.dilation = shapes.as_tuple(dilation, self.ndim, "dilation", label)
        self.padding = padding
        if self.in_channels < 1 or self.out_channels < 1:
            raise ShapeError(f"{label}: channels must be >= 1, got in={in_channels}, out={out_channels}")
        shapes.check_groups(label, self.in_channels, self.out_channels, self.groups)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        self.register_parameter("weight", _uniform(label,
            (self.out_channels, self.in_channels // self.groups) + self.kernel_size, fan_in))
        self.register_parameter("bias", _uniform(label, (self.out_channels,), fan_in) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        pads = shapes.resolve_padding(self.padding, x.shape[2:], self.kernel_size, self.stride, self.dilation, label)
        attrs = ops.ConvAttrs(self.kernel_size, self.stride, pads, self.dilation, self.groups)
        return _emit(self, x, "conv", attrs, ("weight", "bias"), name=name)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, dilation={self.dilation}, groups={self.groups}")


class Conv1d(_ConvNd):
    ndim = 1


class Conv2d(_ConvNd):
    ndim = 2


class Conv3d(_ConvNd):
    ndim = 3


class _ConvTransposeNd(Module):
    """torch's ConvTransposeNd: weight (in_channels, out_channels/groups, *kernel), bias (out_channels,).

    padding crops the full result (an int, one per axis, or (begin, end) pairs); output_padding adds
    outputs at the end and must be smaller than the stride or the dilation.  Called as
    layer(x, output_size=...), output_padding is chosen to give that spatial size, as in torch.
    Raises UnsupportedError for a padding_mode other than "zeros", ShapeError for a string padding,
    bad channels or groups, or an output_padding that is too large.

    >>> up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1)
    >>> x = nn.Input((1, 8, 5, 5))
    >>> up(x).shape, up(x, output_size=(10, 10)).shape
    ((1, 4, 9, 9), (1, 4, 10, 10))
    >>> nn.ConvTranspose1d(2, 2, 4, stride=2)(nn.Input((1, 2, 6))).shape
    (1, 2, 14)
    """
    ndim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros") -> None:
        super().__init__()
        label = type(self).__name__
        if padding_mode != "zeros":
            raise UnsupportedError(f"{label}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if isinstance(padding, str):
            raise ShapeError(f"{label}: padding must be an int or a tuple, got {padding!r}")
        self.in_channels, self.out_channels, self.groups = _int(in_channels), _int(out_channels), _int(groups)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = shapes.as_tuple(stride, self.ndim, "stride", label)
        self.dilation = shapes.as_tuple(dilation, self.ndim, "dilation", label)
        self.output_padding = shapes.as_tuple(output_padding, self.ndim, "output_padding", label)
        self.padding = padding
        if self.in_channels < 1 or self.out_channels < 1:
            raise ShapeError(f"{label}: channels must be >= 1, got in={in_channels}, out={out_channels}")
        shapes.check_groups(label, self.in_channels, self.out_channels, self.groups)
        shapes.check_output_padding(label, self.output_padding, self.stride, self.dilation)
        fan_in = self.out_channels // self.groups * math.prod(self.kernel_size)  # torch: weight.size(1) * kernel
        self.register_parameter("weight", _uniform(label,
            (self.in_channels, self.out_channels // self.groups) + self.kernel_size, fan_in))
        self.register_parameter("bias", _uniform(label, (self.out_channels,), fan_in) if bias else None)

    def __call__(self, x: Tensor, output_size: Sequence[int] | None = None):
        if not isinstance(x, Tensor):
            return super().__call__(x)  # the usual error for arrays
        return self.forward(x, output_size)

    def forward(self, x: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        pads = shapes.resolve_padding(self.padding, x.shape[2:], self.kernel_size, self.stride, self.dilation, label)
        output_padding = self.output_padding
        if output_size is not None:
            size = tuple(output_size)[-self.ndim:]  # torch accepts the full shape or the spatial sizes
            output_padding = shapes.transposed_output_padding_for(label, x.shape[2:], size, self.kernel_size,
                                                                  self.stride, pads, self.dilation)
        attrs = ops.ConvTransposeAttrs(self.kernel_size, self.stride, pads, self.dilation, output_padding,
                                       self.groups)
        return _emit(self, x, "conv_transpose", attrs, ("weight", "bias"), name=name)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, output_padding={self.output_padding}, dilation={self.dilation}, "
                f"groups={self.groups}")


class ConvTranspose1d(_ConvTransposeNd):
    ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    ndim = 2


class ConvTranspose3d(_ConvTransposeNd):
    ndim = 3


class _LocallyConnectedNd(Module):
    """Like a convolution, but each output position has its own weights (the seed's "local connection").

    Weight shape: (*out_spatial, out_channels, in_channels, *kernel); bias: (out_channels, *out_spatial).
    The input's spatial size is needed up front, to size the weights.
    """
    ndim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, input_size, stride=1,
                 padding=0, bias: bool = True) -> None:
        super().__init__()
        label = type(self).__name__
        self.in_channels, self.out_channels = _int(in_channels), _int(out_channels)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = shapes.as_tuple(stride, self.ndim, "stride", label)
        self.input_size = shapes.as_tuple(input_size, self.ndim, "input_size", label)
        ones = (1,) * self.ndim
        self.pads = shapes.resolve_padding(padding, self.input_size, self.kernel_size, self.stride, ones, label)
        out_spatial = shapes.window_output_shape(label, self.input_size, self.kernel_size, self.stride,
                                                 self.pads, ones)
        fan_in = self.in_channels * math.prod(self.kernel_size)
        self.register_parameter("weight", _uniform(label,
            out_spatial + (self.out_channels, self.in_channels) + self.kernel_size, fan_in))
        self.register_parameter("bias", _uniform(label, (self.out_channels,) + out_spatial, fan_in) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        if x.shape[2:] != self.input_size:
            raise ShapeError(f"{label}: spatial input size {x.shape[2:]} differs from the input_size "
                             f"{self.input_size} the layer was built for")
        attrs = ops.LocallyConnectedAttrs(self.kernel_size, self.stride, self.pads)
        return _emit(self, x, "locally_connected", attrs, ("weight", "bias"), name=name)


class LocallyConnected1d(_LocallyConnectedNd):
    ndim = 1


class LocallyConnected2d(_LocallyConnectedNd):
    ndim = 2

"""Pooling layers: max and average (1-D to 3-D), Lp pooling, the global pools."""
from __future__ import annotations

from .. import ops, shapes
from ..ops.lp_pool import check_norm
from ..trace import Tensor
from .module import Module, _emit


class _PoolNd(Module):
    """torch.nn.MaxPool1d/2d/3d and AvgPool1d/2d/3d, with torch's arguments: stride defaults to the
    kernel size; padding is as for convolutions ("same" and (begin, end) pairs included); ceil_mode
    rounds the output size up (the last window must still start inside the input or the left pad);
    AvgPool counts the zero padding unless count_include_pad=False, or divides by divisor_override;
    MaxPool takes dilation, and with return_indices=True gives (values, int64 flat indices within
    each (n, c) plane).  Raises ShapeError for a window larger than the padded input or a pad over
    half the (dilated) window.

    >>> x = nn.Input((1, 4, 9, 9))
    >>> nn.MaxPool2d(3, stride=2, padding=1)(x).shape
    (1, 4, 5, 5)
    >>> values, indices = nn.MaxPool2d(2, ceil_mode=True, return_indices=True)(x)
    >>> values.shape, indices.type.dtype
    ((1, 4, 5, 5), 'int64')
    >>> nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False)(nn.Input((1, 2, 7))).shape
    (1, 2, 7)
    >>> nn.AvgPool3d(2)(nn.Input((1, 2, 4, 4, 4))).shape
    (1, 2, 2, 2, 2)
    """
    ndim = 0
    kind = ""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None,
                 return_indices: bool = False) -> None:
        super().__init__()
        label = type(self).__name__
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = self.kernel_size if stride is None else shapes.as_tuple(stride, self.ndim, "stride", label)
        self.dilation = shapes.as_tuple(dilation, self.ndim, "dilation", label)
        self.padding, self.ceil_mode = padding, bool(ceil_mode)
        self.count_include_pad, self.divisor_override = bool(count_include_pad), divisor_override
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor):
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        pads = shapes.resolve_padding(self.padding, x.shape[2:], self.kernel_size, self.stride, self.dilation, label)
        attrs = ops.PoolAttrs(self.kind, self.kernel_size, self.stride, pads, self.dilation, self.ceil_mode,
                              self.count_include_pad, self.divisor_override, self.return_indices)
        return _emit(self, x, "pool", attrs, name=name)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"


def _max_pool(ndim: int):
    class MaxPool(_PoolNd):
        kind = "max"

        def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                     ceil_mode: bool = False) -> None:
            super().__init__(kernel_size, stride, padding, dilation, ceil_mode, return_indices=return_indices)
    MaxPool.ndim = ndim
    MaxPool.__name__ = MaxPool.__qualname__ = f"MaxPool{ndim}d"
    return MaxPool


def _avg_pool(ndim: int):
    class AvgPool(_PoolNd):
        kind = "avg"

        def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                     count_include_pad: bool = True, divisor_override: int | None = None) -> None:
            super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    AvgPool.ndim = ndim
    AvgPool.__name__ = AvgPool.__qualname__ = f"AvgPool{ndim}d"
    return AvgPool


MaxPool1d, MaxPool2d, MaxPool3d = (_max_pool(n) for n in (1, 2, 3))
AvgPool1d, AvgPool2d, AvgPool3d = (_avg_pool(n) for n in (1, 2, 3))


class _LPPoolNd(Module):
    """torch's LPPoolNd: (sum over the window of x^p)^(1/p); no padding, windows as the other pools.

    >>> nn.LPPool2d(2, 3, stride=2)(nn.Input((1, 4, 9, 9))).shape
    (1, 4, 4, 4)
    """
    ndim = 0

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> None:
        super().__init__()
        label = type(self).__name__
        check_norm(label, norm_type)
        self.norm_type = float(norm_type)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = self.kernel_size if stride is None else shapes.as_tuple(stride, self.ndim, "stride", label)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        attrs = ops.LpPoolAttrs(self.norm_type, self.kernel_size, self.stride, ((0, 0),) * self.ndim,
                                (1,) * self.ndim, self.ceil_mode)
        return _emit(self, x, "lp_pool", attrs)

    def extra_repr(self) -> str:
        return f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}"


class LPPool1d(_LPPoolNd):
    ndim = 1


class LPPool2d(_LPPoolNd):
    ndim = 2


class LPPool3d(_LPPoolNd):
    ndim = 3


class GlobalLpPool(Module):
    """(sum over every spatial position of |x|^p)^(1/p), keeping the spatial axes as size 1 (ONNX GlobalLpPool)."""

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        check_norm(type(self).__name__, p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "global_lp_pool", ops.GlobalLpPoolAttrs(self.p))


class _GlobalPool(Module):
    kind = ""

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "global_pool", ops.GlobalPoolAttrs(self.kind))


class GlobalAvgPool(_GlobalPool):
    """Mean over every spatial axis, keeping them as size 1 (ONNX GlobalAveragePool)."""
    kind = "avg"


class GlobalMaxPool(_GlobalPool):
    kind = "max"

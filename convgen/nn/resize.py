"""The DSL's resizing layers under torch's names (reached as convgen.nn.X): adaptive average and max
pooling to any output size, interpolate / Upsample (nearest, nearest-exact, linear, bilinear,
trilinear, area), PixelShuffle / PixelUnshuffle.

Adaptive pooling to 1 is the global pool; bins that divide the input evenly are an ordinary pool
(kernel = stride = in / out, as torch's exporter writes it); uneven bins and interpolation are one
resample layer per changed axis (convgen/ops/resample.py), with torch's index and weight arithmetic
(shapes.adaptive_bins, interpolate_nearest_sources, interpolate_linear_taps).

>>> x = nn.Input((1, 8, 10, 10))
>>> nn.AdaptiveAvgPool2d((3, 4))(x).shape, nn.Upsample(scale_factor=1.5, mode="bilinear")(x).shape
((1, 8, 3, 4), (1, 8, 15, 15))
>>> nn.PixelShuffle(2)(x).shape
(1, 2, 20, 20)
"""
from __future__ import annotations

import math
from .. import ops, shapes
from ..errors import ConvgenError, ShapeError, UnsupportedError
from .module import Module
from ..ops import resample
from ..trace import Tensor


__all__ = ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
           "AdaptiveMaxPool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
           "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "Upsample",
           "UpsamplingNearest2d", "UpsamplingBilinear2d", "pixel_shuffle", "pixel_unshuffle", "PixelShuffle",
           "PixelUnshuffle"]


def _spatial(x: Tensor, ndim: int, label: str) -> tuple[int, ...]:
    if x.ndim != ndim + 2:
        raise ShapeError(f"{label}: expects a {ndim + 2}-D input (N, C, {ndim} spatial axes), got shape {list(x.shape)}")
    return x.shape[2:]


def _output_sizes(output_size, spatial: tuple[int, ...], label: str) -> tuple[int, ...]:
    """torch's output_size: an int, or one int or None (keep the axis) per spatial axis."""
    ndim = len(spatial)
    items = (output_size,) * ndim if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if len(items) != ndim:
        raise ShapeError(f"{label}: output_size {output_size!r} for {ndim} spatial axes")
    sizes = tuple(d if s is None else s for s, d in zip(items, spatial))
    shapes.as_tuple(sizes, ndim, "output_size", label)   # ints, not bools or floats
    for axis, s in enumerate(sizes):
        if s < 1:
            raise ShapeError(f"{label}: spatial axis {axis}: output size {s} (must be >= 1)")
    return tuple(int(s) for s in sizes)


def _chain(x: Tensor, plans: dict, name: str, kind: str) -> Tensor:
    emit = lambda attrs, v, suffix: x.tracer.emit(name + suffix, "resample", attrs, [v], kind=kind)  # noqa: E731
    return resample.resample_axes(x, plans, emit)   # every axis unchanged: x itself, as torch's identity


def _adaptive(x: Tensor, output_size, kind: str, ndim: int, name: str, layer: str) -> Tensor:
    label = f"layer {name!r} ({layer})"
    spatial = _spatial(x, ndim, label)
    sizes = _output_sizes(output_size, spatial, label)
    if all(s == 1 for s in sizes):
        return x.tracer.emit(name, "global_pool", ops.GlobalPoolAttrs(kind), [x], kind=layer)
    if all(d % s == 0 for d, s in zip(spatial, sizes)):   # even bins: an ordinary pool
        k = tuple(d // s for d, s in zip(spatial, sizes))
        attrs = ops.PoolAttrs(kind, k, k, ((0, 0),) * ndim, (1,) * ndim)
        return x.tracer.emit(name, "pool", attrs, [x], kind=layer)
    plans = {2 + a: resample.adaptive_plan(2 + a, d, s, kind) for a, (d, s) in enumerate(zip(spatial, sizes))}
    return _chain(x, plans, name, layer)


def _adaptive_function(kind: str, ndim: int):
    def pool(x: Tensor, output_size, name: str | None = None) -> Tensor:
        return _adaptive(x, output_size, kind, ndim, name or x.tracer.auto_name(f"adaptive_{kind}_pool"),
                         f"adaptive_{kind}_pool{ndim}d")
    pool.__name__ = f"adaptive_{kind}_pool{ndim}d"
    pool.__doc__ = f"torch's adaptive_{kind}_pool{ndim}d: bins [floor(o*in/out), ceil((o+1)*in/out)) per axis."
    return pool


adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (_adaptive_function("avg", n) for n in (1, 2, 3))
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (_adaptive_function("max", n) for n in (1, 2, 3))


class _AdaptivePool(Module):
    kind, ndim = "", 0

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        if return_indices:
            raise UnsupportedError(f"{type(self).__name__}: return_indices=True is not supported")
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return _adaptive(x, self.output_size, self.kind, self.ndim, self.layer_name(x.tracer), type(self).__name__)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


class _AdaptiveAvgPool(_AdaptivePool):
    """torch.nn.AdaptiveAvgPoolNd: the mean of each bin."""
    kind = "avg"


class AdaptiveAvgPool1d(_AdaptiveAvgPool):
    ndim = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPool):
    ndim = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPool):
    ndim = 3


class AdaptiveMaxPool1d(_AdaptivePool):
    """torch.nn.AdaptiveMaxPoolNd: the max of each bin (NaN if the bin holds one)."""
    kind, ndim = "max", 1


class AdaptiveMaxPool2d(AdaptiveMaxPool1d):
    ndim = 2


class AdaptiveMaxPool3d(AdaptiveMaxPool1d):
    ndim = 3


# -- interpolation -------------------------------------------------------------------------------

LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}
MODES = ("nearest", "nearest-exact", "area", "bicubic", *LINEAR_MODES)


def _interpolate_sizes(spatial: tuple[int, ...], size, scale_factor, label: str):
    """The output sizes and the scale factors the kernel uses (None: in / out), as torch's interpolate."""
    ndim = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ConvgenError(f"{label}: give exactly one of size and scale_factor")
    if size is not None:
        return shapes.as_tuple(size, ndim, "size", label), (None,) * ndim
    factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * ndim
    if len(factors) != ndim or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in factors):
        raise ShapeError(f"{label}: scale_factor {scale_factor!r} for {ndim} spatial axes")
    if not all(math.isfinite(f) and f > 0 for f in factors):
        raise ShapeError(f"{label}: scale_factor {scale_factor!r} must be positive and finite")
    return tuple(int(math.floor(d * float(f))) for d, f in zip(spatial, factors)), tuple(float(f) for f in factors)


def interpolate(x: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False, name: str | None = None,
                layer: str = "interpolate") -> Tensor:
    """torch.nn.functional.interpolate for modes nearest, nearest-exact, linear, bilinear, trilinear,
    bicubic and area; antialias raises UnsupportedError."""
    name = name or x.tracer.auto_name("interpolate")
    label = f"layer {name!r} ({layer})"
    if mode not in MODES:
        raise UnsupportedError(f"{label}: mode {mode!r} is not one of {list(MODES)}")
    if antialias:
        raise UnsupportedError(f"{label}: antialias=True is not supported")
    if align_corners is not None and mode not in (*LINEAR_MODES, "bicubic"):
        raise ConvgenError(f"{label}: align_corners applies to the linear modes only, not {mode!r}")
    if x.ndim < 3:
        raise ShapeError(f"{label}: expects an input (N, C, spatial...), got shape {list(x.shape)}")
    spatial = x.shape[2:]
    wanted = 2 if mode == "bicubic" else LINEAR_MODES.get(mode)
    if wanted is not None and wanted != len(spatial):
        raise ShapeError(f"{label}: mode {mode!r} takes {wanted + 2}-D input, got shape {list(x.shape)}")
    sizes, factors = _interpolate_sizes(spatial, size, scale_factor, label)
    if min(sizes) < 1:
        raise ShapeError(f"{label}: output size {list(sizes)} from input {list(spatial)}")
    if recompute_scale_factor:
        factors = (None,) * len(spatial)
    if mode == "area":
        return _adaptive(x, sizes, "avg", len(spatial), name, layer)
    plans = {}
    for a, (d, s, f) in enumerate(zip(spatial, sizes, factors)):
        if mode == "bicubic":
            plans[2 + a] = resample.linear_plan(2 + a, shapes.interpolate_cubic_taps(d, s, f, bool(align_corners)))
        elif mode in LINEAR_MODES:
            plans[2 + a] = resample.linear_plan(2 + a, shapes.interpolate_linear_taps(d, s, f, bool(align_corners)))
        else:
            plans[2 + a] = resample.nearest_plan(2 + a, shapes.interpolate_nearest_sources(d, s, f, mode != "nearest"))
    return _chain(x, plans, name, layer)


class Upsample(Module):
    """torch.nn.Upsample: interpolate with fixed size or scale_factor, mode and align_corners."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None) -> None:
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners, self.recompute_scale_factor,
                           name=self.layer_name(x.tracer), layer=type(self).__name__)

    def extra_repr(self) -> str:
        return f"size={self.size!r}, scale_factor={self.scale_factor!r}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None) -> None:
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    def __init__(self, size=None, scale_factor=None) -> None:
        super().__init__(size, scale_factor, "bilinear", align_corners=True)


# -- pixel shuffles ------------------------------------------------------------------------------

def _factor(r, label: str) -> int:
    (r,) = shapes.as_tuple(r, 1, "upscale factor", label)
    if r < 1:
        raise ShapeError(f"{label}: the factor must be >= 1, got {r}")
    return r


def pixel_shuffle(x: Tensor, upscale_factor: int, name: str | None = None) -> Tensor:
    """torch's pixel_shuffle: (N, C*r*r, H, W) -> (N, C, H*r, W*r) (ESPCN's sub-pixel convolution)."""
    name = name or x.tracer.auto_name("pixel_shuffle")
    label = f"layer {name!r} (PixelShuffle)"
    r = _factor(upscale_factor, label)
    if x.ndim != 4 or x.shape[1] % (r * r):
        raise ShapeError(f"{label}: expects (N, C*{r * r}, H, W), got shape {list(x.shape)}")
    _, c, h, w = x.shape
    split = x.reshape(-1, c // (r * r), r, r, h, w)
    moved = x.tracer.emit(name, "transpose", ops.TransposeAttrs((0, 1, 4, 2, 5, 3)), [split], kind="PixelShuffle")
    return moved.reshape(-1, c // (r * r), h * r, w * r)


def pixel_unshuffle(x: Tensor, downscale_factor: int, name: str | None = None) -> Tensor:
    """torch's pixel_unshuffle: (N, C, H*r, W*r) -> (N, C*r*r, H, W)."""
    name = name or x.tracer.auto_name("pixel_unshuffle")
    label = f"layer {name!r} (PixelUnshuffle)"
    r = _factor(downscale_factor, label)
    if x.ndim != 4 or x.shape[2] % r or x.shape[3] % r:
        raise ShapeError(f"{label}: expects (N, C, H, W) with H and W divisible by {r}, got shape {list(x.shape)}")
    _, c, h, w = x.shape
    split = x.reshape(-1, c, h // r, r, w // r, r)
    moved = x.tracer.emit(name, "transpose", ops.TransposeAttrs((0, 1, 3, 5, 2, 4)), [split], kind="PixelUnshuffle")
    return moved.reshape(-1, c * r * r, h // r, w // r)


class PixelShuffle(Module):
    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x: Tensor) -> Tensor:
        return pixel_shuffle(x, self.upscale_factor, name=self.layer_name(x.tracer))


class PixelUnshuffle(Module):
    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, x: Tensor) -> Tensor:
        return pixel_unshuffle(x, self.downscale_factor, name=self.layer_name(x.tracer))


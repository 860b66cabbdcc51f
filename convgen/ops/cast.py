"""Element-type conversions: the only ops that read or write types other than float32.

    "cast"        CastAttrs(to)                  ONNX Cast between any two of convgen.dtypes.NAMES
    "quantize"    QuantizeAttrs(axis, dtype)     ONNX QuantizeLinear: y = saturate(round(x / scale) + zero_point)
    "dequantize"  DequantizeAttrs(axis)          ONNX DequantizeLinear: y = (x - zero_point) * scale

Conversion rules (the kernels in templates/convert.c.j2 and backends/llvm/convert.py do the same):
  - float -> integer truncates toward zero; out-of-range values saturate to the type's limits and
    NaN becomes 0 (ONNX leaves out-of-range undefined; saturating keeps it defined);
  - integer -> narrower integer keeps the low bits (two's complement), as C and onnxruntime do;
  - -> float16 / bfloat16 rounds to nearest even through float32 (onnxruntime's order: a float64
    or an integer is first rounded to float32);
  - -> bool is "not zero" (NaN is true, -0.0 false); bool -> any type is 0 or 1;
  - quantize rounds half to even and saturates to the output type; scale and zero point are one
    value (per tensor) or one per index of `axis` (per axis); both are float32 constants here
    (an 8-bit zero point is exact in float32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..ir import TensorType
from .registry import OpDef, register

QUANTIZED = ("uint8", "int8", "int16")
"""The element types QuantizeLinear may produce here (and DequantizeLinear read, with int32)."""


@dataclass(frozen=True)
class CastAttrs:
    to: str

    def __post_init__(self) -> None:
        dtypes.get(self.to)


@dataclass(frozen=True)
class QuantizeAttrs:
    axis: int = 1
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        if self.dtype not in QUANTIZED:
            raise DTypeError(f"QuantizeLinear to {self.dtype}: convgen quantizes to {QUANTIZED}")


@dataclass(frozen=True)
class DequantizeAttrs:
    axis: int = 1


def _infer_cast(layer: str, attrs: CastAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    if len(types) != 1:
        raise ShapeError(f"{layer}: a cast reads one input, got {len(types)}")
    return (TensorType(types[0].shape, attrs.to),)


def channel_axis(layer: str, axis: int, x: TensorType, scale: TensorType) -> int | None:
    """The axis a per-axis scale runs along (None: one scale for the tensor); ShapeError if it does not fit."""
    if scale.size == 1 and scale.ndim <= 1:
        return None
    a = axis + x.ndim if axis < 0 else axis
    if scale.ndim != 1 or not 0 <= a < x.ndim or scale.shape[0] != x.shape[a]:
        raise ShapeError(f"{layer}: scale of shape {list(scale.shape)} does not fit axis {axis} of input "
                         f"{list(x.shape)} (per-tensor: 1 value; per-axis: one per index of the axis)")
    return a


def _check_scales(layer: str, axis: int, types: list[TensorType]) -> None:
    if len(types) != 3:
        raise ShapeError(f"{layer}: expects x, scale and zero point, got {len(types)} inputs")
    channel_axis(layer, axis, types[0], types[1])
    if types[2].shape != types[1].shape and types[2].size != types[1].size:
        raise ShapeError(f"{layer}: zero point of shape {list(types[2].shape)} does not match scale "
                         f"{list(types[1].shape)}")


def _infer_quantize(layer: str, attrs: QuantizeAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    _check_scales(layer, attrs.axis, types)
    if types[0].dtype != "float32":
        raise DTypeError(f"{layer}: quantizes float32, got {types[0].dtype}")
    return (TensorType(types[0].shape, attrs.dtype),)


def _infer_dequantize(layer: str, attrs: DequantizeAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    _check_scales(layer, attrs.axis, types)
    if types[0].dtype not in QUANTIZED + ("int32",):
        raise DTypeError(f"{layer}: dequantizes {QUANTIZED + ('int32',)}, got {types[0].dtype}")
    return (TensorType(types[0].shape, "float32"),)


# -- numpy references -----------------------------------------------------------------------------

def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    return np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def as_float32(x: np.ndarray, dtype: str) -> np.ndarray:
    """Values of convgen element type `dtype` (numpy arrays as dtypes.numpy_dtype holds them) as float32."""
    if dtype == "bfloat16":
        return from_bfloat16_bits(x)
    return np.asarray(x).astype(np.float32)


def saturate_to_integer(x: np.ndarray, dtype: str) -> np.ndarray:
    info = dtypes.get(dtype)
    wide = np.nan_to_num(np.trunc(np.asarray(x, np.float64)), nan=0.0)
    # past 2^53 float64 cannot hold the int64 limits; compare there, then convert what is in range
    high, low = wide >= float(info.high), wide <= float(info.low)
    inner = np.where(high | low, 0, wide).astype(dtype)
    limits = np.iinfo(dtype)
    return np.where(high, limits.max, np.where(low, limits.min, inner)).astype(dtype)


def cast(x: np.ndarray, source: str, to: str) -> np.ndarray:
    """The cast kernels' semantics in numpy (see the module docstring)."""
    src, dst = dtypes.get(source), dtypes.get(to)
    if to == "bool":
        return as_float32(x, source) != 0 if src.kind == "half" else np.asarray(x) != 0
    if source == "bfloat16" or (dst.kind == "half" and src.kind != "half" and source != "float32"):
        x = as_float32(x, source)   # through float32, as onnxruntime converts
        source, src = "float32", dtypes.get("float32")
    if to == "bfloat16":
        return to_bfloat16_bits(np.asarray(x, np.float32)).view(dtypes.numpy_dtype("bfloat16"))
    if dst.kind in ("int", "uint") and src.kind in ("float", "half"):
        return saturate_to_integer(x, to)
    with np.errstate(over="ignore", invalid="ignore"):   # an integer too large for float16 becomes inf
        return np.asarray(x).astype(dtypes.numpy_dtype(to))


def _per_axis(values: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    values = np.asarray(values, np.float32).reshape(-1)
    if axis is None:
        return values.reshape(())
    return values.reshape((-1,) + (1,) * (ndim - axis - 1))


def quantize(attrs: QuantizeAttrs, x, scale, zero_point) -> np.ndarray:
    axis = channel_axis("reference", attrs.axis, TensorType(x.shape), TensorType(np.shape(scale)))
    s, z = _per_axis(scale, axis, x.ndim), _per_axis(zero_point, axis, x.ndim)
    info = dtypes.get(attrs.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.rint(np.asarray(x, np.float32) / s) + z
    return np.clip(np.nan_to_num(y, nan=0.0), info.low, info.high).astype(attrs.dtype)


def dequantize(attrs: DequantizeAttrs, x, scale, zero_point) -> np.ndarray:
    axis = channel_axis("reference", attrs.axis, TensorType(x.shape), TensorType(np.shape(scale)))
    s, z = _per_axis(scale, axis, x.ndim), _per_axis(zero_point, axis, x.ndim)
    return (np.asarray(x).astype(np.int64) - z.astype(np.int64)).astype(np.float32) * s


register(OpDef(name="cast", infer=_infer_cast, flops=lambda a, ins, outs: 0,
               reference=lambda a, x: cast(x, dtypes.name_of(x.dtype) or "float32", a.to)))
register(OpDef(name="quantize", infer=_infer_quantize, flops=lambda a, ins, outs: 2 * outs[0].size,
               reference=quantize))
register(OpDef(name="dequantize", infer=_infer_dequantize, flops=lambda a, ins, outs: 2 * outs[0].size,
               reference=dequantize))

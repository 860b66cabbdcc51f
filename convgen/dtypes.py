"""The element types convgen's values may have, and how each is held in C, LLVM and numpy.

Layers compute in float32 (max-pool indices are int64).  The other types exist at the boundary and
around casts: a graph input or output of any of them, the `cast` op between any two, and the
`quantize` / `dequantize` ops (convgen/ops/cast.py).

bool is one byte holding 0 or 1 (C uint8_t, LLVM i8, numpy bool).  Inside a model booleans are float32
0 and 1 (what comparisons produce); a bool graph input is cast to that, a bool graph output cast from it
(non-zero is true, NaN included, as ONNX's Cast says).

float16 and bfloat16 travel as their raw 16 bits (C uint16_t, LLVM i16): the C backend converts
float16 with the compiler's _Float16, the LLVM backend with `half`; bfloat16 is the top half of a
float32 (rounded to nearest even).  In Python a float16 value is a numpy float16 array, a bfloat16
value an `ml_dtypes.bfloat16` array (ml_dtypes ships with onnx); without ml_dtypes, a uint16 array
of the raw bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str
    c_type: str        # how the generated C declares an element
    itemsize: int
    kind: str          # "float", "int" (signed), "uint", "half" (16-bit float bits), "bool"
    low: int = 0       # integer types: the range a saturating conversion clamps to
    high: int = 0


TABLE: dict[str, DType] = {d.name: d for d in (
    DType("float32", "float", 4, "float"),
    DType("float64", "double", 8, "float"),
    DType("float16", "uint16_t", 2, "half"),
    DType("bfloat16", "uint16_t", 2, "half"),
    DType("int64", "int64_t", 8, "int", -2 ** 63, 2 ** 63 - 1),
    DType("int32", "int32_t", 4, "int", -2 ** 31, 2 ** 31 - 1),
    DType("int16", "int16_t", 2, "int", -2 ** 15, 2 ** 15 - 1),
    DType("int8", "int8_t", 1, "int", -128, 127),
    DType("uint8", "uint8_t", 1, "uint", 0, 255),
    DType("bool", "uint8_t", 1, "bool"),
)}
NAMES = tuple(TABLE)


def get(name: str) -> DType:
    try:
        return TABLE[name]
    except KeyError:
        raise ValueError(f"unknown element type {name!r}; convgen knows {list(NAMES)}") from None


def bfloat16() -> np.dtype:
    """numpy's dtype for bfloat16 values: ml_dtypes.bfloat16, or uint16 raw bits without ml_dtypes."""
    try:
        import ml_dtypes
    except ImportError:
        return np.dtype(np.uint16)
    return np.dtype(ml_dtypes.bfloat16)


def numpy_dtype(name: str) -> np.dtype:
    get(name)
    return bfloat16() if name == "bfloat16" else np.dtype(name)


def name_of(dtype) -> str | None:
    """convgen's name for a numpy dtype, or None when convgen has no such element type."""
    dtype = np.dtype(dtype)
    if dtype.name == "bfloat16":
        return "bfloat16"
    return dtype.name if dtype.name in TABLE and dtype.name != "bfloat16" else None


def raw(array: np.ndarray) -> np.ndarray:
    """The array as a buffer cffi can take: 16-bit floats as their uint16 bits, booleans as uint8 bytes."""
    if array.dtype.kind == "b":
        return array.view(np.uint8)
    return array.view(np.uint16) if array.dtype.itemsize == 2 and array.dtype.kind not in "iu" else array

"""Element-type conversions, as templates/convert.c.j2: cast, quantize, dequantize (rules in
convgen/ops/cast.py).  float16 and bfloat16 elements are i16 bits; float16 converts through LLVM's
`half`, bfloat16 by bit operations (rounding to nearest even)."""
from __future__ import annotations

from llvmlite import ir

from ... import dtypes
from ...lower import Kernel
from .emitter import F32, F64, HALF, I8, I16, I32, I64, Emitter, Ptr

ELEMENT_TYPES: dict[str, ir.Type] = {
    "float32": F32, "float64": F64, "float16": I16, "bfloat16": I16, "int64": I64, "int32": I32,
    "int16": I16, "int8": I8, "uint8": I8, "bool": I8,
}


def element_type(dtype: str) -> ir.Type:
    """How an element of `dtype` is held in memory."""
    return ELEMENT_TYPES[dtypes.get(dtype).name]


def _is_float(dtype: str) -> bool:
    return dtypes.get(dtype).kind in ("float", "half")


def load(e: Emitter, dtype: str, value: ir.Value) -> ir.Value:
    """An element as its arithmetic value: 16-bit floats widen to float, others stay as they are."""
    if dtype == "float16":
        return e.b.fpext(e.b.bitcast(value, HALF), F32)
    if dtype == "bfloat16":
        return e.b.bitcast(e.b.shl(e.b.zext(value, I32), ir.Constant(I32, 16)), F32)
    return value


def to_float32(e: Emitter, dtype: str, value: ir.Value) -> ir.Value:
    """A loaded value (see load) as float32: rounded from float64 and integers."""
    if dtype == "float64":
        return e.b.fptrunc(value, F32)
    if _is_float(dtype):
        return value
    return e.b.uitofp(value, F32) if _unsigned(dtype) else e.b.sitofp(value, F32)


def _unsigned(dtype: str) -> bool:
    return dtypes.get(dtype).kind in ("uint", "bool")


def _to_bfloat16(e: Emitter, f: ir.Value) -> ir.Value:
    u = e.b.bitcast(f, I32)
    high = e.b.lshr(u, ir.Constant(I32, 16))
    rounded = e.b.lshr(e.b.add(u, e.b.add(ir.Constant(I32, 0x7FFF), e.b.and_(high, ir.Constant(I32, 1)))),
                       ir.Constant(I32, 16))
    quiet = e.b.or_(high, ir.Constant(I32, 0x40))
    return e.b.trunc(e.b.select(e.is_nan(f), quiet, rounded), I16)


def saturate(e: Emitter, value: ir.Value, to: str, p: dict) -> ir.Value:
    """A float or double value as integer type `to`: truncated, saturated to LOW..HIGH, NaN as 0."""
    v = e.b.fpext(value, F64) if value.type == F32 else value
    low, high = ir.Constant(F64, float(p["LOW"])), ir.Constant(F64, float(p["HIGH"]))
    below, above = e.b.fcmp_ordered("<=", v, low), e.b.fcmp_ordered(">=", v, high)
    # convert only values in range (an out-of-range fptosi is poison), then put the limits in
    inside = e.b.select(e.b.or_(e.b.or_(below, above), e.is_nan(v)), ir.Constant(F64, 0.0), v)
    result = e.b.fptosi(inside, I64)
    result = e.b.select(above, ir.Constant(I64, p["HIGH"]), e.b.select(below, ir.Constant(I64, p["LOW"]), result))
    target = element_type(to)
    return result if target == I64 else e.b.trunc(result, target)


def _integer(e: Emitter, source: str, value: ir.Value, to: str) -> ir.Value:
    """Integer to integer: widened by sign (uint8 by zeros), or narrowed to the low bits."""
    target = element_type(to)
    if value.type.width == target.width:
        return value
    if value.type.width > target.width:
        return e.b.trunc(value, target)
    return e.b.zext(value, target) if _unsigned(source) else e.b.sext(value, target)


def convert(e: Emitter, source: str, value: ir.Value, to: str, p: dict) -> ir.Value:
    """One element of type `source` as type `to`, by the rules of convgen/ops/cast.py."""
    v = load(e, source, value)
    if to == "bool":   # not zero; NaN is true (an unordered compare)
        zero = ir.Constant(v.type, 0.0 if _is_float(source) else 0)
        ne = e.b.fcmp_unordered("!=", v, zero) if _is_float(source) else e.b.icmp_unsigned("!=", v, zero)
        return e.b.zext(ne, I8)
    if to == "float16":
        return e.b.bitcast(e.b.fptrunc(to_float32(e, source, v), HALF), I16)
    if to == "bfloat16":
        return _to_bfloat16(e, to_float32(e, source, v))
    if not _is_float(to):
        return saturate(e, v, to, p) if _is_float(source) else _integer(e, source, v, to)
    if to == "float32":
        return to_float32(e, source, v)
    # float64
    if _is_float(source):
        return v if v.type == F64 else e.b.fpext(v, F64)
    return e.b.uitofp(v, F64) if _unsigned(source) else e.b.sitofp(v, F64)


def cast(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    x, y = args["x"], args["y"]
    with e.loop(p["N"] * p["INNER"]) as i:
        y[i] = convert(e, p["FROM"], x[i], p["TO"], p)


def _channel_loops(e: Emitter, p: dict):
    """n x outer x c, the first element of each inner run, as in convert.c.j2's channel_loops."""
    return e.nest([p["N"], p["OUTER"], p["C"]], ["n", "o", "c"])


def quantize(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    x, y = args["x"], args["y"]
    with _channel_loops(e, p) as (n, o, c):
        base = ((n * p["OUTER"] + o) * p["C"] + c) * p["INNER"]
        s, z = args["scale"][c], args["zero_point"][c]
        with e.loop(p["INNER"]) as i:
            q = e.b.fadd(e.intrinsic("llvm.roundeven", [e.b.fdiv(x[base + i], s)]), z)
            y[base + i] = saturate(e, q, p["TO"], p)


def dequantize(e: Emitter, k: Kernel, args: dict[str, Ptr], scratch: Ptr) -> None:
    p = k.params
    x, y = args["x"], args["y"]
    with _channel_loops(e, p) as (n, o, c):
        base = ((n * p["OUTER"] + o) * p["C"] + c) * p["INNER"]
        s = args["scale"][c]
        z = e.b.fptosi(args["zero_point"][c], I64)
        with e.loop(p["INNER"]) as i:
            wide = _integer(e, p["FROM"], x[base + i], "int64")
            y[base + i] = e.b.fmul(e.b.sitofp(e.b.sub(wide, z), F32), s)

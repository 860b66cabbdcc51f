"""The activation table (templates/activation.c.j2) as LLVM IR: one rule per activation kind.

Comparisons are ordered, like C's, so NaN propagates as in torch.  exp, tanh and sigmoid are
the templates' inline approximations, emitted once per module as always-inline functions; the
`a * b + c` steps that gcc contracts into FMAs are llvm.fmuladd here.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from llvmlite import ir

from ...errors import CompileError
from .emitter import F32, I32, Emitter

Rule = Callable[[Emitter, ir.Value, list], ir.Value]


def _ratio(a: float, b: float) -> float:
    """a / b rounded as the C compiler folds `a.0f / b.0f`: in float32."""
    return float(np.float32(a) / np.float32(b))


def _relu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.select(e.fcmp("<", x, e.f32(0.0)), e.f32(0.0), x)


def _clip(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    lo, hi = e.f32(params[0]), e.f32(params[1])
    return e.b.select(e.fcmp("<", x, lo), lo, e.b.select(e.fcmp(">", x, hi), hi, x))


def _leaky_relu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.select(e.fcmp("<", x, e.f32(0.0)), e.b.fmul(x, e.f32(params[0])), x)


def _sigmoid(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.call(_prelude(e, "convgen_sigmoidf", _emit_sigmoid), [x])


def _tanh(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.call(_prelude(e, "convgen_tanhf", _emit_tanh), [x])


def _clamp_unit(e: Emitter, t: ir.Value) -> ir.Value:
    """t < 0 ? 0 : (t > 1 ? 1 : t), NaN staying NaN."""
    return e.b.select(e.fcmp("<", t, e.f32(0.0)), e.f32(0.0), e.b.select(e.fcmp(">", t, e.f32(1.0)), e.f32(1.0), t))


def _hard_sigmoid(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return _clamp_unit(e, e.muladd(e.f32(params[0]), x, e.f32(params[1])))


def _hard_swish(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.fmul(x, _hard_sigmoid(e, x, [_ratio(1, 6), 0.5]))


ACTIVATIONS: dict[str, Rule] = {
    "relu": _relu, "clip": _clip, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid, "tanh": _tanh,
    "hard_sigmoid": _hard_sigmoid, "hard_swish": _hard_swish,
}


def apply(e: Emitter, activation: dict | None, x: ir.Value) -> ir.Value:
    """The activation applied to the float `x` (x itself when there is none)."""
    if activation is None:
        return x
    rule = ACTIVATIONS.get(activation["kind"])
    if rule is None:
        raise CompileError(f"no LLVM IR for activation {activation['kind']!r}")
    return rule(e, x, activation["params"])


# -- the prelude: float -> float helpers, defined on first use ---------------------------------

def _prelude(e: Emitter, name: str, emit: Callable[[Emitter, ir.Value], ir.Value]) -> ir.Function:
    if name in e.module.globals:
        return e.module.globals[name]
    fn = ir.Function(e.module, ir.FunctionType(F32, [F32]), name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    fe = e.sibling(fn)
    fe.ret(emit(fe, fn.args[0]))
    return fn


def _emit_exp(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_expf: x = n*ln2 + r (Cody-Waite), e^r by Taylor to r^7, times 2^n."""
    b, f = e.b, e.f32
    x = b.select(e.fcmp("<", x, f(-87.0)), f(-87.0), b.select(e.fcmp(">", x, f(88.0)), f(88.0), x))
    shifted = e.muladd(x, f(1.44269504), f(12582912.0))  # round to nearest: n in the low mantissa bits
    n = b.fsub(shifted, f(12582912.0))
    r = e.muladd(b.fneg(n), f(0.693145752), x)
    r = e.muladd(b.fneg(n), f(1.42860677e-6), r)
    p = f(_ratio(1, 5040))
    for c in (_ratio(1, 720), _ratio(1, 120), _ratio(1, 24), _ratio(1, 6), 0.5, 1.0, 1.0):
        p = e.muladd(p, r, f(c))
    # 2^n: the integer n is read from the bits of `shifted` (fptosi would be poison for NaN)
    # (named exp_bits: the only i32 arithmetic in a module, tests/test_large_indices.py checks)
    integer = b.sub(b.bitcast(shifted, I32), ir.Constant(I32, 0x4B400000), name="exp_bits")
    bits = b.shl(b.add(integer, ir.Constant(I32, 127), name="exp_bits"), ir.Constant(I32, 23), name="exp_bits")
    return b.fmul(p, b.bitcast(bits, F32))


def _emit_tanh(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_tanhf: odd Taylor series below 1/4, else 1 - 2/(e^2|x| + 1), saturating past 10."""
    b, f = e.b, e.f32
    x2 = b.fmul(x, x)
    small = f(_ratio(-1382, 155925))
    for c in (_ratio(62, 2835), -_ratio(17, 315), _ratio(2, 15), -_ratio(1, 3)):
        small = e.muladd(small, x2, f(c))
    small = e.muladd(b.fmul(x, x2), small, x)
    magnitude = e.intrinsic("llvm.fabs", [x])
    a = b.select(e.fcmp("<", magnitude, f(10.0)), magnitude, f(10.0))
    exp = b.call(_prelude(e, "convgen_expf", _emit_exp), [b.fmul(f(2.0), a)])
    large = e.intrinsic("llvm.copysign", [b.fsub(f(1.0), b.fdiv(f(2.0), b.fadd(exp, f(1.0)))), x])
    return b.select(e.fcmp("<", magnitude, f(0.25)), small, b.select(e.is_nan(x), x, large))


def _emit_sigmoid(e: Emitter, x: ir.Value) -> ir.Value:
    exp = e.b.call(_prelude(e, "convgen_expf", _emit_exp), [e.b.fneg(x)])
    return e.b.fdiv(e.f32(1.0), e.b.fadd(e.f32(1.0), exp))

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


# convgen_tanhf's rational approximation (Eigen's): odd numerator, even denominator, in x^2
TANH_CLAMP = 7.90531110763549805
TANH_NUMERATOR = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                  1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
TANH_DENOMINATOR = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _emit_tanh(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_tanhf: p(x)/q(x) on [-7.905, 7.905], x itself below 4e-4, +-1 past 9.1."""
    b, f = e.b, e.f32
    c = b.select(e.fcmp("<", x, f(-TANH_CLAMP)), f(-TANH_CLAMP),
                 b.select(e.fcmp(">", x, f(TANH_CLAMP)), f(TANH_CLAMP), x))
    x2 = b.fmul(c, c)
    p, q = f(TANH_NUMERATOR[0]), f(TANH_DENOMINATOR[0])
    for a in TANH_NUMERATOR[1:]:
        p = e.muladd(p, x2, f(a))
    for a in TANH_DENOMINATOR[1:]:
        q = e.muladd(q, x2, f(a))
    magnitude = e.intrinsic("llvm.fabs", [x])
    t = b.select(e.fcmp("<", magnitude, f(0.0004)), x, b.fdiv(b.fmul(c, p), q))
    return b.select(e.fcmp(">", magnitude, f(9.1)), e.intrinsic("llvm.copysign", [f(1.0), x]), t)


def _emit_sigmoid(e: Emitter, x: ir.Value) -> ir.Value:
    exp = e.b.call(_prelude(e, "convgen_expf", _emit_exp), [e.b.fneg(x)])
    return e.b.fdiv(e.f32(1.0), e.b.fadd(e.f32(1.0), exp))

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
from ...ops.activation import (ERF_CLAMP, ERF_DENOMINATOR, ERF_NUMERATOR, EXP_LN2_HIGH, EXP_LN2_LOW, EXP_LOG2E,
                               EXP_POLYNOMIAL, TANH_CLAMP, TANH_DENOMINATOR, TANH_NUMERATOR)
from .emitter import F32, I32, Emitter
from .native import host_target

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


def _unit_clamp(e: Emitter, t: ir.Value) -> ir.Value:
    """convgen_unit_clampf: t clamped to [0, 1] by llvm.smax / llvm.smin of its bits (integer order is float
    order for t >= 0; negative t becomes +0); NaN becomes 0 or 1, the callers keep it."""
    bits = e.intrinsic("llvm.smax", [e.b.bitcast(t, I32), ir.Constant(I32, 0)])
    bits = e.intrinsic("llvm.smin", [bits, ir.Constant(I32, 0x3F800000)])  # the bits of 1.0f
    return e.b.bitcast(bits, F32)


def _hard_sigmoid(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    t = e.muladd(e.f32(params[0]), x, e.f32(params[1]))
    return e.b.select(e.is_nan(t), t, _unit_clamp(e, t))


def _hard_swish(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    """x * clamp(x / 6 + 1/2, 0, 1): NaN stays NaN through the product."""
    return e.b.fmul(x, _unit_clamp(e, e.muladd(x, e.f32(_ratio(1, 6)), e.f32(0.5))))


def _half(e: Emitter, x: ir.Value) -> ir.Value:
    return e.b.fmul(e.f32(0.5), x)


def _silu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.fdiv(x, e.b.fadd(e.f32(1.0), _call_exp_full(e, e.b.fneg(x))))


def _gelu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    erf = e.b.call(_prelude(e, "convgen_erff", _emit_erf), [e.b.fmul(x, e.f32(0.707106781))])
    return e.b.fmul(_half(e, x), e.b.fadd(e.f32(1.0), erf))


def _gelu_tanh(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    cube = e.b.fmul(e.b.fmul(e.b.fmul(e.f32(0.044715), x), x), x)
    inner = e.b.fmul(e.f32(0.797884561), e.b.fadd(x, cube))
    return e.b.fmul(_half(e, x), e.b.fadd(e.f32(1.0), _tanh(e, inner, [])))


def _expm1(e: Emitter, x: ir.Value) -> ir.Value:
    return e.b.call(_prelude(e, "convgen_expm1f", _emit_expm1), [x])


def _positive_or(e: Emitter, x: ir.Value, negative: ir.Value) -> ir.Value:
    return e.b.select(e.fcmp(">", x, e.f32(0.0)), x, negative)


def _elu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return _positive_or(e, x, e.b.fmul(e.f32(params[0]), _expm1(e, x)))


def _selu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.fmul(e.f32(params[1]), _elu(e, x, params[:1]))


def _celu(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return _positive_or(e, x, e.b.fmul(e.f32(params[0]), _expm1(e, e.b.fdiv(x, e.f32(params[0])))))


def _softplus(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    """convgen_softplusf: (max(t, 0) + log1p(e^-|t|)) / beta, t = beta x; x past the threshold."""
    b, f = e.b, e.f32
    t = b.fmul(f(params[0]), x)
    u = b.call(_prelude(e, "convgen_expf", _emit_exp), [b.fneg(e.intrinsic("llvm.fabs", [t]))])
    w = b.fadd(f(1.0), u)
    log1p = b.select(e.fcmp("==", w, f(1.0)), u,
                     b.fmul(_log(e, w), b.fdiv(u, b.fsub(w, f(1.0)))))
    y = b.fdiv(b.fadd(b.select(e.fcmp(">", t, f(0.0)), t, f(0.0)), log1p), f(params[0]))
    return b.select(e.fcmp(">", t, f(params[1])), x, b.select(e.is_nan(t), t, y))


def _softsign(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    return e.b.fdiv(x, e.b.fadd(e.f32(1.0), e.intrinsic("llvm.fabs", [x])))


def _sign(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    """x > 0 ? 1 : (x < 0 ? -1 : x - x (+0 for either zero, NaN for NaN) or 0)."""
    f = e.f32
    rest = e.b.fsub(x, x) if params[0] else f(0.0)
    return e.b.select(e.fcmp(">", x, f(0.0)), f(1.0), e.b.select(e.fcmp("<", x, f(0.0)), f(-1.0), rest))


def _call_exp_full(e: Emitter, x: ir.Value) -> ir.Value:
    return e.b.call(_prelude(e, "convgen_exp_fullf", _emit_exp_full), [x])


def _log(e: Emitter, x: ir.Value) -> ir.Value:
    return e.b.call(_prelude(e, "convgen_logf", _emit_log), [x])


def _pow(e: Emitter, x: ir.Value, params: list) -> ir.Value:
    """The template's power macro: small integers by multiplication, 1/2 by sqrt, else exp(p log x)."""
    p = params[0]
    n = int(p)
    if p == n and -4 <= n <= 4:
        if n == 0:
            return e.f32(1.0)
        product = x
        for _ in range(abs(n) - 1):
            product = e.b.fmul(product, x)
        return product if n > 0 else e.b.fdiv(e.f32(1.0), product)
    if p == 0.5:
        return e.intrinsic("llvm.sqrt", [x])
    if p == n:
        r = _call_exp_full(e, e.b.fmul(e.f32(p), _log(e, e.intrinsic("llvm.fabs", [x]))))
        return e.intrinsic("llvm.copysign", [r, x]) if n % 2 else r
    general = _call_exp_full(e, e.b.fmul(e.f32(p), _log(e, x)))
    return e.b.select(e.fcmp("==", x, e.f32(-np.inf)), e.f32(np.inf if p > 0 else 0.0), general)


ACTIVATIONS: dict[str, Rule] = {
    "relu": _relu, "clip": _clip, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid, "tanh": _tanh,
    "hard_sigmoid": _hard_sigmoid, "hard_swish": _hard_swish,
    "silu": _silu, "gelu": _gelu, "gelu_tanh": _gelu_tanh, "elu": _elu, "selu": _selu, "celu": _celu,
    "softplus": _softplus, "softsign": _softsign, "pow": _pow, "sign": _sign,
    "mish": lambda e, x, params: e.b.call(_prelude(e, "convgen_mishf", _emit_mish), [x]),
    "exp": lambda e, x, params: _call_exp_full(e, x),
    "log": lambda e, x, params: _log(e, x),
    "erf": lambda e, x, params: e.b.call(_prelude(e, "convgen_erff", _emit_erf), [x]),
    "sqrt": lambda e, x, params: e.intrinsic("llvm.sqrt", [x]),
    "abs": lambda e, x, params: e.intrinsic("llvm.fabs", [x]),
    "neg": lambda e, x, params: e.b.fneg(x),
    "reciprocal": lambda e, x, params: e.b.fdiv(e.f32(1.0), x),
    "scale": lambda e, x, params: e.b.fmul(x, e.f32(params[0])),
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


def _exp_scaled(e: Emitter, x: ir.Value, k: float) -> ir.Value:
    """convgen_exp_scaledf: e^(k x) for k of 1 or 1/2, Cody-Waite with ln2 / k, the polynomial in r with
    coefficients c_j k^j, e^-87 below -87 / k, n capped at 127 by an integer min (the polynomial
    overflows to inf beyond), 2^n shifted out of the rounding constant's bits."""
    b, f = e.b, e.f32
    x = b.select(e.fcmp("<", x, f(-87.0 / k)), f(-87.0 / k), x)
    shifted = e.muladd(x, f(_f32(EXP_LOG2E) * k), f(12583039.0))  # 1.5 * 2^23 + 127 + n
    # (named exp_bits: the only i32 arithmetic in a module, tests/test_large_indices.py checks)
    bits = b.bitcast(shifted, I32)
    bits = b.select(b.icmp_signed("<", bits, ir.Constant(I32, 0x4B4000FE), name="exp_bits"), bits,
                    ir.Constant(I32, 0x4B4000FE), name="exp_bits")  # n <= 127
    n = b.fsub(b.bitcast(bits, F32), f(12583039.0))
    r = e.muladd(b.fneg(n), f(_f32(EXP_LN2_HIGH) / k), x)
    r = e.muladd(b.fneg(n), f(_f32(EXP_LN2_LOW) / k), r)
    degree = len(EXP_POLYNOMIAL) - 1
    p = f(_f32(EXP_POLYNOMIAL[0]) * k ** degree)
    for j, c in enumerate(EXP_POLYNOMIAL[1:], 1):
        p = e.muladd(p, r, f(_f32(c) * k ** (degree - j)))
    # 2^n: (n + 127) << 23 (fptosi would be poison for NaN)
    scale = b.bitcast(b.shl(bits, ir.Constant(I32, 23), name="exp_bits"), F32)
    return b.fmul(p, scale)


def _f32(c: float) -> float:
    """c rounded to float32, as the C literal `c` + "f" is (scaled by k after: exact, k a power of 2)."""
    return float(np.float32(c))


def _emit_exp(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_expf: e^x, e^-87 below -87, inf past 88.7."""
    return _exp_scaled(e, x, 1.0)


def _horner_pair(e: Emitter, x2: ir.Value, numerator: tuple[float, ...],
                 denominator: tuple[float, ...]) -> tuple[ir.Value, ir.Value]:
    """p(x2) and q(x2), Horner, highest coefficient first (tanh's and erf's polynomials in c^2)."""
    f = e.f32
    p, q = f(numerator[0]), f(denominator[0])
    for a in numerator[1:]:
        p = e.muladd(p, x2, f(a))
    for a in denominator[1:]:
        q = e.muladd(q, x2, f(a))
    return p, q


def _odd_rational(e: Emitter, x: ir.Value, bound: float, numerator: tuple[float, ...],
                  denominator: tuple[float, ...]) -> ir.Value:
    """c * p(c^2) / q(c^2) with c = x clamped to [-bound, bound] (erf's form)."""
    b, f = e.b, e.f32
    c = b.select(e.fcmp("<", x, f(-bound)), f(-bound), b.select(e.fcmp(">", x, f(bound)), f(bound), x))
    p, q = _horner_pair(e, b.fmul(c, c), numerator, denominator)
    return b.fdiv(b.fmul(c, p), q)


def _emit_tanh(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_tanhf: x (p(x^2) / q(x^2)) up to 7.905 in magnitude, +-1 past it (one select, no clamp)."""
    b, f = e.b, e.f32
    p, q = _horner_pair(e, b.fmul(x, x), TANH_NUMERATOR, TANH_DENOMINATOR)
    rational = b.fmul(x, b.fdiv(p, q))
    magnitude = e.intrinsic("llvm.fabs", [x])
    return b.select(e.fcmp(">", magnitude, f(TANH_CLAMP)), e.intrinsic("llvm.copysign", [f(1.0), x]), rational)


def _emit_sigmoid(e: Emitter, x: ir.Value) -> ir.Value:
    exp = e.b.call(_prelude(e, "convgen_expf", _emit_exp), [e.b.fneg(x)])
    return e.b.fdiv(e.f32(1.0), e.b.fadd(e.f32(1.0), exp))


def _emit_exp_full(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_exp_fullf: (e^(x/2))^2, inf past 88.72 and 0 below -103 as libm.  On AVX-512 hosts instead
    llvm.ldexp(e^r, n), which the vectorizer turns into vscalefps (what onnxruntime's MLAS kernel does):
    one rounding of the scaling, subnormal results and overflow to inf without the squaring's multiply
    and compare (exp over 1x64x56x56 on Zen 4: 42 -> 36 us); elsewhere ldexp stays a libm call a lane."""
    if not _vector_ldexp():
        h = e.b.call(_prelude(e, "convgen_exp_halff", lambda fe, v: _exp_scaled(fe, v, 0.5)), [x])
        return e.b.fmul(h, h)
    b, f = e.b, e.f32
    # -104: e^x rounds to 0 below -103.97; 89: to inf past 88.73 (NaN passes both selects)
    low = b.select(e.fcmp("<", x, f(-104.0)), f(-104.0), x)
    x = b.select(e.fcmp("<", f(89.0), low), f(89.0), low)   # 89 < x ? 89 : x: one vminps (x > 89 was two ops)
    shifted = e.muladd(x, f(_f32(EXP_LOG2E)), f(12582912.0))  # 1.5 * 2^23 + n: n in the low bits
    n = b.fsub(shifted, f(12582912.0))
    whole = b.sub(b.bitcast(shifted, I32), ir.Constant(I32, 0x4B400000), name="exp_bits")  # n, exactly
    r = e.muladd(b.fneg(n), f(_f32(EXP_LN2_HIGH)), x)
    r = e.muladd(b.fneg(n), f(_f32(EXP_LN2_LOW)), r)
    p = f(_f32(EXP_POLYNOMIAL[0]))
    for c in EXP_POLYNOMIAL[1:]:
        p = e.muladd(p, r, f(_f32(c)))
    name = "llvm.ldexp.f32.i32"
    ldexp = e.module.globals.get(name) or ir.Function(e.module, ir.FunctionType(F32, [F32, I32]), name)
    return b.call(ldexp, [p, whole])


def _vector_ldexp() -> bool:
    """Whether the host has vscalefps (AVX-512F), into which LLVM vectorizes llvm.ldexp (native.host_target's
    features are in the cache key)."""
    return "+avx512f" in host_target().features.split(",")


def _emit_expm1(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_expm1f: Taylor to x^8 below 0.35 in magnitude, e^x - 1 beyond."""
    f = e.f32
    p = f(_ratio(1, 40320))
    for c in (_ratio(1, 5040), _ratio(1, 720), _ratio(1, 120), _ratio(1, 24), _ratio(1, 6), 0.5, 1.0):
        p = e.muladd(p, x, f(c))
    exp = e.b.call(_prelude(e, "convgen_expf", _emit_exp), [x])
    small = e.fcmp("<", e.intrinsic("llvm.fabs", [x]), f(0.35))
    return e.b.select(small, e.b.fmul(p, x), e.b.fsub(exp, f(1.0)))


LOG_POLYNOMIAL = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
                  -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


def _emit_log(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_logf (Cephes): x = m 2^e, m in [sqrt(1/2), sqrt(2)), log(m) by a polynomial in m - 1."""
    b, f = e.b, e.f32
    tiny = e.fcmp("<", x, f(1.17549435e-38))
    v = b.select(tiny, b.fmul(x, f(8388608.0)), x)
    # (named exp_bits: the i32 arithmetic of the float's exponent, tests/test_large_indices.py allows it)
    bits = b.bitcast(v, I32)
    exponent = b.sub(b.ashr(bits, ir.Constant(I32, 23), name="exp_bits"), ir.Constant(I32, 126), name="exp_bits")
    ex = b.fsub(b.sitofp(exponent, F32), b.select(tiny, f(23.0), f(0.0)))
    mantissa = b.or_(b.and_(bits, ir.Constant(I32, 0x007FFFFF)), ir.Constant(I32, 0x3F000000))
    m = b.bitcast(mantissa, F32)
    low = e.fcmp("<", m, f(0.707106781))
    ex = b.select(low, b.fsub(ex, f(1.0)), ex)
    r = b.select(low, b.fsub(b.fadd(m, m), f(1.0)), b.fsub(m, f(1.0)))
    z = b.fmul(r, r)
    p = f(LOG_POLYNOMIAL[0])
    for c in LOG_POLYNOMIAL[1:]:
        p = e.muladd(p, r, f(c))
    y = e.muladd(b.fmul(p, r), z, b.fmul(ex, f(-2.12194440e-4)))
    y = b.fsub(y, b.fmul(f(0.5), z))
    y = e.muladd(ex, f(0.693359375), b.fadd(r, y))
    y = b.select(e.fcmp("==", x, f(0.0)), f(-np.inf), y)
    y = b.select(e.fcmp("<", x, f(0.0)), f(np.nan), y)
    return b.select(b.or_(e.fcmp("==", x, f(np.inf)), e.is_nan(x)), x, y)


def _emit_erf(e: Emitter, x: ir.Value) -> ir.Value:
    return _odd_rational(e, x, ERF_CLAMP, ERF_NUMERATOR, ERF_DENOMINATOR)


def _emit_mish(e: Emitter, x: ir.Value) -> ir.Value:
    """convgen_mishf: x n / (n + 2), n = e^x (e^x + 2); x itself past 20."""
    b, f = e.b, e.f32
    exp = _call_exp_full(e, x)
    n = b.fmul(exp, b.fadd(exp, f(2.0)))
    return b.select(e.fcmp(">", x, f(20.0)), x, b.fdiv(b.fmul(x, n), b.fadd(n, f(2.0))))

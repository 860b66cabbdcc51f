"""Pointwise activations, op "activation" with attrs Activation(kind, params):

    relu                                max(x, 0)
    clip(min, max)                      ONNX Clip, torch clamp / hardtanh / relu6
    leaky_relu(negative_slope)          ONNX LeakyRelu (alpha)
    sigmoid, tanh
    hard_sigmoid(alpha, beta)           ONNX HardSigmoid: clip(alpha*x + beta, 0, 1) (ONNX defaults 0.2, 0.5;
                                        torch Hardsigmoid is alpha 1/6, beta 0.5)
    hard_swish                          ONNX HardSwish, torch Hardswish: x * hard_sigmoid(x; 1/6, 0.5)
    silu                                torch SiLU: x * sigmoid(x) (ONNX: Sigmoid -> Mul, fused by a pass)
    gelu, gelu_tanh                     torch GELU(approximate='none' | 'tanh'), ONNX Gelu
    mish                                x * tanh(softplus(x))
    elu(alpha), celu(alpha)             x > 0 ? x : alpha * (exp(x) - 1); CELU: exp(x / alpha)
    selu(alpha, gamma)                  gamma * elu(x; alpha) (torch's constants are ONNX's defaults)
    softplus(beta, threshold)           beta * x > threshold ? x : log(1 + exp(beta * x)) / beta
    softsign                            x / (1 + |x|)
    exp, log, sqrt, abs, neg, reciprocal, erf
    sign(nan_propagates)                -1, 0 or 1 (0 for -0 too); NaN gives NaN with nan_propagates = 1
                                        (ONNX Sign as onnxruntime and numpy do it), 0 with 0 (torch.sign)
    pow(exponent)                       x ** exponent, a constant
    scale(factor)                       x * factor (ONNX Mean's 1/n, as an epilogue of the sum)

Every kind's numpy reference is below (the tests' float64 oracle); the C expression is in
templates/activation.c.j2 and the LLVM rule in backends/llvm/activation.py, with the same
vectorizable approximations of exp, log, tanh and erf.

An Activation is also an attribute of conv, linear, batch_norm and add, where
the fusion pass folds a following activation layer into the producer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import math

import numpy as np

from ..errors import ConvgenError
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


@dataclass(frozen=True)
class ActivationKind:
    params: tuple[str, ...]
    numpy: Callable[..., np.ndarray]
    flops_per_element: int


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _hard_sigmoid(x, alpha, beta):
    t = x * alpha + beta
    return np.where(t < 0, 0, np.where(t > 1, 1, t))


def _softplus(x, beta, threshold):
    t = x * beta
    return np.where(t > threshold, x, (np.maximum(t, 0) + np.log1p(np.exp(-np.abs(t)))) / beta)


def _elu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(x))


def _pow(x, exponent):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.power(x, exponent)


def _sign(x, nan_propagates):
    return np.where(x > 0, 1.0, np.where(x < 0, -1.0, x - x if nan_propagates else 0.0))


_erf = np.vectorize(math.erf, otypes=[np.float64])

# -- the inline approximations' constants ------------------------------------------------------------
# One home for the numbers both backends compute exp, tanh and erf with: templates/activation.c.j2 reads
# them as Jinja globals (APPROXIMATIONS, set in backends/c.environment), backends/llvm/activation.py
# imports them.  Each is rounded to float32 where it is used, as the C literal `c`f is.

# e^x = 2^n e^r: n = round(x log2(e)), r = x - n ln2 with ln2 in two parts (Cody-Waite: the high part
# exact in float32), e^r = 1 + r + r^2 (c2 + ... + c5 r^3) on [-ln2/2, ln2/2], highest coefficient first
# (c2..c5 fitted to the least maximum relative error)
EXP_LOG2E = 1.44269504
EXP_LN2_HIGH, EXP_LN2_LOW = 0.693145752, 1.42860677e-6
EXP_POLYNOMIAL = (8.31252523e-3, 4.18901145e-2, 1.66671142e-1, 4.99992311e-1, 1.0, 1.0)
# tanh (Eigen's rational): x p(x^2) / q(x^2), odd numerator over even denominator, +-1 past TANH_CLAMP
TANH_CLAMP = 7.90531110763549805
TANH_NUMERATOR = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                  1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
TANH_DENOMINATOR = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
# erf (Eigen's rational): c p(c^2) / q(c^2) with c = x clamped to [-ERF_CLAMP, ERF_CLAMP]
ERF_CLAMP = 4.0
ERF_NUMERATOR = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
                 -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
ERF_DENOMINATOR = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
                   -1.42647390514189e-02)
APPROXIMATIONS = dict(EXP_LOG2E=EXP_LOG2E, EXP_LN2_HIGH=EXP_LN2_HIGH, EXP_LN2_LOW=EXP_LN2_LOW,
                      EXP_POLYNOMIAL=EXP_POLYNOMIAL, TANH_CLAMP=TANH_CLAMP, TANH_NUMERATOR=TANH_NUMERATOR,
                      TANH_DENOMINATOR=TANH_DENOMINATOR, ERF_CLAMP=ERF_CLAMP, ERF_NUMERATOR=ERF_NUMERATOR,
                      ERF_DENOMINATOR=ERF_DENOMINATOR)
SELU_ALPHA, SELU_GAMMA = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


KINDS: dict[str, ActivationKind] = {
    "relu": ActivationKind((), lambda x: np.where(x < 0, 0, x), 1),
    "clip": ActivationKind(("min", "max"), lambda x, lo, hi: np.where(x < lo, lo, np.where(x > hi, hi, x)), 2),
    "leaky_relu": ActivationKind(("negative_slope",), lambda x, a: np.where(x < 0, x * a, x), 2),
    "sigmoid": ActivationKind((), _sigmoid, 4),
    "tanh": ActivationKind((), np.tanh, 4),
    "hard_sigmoid": ActivationKind(("alpha", "beta"), _hard_sigmoid, 4),
    "hard_swish": ActivationKind((), lambda x: x * _hard_sigmoid(x, 1.0 / 6.0, 0.5), 5),
    "silu": ActivationKind((), lambda x: x * _sigmoid(x), 5),
    "gelu": ActivationKind((), lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))), 8),
    "gelu_tanh": ActivationKind(
        (), lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))), 9),
    "mish": ActivationKind((), lambda x: x * np.tanh(_softplus(x, 1.0, math.inf)), 8),
    "elu": ActivationKind(("alpha",), _elu, 5),
    "selu": ActivationKind(("alpha", "gamma"), lambda x, a, g: g * _elu(x, a), 6),
    "celu": ActivationKind(("alpha",), lambda x, a: np.where(x > 0, x, a * np.expm1(x / a)), 6),
    "softplus": ActivationKind(("beta", "threshold"), _softplus, 6),
    "softsign": ActivationKind((), lambda x: x / (1.0 + np.abs(x)), 3),
    "exp": ActivationKind((), np.exp, 4),
    "log": ActivationKind((), lambda x: np.log(x), 4),
    "sqrt": ActivationKind((), lambda x: np.sqrt(x), 1),
    "abs": ActivationKind((), np.abs, 1),
    "neg": ActivationKind((), np.negative, 1),
    "reciprocal": ActivationKind((), lambda x: 1.0 / x, 1),
    "erf": ActivationKind((), _erf, 6),
    "sign": ActivationKind(("nan_propagates",), _sign, 2),
    "pow": ActivationKind(("exponent",), _pow, 4),
    "scale": ActivationKind(("factor",), lambda x, factor: x * factor, 1),
}


@dataclass(frozen=True)
class Activation:
    kind: str
    params: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConvgenError(f"unknown activation {self.kind!r}; known: {sorted(KINDS)}")
        expected = KINDS[self.kind].params
        if len(self.params) != len(expected):
            raise ConvgenError(f"activation {self.kind} takes parameters {expected}, got {self.params}")
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        if self.kind == "pow" and not math.isfinite(self.params[0]):
            raise ConvgenError(f"activation pow: the exponent must be a finite number, got {self.params[0]}")
        if self.kind == "sign" and self.params[0] not in (0.0, 1.0):
            raise ConvgenError(f"activation sign: nan_propagates must be 0 or 1, got {self.params[0]}")
        if self.kind in ("softplus", "celu") and self.params[0] == 0:
            raise ConvgenError(f"activation {self.kind}: {expected[0]} must not be 0")

    def apply(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # inf * 0 is NaN, as in torch
            return KINDS[self.kind].numpy(x, *self.params)

    def __str__(self) -> str:
        return self.kind if not self.params else f"{self.kind}({', '.join(f'{p:g}' for p in self.params)})"


def apply_optional(activation: Activation | None, x: np.ndarray) -> np.ndarray:
    return x if activation is None else activation.apply(x)


def _infer(layer: str, attrs: Activation, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (types[0],)


register(OpDef(
    name="activation",
    infer=_infer,
    flops=lambda attrs, ins, outs: KINDS[attrs.kind].flops_per_element * outs[0].size,
    reference=lambda attrs, x: attrs.apply(x.astype(np.float64)).astype(np.float32),
))

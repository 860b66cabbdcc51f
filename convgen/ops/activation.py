"""Pointwise activations, op "activation" with attrs Activation(kind, params):

    relu                                max(x, 0)
    clip(min, max)                      ONNX Clip, torch clamp / hardtanh / relu6
    leaky_relu(negative_slope)          ONNX LeakyRelu (alpha)
    sigmoid, tanh
    hard_sigmoid(alpha, beta)           ONNX HardSigmoid: clip(alpha*x + beta, 0, 1) (ONNX defaults 0.2, 0.5;
                                        torch Hardsigmoid is alpha 1/6, beta 0.5)
    hard_swish                          ONNX HardSwish, torch Hardswish: x * hard_sigmoid(x; 1/6, 0.5)

An Activation is also an attribute of conv, linear, batch_norm and add, where
the fusion pass folds a following activation layer into the producer.  The C
expression for each kind lives in templates/activation.c.j2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


KINDS: dict[str, ActivationKind] = {
    "relu": ActivationKind((), lambda x: np.where(x < 0, 0, x), 1),
    "clip": ActivationKind(("min", "max"), lambda x, lo, hi: np.where(x < lo, lo, np.where(x > hi, hi, x)), 2),
    "leaky_relu": ActivationKind(("negative_slope",), lambda x, a: np.where(x < 0, x * a, x), 2),
    "sigmoid": ActivationKind((), _sigmoid, 4),
    "tanh": ActivationKind((), np.tanh, 4),
    "hard_sigmoid": ActivationKind(("alpha", "beta"), _hard_sigmoid, 4),
    "hard_swish": ActivationKind((), lambda x: x * _hard_sigmoid(x, 1.0 / 6.0, 0.5), 5),
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

    def apply(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN, as in torch
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

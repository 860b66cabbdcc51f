"""The op registry: a plain dict from op name to its OpDef.

An OpDef holds every fact about an op that is not a schedule: how to infer its
output types, count its FLOPs, step the receptive field, and compute it in
plain numpy (the reference the tests use).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UnsupportedError
from ..ir import TensorType

InferFn = Callable[[str, Any, list[TensorType]], tuple[TensorType, ...]]
FlopsFn = Callable[[Any, list[TensorType], tuple[TensorType, ...]], int]
WindowFn = Callable[[Any, TensorType], Sequence[tuple[int, int, int]]]
ReferenceFn = Callable[..., Any]


@dataclass(frozen=True)
class OpDef:
    name: str
    infer: InferFn
    flops: FlopsFn
    reference: ReferenceFn
    data_inputs: int = 1
    """How many leading inputs are activations; the rest are parameters (weights, bias, ...)."""
    window: WindowFn | None = None
    """(kernel, stride, dilation) per spatial axis, for the receptive field; None: pointwise."""
    transposed: bool = False
    """The window is transposed (upsampling): outputs lie stride times closer than inputs."""


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is registered twice")
    OPS[op.name] = op
    return op


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedError(f"unknown op {name!r}; known ops: {sorted(OPS)}") from None


def run_reference(op: str, attrs: Any, *arrays: np.ndarray):
    return get(op).reference(attrs, *arrays)

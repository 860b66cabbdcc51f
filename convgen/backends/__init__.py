"""Code generators: each turns a LoweredModel into a shared library (or, for LLVM, JIT code)."""
from __future__ import annotations

from typing import Callable

from . import c, llvm

BACKENDS: dict[str, Callable] = {"c": c.build, "llvm": llvm.build}
LAYER_CODE: dict[str, Callable[[str, str], str]] = {"c": c.layer_code, "llvm": llvm.layer_code}


def get(name: str) -> Callable:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}") from None


def layer_code(backend: str, source: str, layer: str) -> str:
    """The generated code of one layer's kernel, from a model's whole source."""
    return LAYER_CODE[backend](source, layer)

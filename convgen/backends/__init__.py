"""Code generators: each turns a LoweredModel into a shared library."""
from __future__ import annotations

from typing import Callable

from . import c

BACKENDS: dict[str, Callable] = {"c": c.build}


def get(name: str) -> Callable:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}") from None

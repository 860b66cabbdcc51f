"""Code generators: each turns a LoweredModel into a shared library (or, for LLVM, JIT code).

Each backend is imported on first use, so convgen works without llvmlite (C only) and without a
C compiler (LLVM only).  Asking for a backend whose toolchain is missing uses the other one with
a ToolchainWarning; with neither, ToolchainError says what is missing.
"""
from __future__ import annotations

import importlib
import shlex
import shutil
import warnings
from typing import Callable

from ..errors import ToolchainError, ToolchainWarning

NAMES = ("c", "llvm")


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def toolchain_problem(name: str) -> str | None:
    """Why backend `name` cannot generate code here, or None if it can."""
    if name == "c":
        from .c import compiler
        cc = compiler()
        argv = shlex.split(cc)
        if not argv or shutil.which(argv[0]) is None:
            return f"no C compiler: {cc!r} was not found (set CC to a C compiler)"
        return None
    try:
        importlib.import_module("llvmlite.binding")
    except ImportError as e:
        return f"llvmlite is not importable ({e}); pip install llvmlite"
    return None


def resolve(name: str) -> str:
    """The backend that will build for a request of `name`: itself, or the other one when its toolchain
    is missing (with a ToolchainWarning)."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(NAMES)}")
    problem = toolchain_problem(name)
    if problem is None:
        return name
    other = NAMES[1 - NAMES.index(name)]
    other_problem = toolchain_problem(other)
    if other_problem is not None:
        raise ToolchainError(f"no backend can generate code on this machine: {name}: {problem}; "
                             f"{other}: {other_problem}")
    warnings.warn(f"convgen: backend {name!r} is unavailable ({problem}); using the {other!r} backend",
                  ToolchainWarning, stacklevel=4)
    return other


def get(name: str) -> Callable:
    """The build function of backend `name` (or of the fallback, see resolve)."""
    return _module(resolve(name)).build


def layer_code(backend: str, source: str, layer: str) -> str:
    """The generated code of one layer's kernel, from a model's whole source."""
    return _module(backend).layer_code(source, layer)

"""The exceptions convgen raises.

ConvgenError is the root; the others also derive from the built-in exception
a Python user would expect (ValueError for impossible shapes,
NotImplementedError for unsupported features).
"""
from __future__ import annotations


class ConvgenError(Exception):
    """Root of every error convgen raises on purpose."""


class ShapeError(ConvgenError, ValueError):
    """A shape that cannot exist: names the layer, the axis and the numbers."""


class CompileError(ConvgenError):
    """The system C compiler (or LLVM) failed; `stderr` holds its output."""

    def __init__(self, message: str, stderr: str = "", source_path: str | None = None):
        self.stderr = stderr
        self.source_path = source_path
        detail = f"\n--- compiler output ---\n{stderr}" if stderr else ""
        super().__init__(message + detail)


class DTypeError(ConvgenError, TypeError):
    """A value of the wrong element type, e.g. int64 max-pool indices fed to a float op."""


class UnsupportedError(ConvgenError, NotImplementedError):
    """A feature convgen does not implement."""

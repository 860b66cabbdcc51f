"""The exceptions and warnings convgen raises.

    ConvgenError                      root of every error convgen raises on purpose
    ├── ShapeError(ValueError)        a shape that cannot exist; names the layer, the axis and the numbers
    ├── DTypeError(TypeError)         a value of the wrong element type
    ├── CompileError                  the C compiler, LLVM or the linker failed; `.stderr` holds its output
    ├── ToolchainError(CompileError)  no usable code generator: neither a C compiler nor llvmlite
    ├── CacheError(OSError)           the cache directory given cannot be written
    ├── ModelFormatError(ValueError)  a model file that cannot be read: truncated, malformed, inconsistent
    └── UnsupportedError(NotImplementedError)   a valid request convgen does not implement

    ConvgenWarning(UserWarning)
    ├── ToolchainWarning              a backend's toolchain is missing; the other backend is used
    └── CacheWarning                  the cache directory is unwritable; a temporary one is used

Call-time checks of arrays raise the built-in TypeError (not an array of real numbers, wrong
number or names of inputs) and ValueError (wrong shape, zero-size batch).
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


class ToolchainError(CompileError):
    """No backend can generate code on this machine (no C compiler and no llvmlite)."""


class CacheError(ConvgenError, OSError):
    """The cache directory passed explicitly cannot be created or written."""


class ModelFormatError(ConvgenError, ValueError):
    """A model file that cannot be imported: truncated or random bytes, missing or inconsistent parts."""


class DTypeError(ConvgenError, TypeError):
    """A value of the wrong element type, e.g. int64 max-pool indices fed to a float op."""


class UnsupportedError(ConvgenError, NotImplementedError):
    """A feature convgen does not implement."""


class ConvgenWarning(UserWarning):
    """Root of convgen's warnings."""


class ToolchainWarning(ConvgenWarning):
    """The requested backend's toolchain is missing and the other backend is used instead."""


class CacheWarning(ConvgenWarning):
    """The cache directory is not writable; libraries go to a temporary directory instead."""

"""convgen: a code-generating compiler for convolution and pooling kernels."""
from __future__ import annotations

__version__ = "0.1.0"

from . import nn, ops  # noqa: E402
from .errors import CompileError, ConvgenError, ShapeError, UnsupportedError  # noqa: E402
from .ir import Graph, Node, TensorType  # noqa: E402
from .nn import trace  # noqa: E402

__all__ = ["nn", "ops", "Graph", "Node", "TensorType", "trace", "compile", "load", "functional", "from_onnx",
           "ConvgenError", "ShapeError", "CompileError", "UnsupportedError", "__version__"]


def __getattr__(name: str):
    # The compiler pulls in jinja2 and cffi; load it on first use.
    if name in ("compile", "load", "CompiledModel"):
        from . import runtime
        return getattr(runtime, name)
    if name == "from_onnx":  # needs the onnx package only when used
        from .onnx import from_onnx
        return from_onnx
    if name == "functional":
        from . import functional
        return functional
    raise AttributeError(f"module 'convgen' has no attribute {name!r}")

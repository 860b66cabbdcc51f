"""convgen: a code-generating compiler for convolution and pooling kernels.

    >>> import numpy as np, convgen
    >>> from convgen import nn
    >>> graph = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).to_graph((1, 3, 16, 16))
    >>> model = convgen.compile(graph)
    >>> model(np.ones((1, 3, 16, 16), np.float32)).shape
    (1, 8, 8, 8)

The examples in convgen's docstrings assume these imports and `import convgen.functional as F`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import nn, ops  # noqa: E402
from .errors import (CacheError, CacheWarning, CompileError, ConvgenError, ConvgenWarning, DTypeError,  # noqa: E402
                     ModelFormatError, ShapeError, ToolchainError, ToolchainWarning, UnsupportedError)
from .ir import Graph, Node, TensorType  # noqa: E402
from .nn import trace  # noqa: E402

__all__ = ["nn", "ops", "Graph", "Node", "TensorType", "trace", "compile", "load", "functional", "from_onnx",
           "ConvgenError", "ShapeError", "CompileError", "UnsupportedError", "DTypeError", "ToolchainError",
           "CacheError", "ModelFormatError", "ConvgenWarning", "ToolchainWarning", "CacheWarning", "__version__"]


def __getattr__(name: str):
    # The compiler pulls in jinja2 and cffi; load it on first use.  import_module, not
    # `from . import x`: that form looks the name up here first and would recurse.
    import importlib
    if name in ("compile", "load", "CompiledModel"):
        return getattr(importlib.import_module(".runtime", __name__), name)
    if name == "from_onnx":  # needs the onnx package only when used
        return importlib.import_module(".onnx", __name__).from_onnx
    if name in ("functional", "cache"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'convgen' has no attribute {name!r}")

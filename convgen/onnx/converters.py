"""ONNX op type -> converter: one plain dict, filled by @converter, read by the importer.

The converters live by family in convert_windows.py, convert_pointwise.py, convert_activations.py
and convert_tensors.py.

A converter takes a NodeView and returns one value per ONNX output (a run-time Tensor from
node.emit, or a numpy array known at import); None for an output nobody may read.  Ops whose
inputs are all known at import are folded instead (folding.FOLDERS) when a folder exists.
COMPILE_TIME_INPUTS lists, per op type, the input slots convgen needs at import time.
"""
from __future__ import annotations

from typing import Callable

from ..trace import Tensor
from .context import NodeView, registrar

ConvertFn = Callable[[NodeView], list]
CONVERTERS: dict[str, ConvertFn] = {}
converter = registrar(CONVERTERS, "converter")

COMPILE_TIME_INPUTS: dict[str, tuple[int, ...]] = {
    "Clip": (1, 2), "Dropout": (1, 2), "Reshape": (1,), "Pad": (1, 2, 3), "Slice": (1, 2, 3, 4),
    "Squeeze": (1,), "Unsqueeze": (1,), "Gather": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
}


def data(node: NodeView, i: int = 0) -> Tensor:
    """Input i, the activation an op reads: computed at run time."""
    value = node.input(i)
    if not isinstance(value, Tensor):
        raise node.unsupported(f"input {i} ({node.input_names[i]!r}) is a constant and the op cannot be "
                               "evaluated at import time; convgen expects it computed at run time")
    return node.as_float32(value, i)


from . import (convert_activations, convert_movement, convert_norm, convert_pointwise,  # noqa: E402,F401
               convert_reductions, convert_tensors, convert_types, convert_windows)  # (registration)

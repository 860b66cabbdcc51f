"""Import ONNX models as convgen Graphs.

    graph = convgen.from_onnx("model.onnx")       # or an onnx.ModelProto, or bytes
    model = convgen.compile(graph)

loader.py reads and version-converts the file, attributes.py turns attributes and tensors
into Python values, converters.py maps each op type to convgen layers (one dict), and
folding.py evaluates at import the shape arithmetic exporters emit.
"""
from __future__ import annotations

from .converters import COMPILE_TIME_INPUTS, CONVERTERS
from .folding import FOLDERS
from .importer import from_onnx, supported_op_types

__all__ = ["from_onnx", "supported_op_types", "CONVERTERS", "FOLDERS", "COMPILE_TIME_INPUTS"]

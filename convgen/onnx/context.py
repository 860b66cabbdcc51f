"""The state of one import: every ONNX value as a run-time Tensor or an import-time numpy array.

Names from the file never reach generated code as they are: layer and constant names pass
through trace.identifier (C-safe) and the tracer's uniquing first.  Graph inputs keep the file's
names, and the graph its output names, so a model is called with the names onnxruntime's feeds
take; lower turns them into unique C identifiers (names.unique_identifiers) for the C code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .. import dtypes
from ..errors import ConvgenError, UnsupportedError
from ..ops.cast import CastAttrs
from ..trace import Tensor, Tracer, identifier

Value = Union[Tensor, np.ndarray]

# Op types that read integer values of up to 16 bits exactly when they compute in float32 (the value
# is only moved, compared or clipped); other ops refuse integer inputs rather than round or not wrap.
INTEGER_EXACT = {"MaxPool", "GlobalMaxPool", "Relu", "Clip", "Concat", "Transpose", "Reshape", "Flatten",
                 "Squeeze", "Unsqueeze", "Identity", "Pad", "Max", "Min", "Resize", "Upsample", "DepthToSpace",
                 "SpaceToDepth", "Split", "Slice", "Gather", "Expand", "Tile", "Where", "GatherND",
                 "Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "ReduceMax", "ReduceMin"}


def file_name(name) -> str:
    """A name from the file as text (protobuf hands over invalid UTF-8 as bytes)."""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def c_name(name) -> str:
    """A name from the file as a C identifier."""
    return identifier(file_name(name))


def registrar(table: dict, what: str):
    """A decorator factory filling `table` (op type -> function); a second entry for an op type fails."""
    def for_op_types(*op_types: str):
        def register(fn):
            for op_type in op_types:
                if op_type in table:
                    raise ValueError(f"{what} for {op_type!r} registered twice")
                table[op_type] = fn
            return fn
        return register
    return for_op_types


@dataclass
class Context:
    tracer: Tracer = field(default_factory=Tracer)
    values: dict[str, Value] = field(default_factory=dict)

    def value(self, name: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            raise ConvgenError(f"value {name!r} is not defined") from None

    def constant(self, name: str, array: np.ndarray) -> str:
        """A float array as a graph constant (compile-time weights), under a C-safe unique name."""
        return self.tracer.constant(self.tracer.unique(c_name(name)), np.asarray(array, np.float32))


@dataclass
class NodeView:
    """One ONNX node as the converters see it: label for errors, attributes, inputs resolved."""
    ctx: Context
    op_type: str
    name: str            # C-safe layer name, not yet reserved
    attrs: dict[str, Any]
    input_names: list[str]
    output_names: list[str]
    computed_from: str | None = None
    """The element type of the inputs cast to float32 for the op (its float outputs are cast back)."""

    @property
    def label(self) -> str:
        return f"node {self.name!r} ({self.op_type})"

    def has_input(self, i: int) -> bool:
        return i < len(self.input_names) and bool(self.input_names[i])

    def input(self, i: int) -> Value:
        if not self.has_input(i):
            raise ConvgenError(f"{self.label}: input {i} is missing")
        return self.ctx.value(self.input_names[i])

    def operand(self, i: int, typed: bool = True) -> Tensor | str:
        """Input i for tracer.emit: a run-time Tensor, or the name of a float graph constant.  `typed`: see
        as_float32."""
        value = self.input(i)
        if isinstance(value, Tensor):
            return self.as_float32(value, i, typed)
        if value.dtype.kind != "f" and value.dtype.name != "bfloat16":
            raise UnsupportedError(f"{self.label}: input {i} ({self.input_names[i]!r}) has element type "
                                   f"{value.dtype}; convgen computes in float32")
        return self.ctx.constant(self.input_names[i], value.astype(np.float32, copy=False))

    def as_float32(self, value: Tensor, i: int, typed: bool = True) -> Tensor:
        """A run-time input as the float32 the layers compute in: other types are cast, where that is exact
        enough (16-bit and 64-bit floats always, small integers where INTEGER_EXACT says, booleans as 0/1).
        `typed`: the op's float outputs are values of this input's type, cast back to it after the op
        (computed_from); False where they are not (a comparison's boolean, Where's condition)."""
        dtype = value.type.dtype
        if dtype == "float32":
            return value
        if dtypes.get(dtype).kind in ("int", "uint") and (dtypes.get(dtype).itemsize > 2
                                                           or self.op_type not in INTEGER_EXACT):
            raise UnsupportedError(f"{self.label}: input {i} ({self.input_names[i]!r}) has element type {dtype}; "
                                   f"convgen computes {self.op_type} in float32, which holds integers exactly only "
                                   "for 8- and 16-bit values in data movement, max and clipping ops")
        if typed:
            if self.computed_from not in (None, dtype):
                raise UnsupportedError(f"{self.label}: inputs of element types {self.computed_from} and {dtype}")
            self.computed_from = dtype
        return self.ctx.tracer.emit(self.name + f"_in{i}_float32", "cast", CastAttrs("float32"), [value], kind="Cast")

    def const(self, i: int, what: str) -> np.ndarray:
        """Input i, which convgen needs at import time (shapes, axes, pads, clip bounds...)."""
        value = self.input(i)
        if isinstance(value, Tensor):
            raise UnsupportedError(f"{self.label}: input {i} ({what}, {self.input_names[i]!r}) must be known at "
                                   "import time (an initializer or a Constant); it is computed at run time")
        return value

    def optional_const(self, i: int, what: str) -> np.ndarray | None:
        return self.const(i, what) if self.has_input(i) else None

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def emit(self, op: str, attrs: Any, inputs: list, suffix: str = "") -> Tensor | tuple[Tensor, ...]:
        return self.ctx.tracer.emit(self.name + suffix, op, attrs, inputs, kind=self.op_type)

    def shape_of(self, i: int) -> tuple[int, ...]:
        value = self.input(i)
        return value.shape if isinstance(value, Tensor) else tuple(value.shape)

    def unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{self.label}: {what}")

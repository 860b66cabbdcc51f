"""Import-time evaluation: ops whose inputs are all known are computed here with numpy.

Shapes are static in convgen, so the shape arithmetic exporters emit (Shape -> Gather ->
Unsqueeze -> Concat -> Reshape, ConstantOfShape, Range, Cast, Slice...) becomes constants
before any layer is built.  FOLDERS maps an ONNX op type to fn(node, arrays) -> output arrays;
`arrays` holds None for an absent optional input.  Semantics are those of ONNX opset >= 13.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import shapes
from ..errors import ConvgenError, ModelFormatError, ShapeError
from .context import NodeView, registrar

Arrays = Sequence[np.ndarray | None]
FoldFn = Callable[[NodeView, Arrays], list[np.ndarray]]
FOLDERS: dict[str, FoldFn] = {}
folder = registrar(FOLDERS, "folder")


# The largest array import-time evaluation may create: a model's absurd declared shape must fail
# clearly rather than allocate (1 GiB of float32; real models' folded shapes are tiny).
MAX_FOLDED_ELEMENTS = 1 << 28


def check_folded_size(node: NodeView, shape) -> None:
    count = int(np.prod([int(d) for d in shape], dtype=object)) if len(shape) else 1
    if count > MAX_FOLDED_ELEMENTS:
        raise ModelFormatError(f"{node.label}: evaluating it at import would create {count} elements "
                               f"(shape {list(shape)}; the limit is {MAX_FOLDED_ELEMENTS})")


def axes_of(node: NodeView, axes, rank: int) -> list[int]:
    out = []
    for axis in np.asarray(axes, dtype=np.int64).reshape(-1).tolist():
        a = axis + rank if axis < 0 else axis
        if not 0 <= a < rank:
            raise ShapeError(f"{node.label}: axis {axis} is out of range for rank {rank}")
        out.append(a)
    if len(set(out)) != len(out):
        raise ShapeError(f"{node.label}: repeated axes {list(np.asarray(axes).reshape(-1))}")
    return out


def shape_slice(node: NodeView, shape: tuple[int, ...]) -> np.ndarray:
    """Shape's output: the dims from `start` to `end` (clamped, negatives from the back)."""
    rank = len(shape)
    start, end = node.attr("start", 0), node.attr("end", rank)
    start, end = (min(max(v + rank if v < 0 else v, 0), rank) for v in (start, end))
    return np.array(shape[start:end], dtype=np.int64)


def _integer_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.any(b == 0):
        raise ConvgenError("integer division by zero in import-time shape arithmetic")
    return (np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(np.result_type(a, b))  # truncates


BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}


@folder("Add", "Sub", "Mul", "Div")
def _binary(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    a, b = arrays
    if node.op_type == "Div":
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            return [_integer_divide(a, b)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.divide(a, b).astype(np.result_type(a, b))]
    return [BINARY[node.op_type](a, b).astype(np.result_type(a, b))]


LOGIC = {"Greater": np.greater, "Less": np.less, "Equal": np.equal, "GreaterOrEqual": np.greater_equal,
         "LessOrEqual": np.less_equal, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}


@folder(*LOGIC, "Not", "Where")
def _logic(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    """Comparisons, logic and Where on values known at import (masks, shape arithmetic)."""
    if node.op_type == "Not":
        return [np.logical_not(arrays[0])]
    if node.op_type == "Where":
        return [np.where(arrays[0].astype(bool), arrays[1], arrays[2])]
    return [LOGIC[node.op_type](*arrays)]


@folder("Sum")
def _sum(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    total = arrays[0]
    for a in arrays[1:]:
        total = total + a
    return [np.asarray(total)]


@folder("Identity", "Dropout")
def _identity(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    if len(node.output_names) > 1 and node.output_names[1]:
        return [arrays[0], np.ones(arrays[0].shape, dtype=bool)]
    return [arrays[0]]


@folder("Gather")
def _gather(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    data, indices = arrays
    axis = axes_of(node, [node.attr("axis", 0)], data.ndim)[0]
    size = data.shape[axis]
    if np.any((indices < -size) | (indices >= size)):
        raise ShapeError(f"{node.label}: indices {indices.tolist()} out of range for axis {axis} of size {size}")
    return [np.take(data, np.where(indices < 0, indices + size, indices), axis=axis)]


@folder("Unsqueeze")
def _unsqueeze(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    data, axes = arrays[0], arrays[1] if len(arrays) > 1 and arrays[1] is not None else node.attr("axes")
    if axes is None:
        raise ConvgenError(f"{node.label}: no axes")
    rank = data.ndim + len(np.asarray(axes).reshape(-1))
    shape = list(data.shape)
    for axis in sorted(axes_of(node, axes, rank)):
        shape.insert(axis, 1)
    return [data.reshape(shape)]


@folder("Squeeze")
def _squeeze(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    data = arrays[0]
    axes = arrays[1] if len(arrays) > 1 and arrays[1] is not None else node.attr("axes")
    if axes is None:
        return [data.reshape([d for d in data.shape if d != 1])]
    axes = axes_of(node, axes, data.ndim)
    if any(data.shape[a] != 1 for a in axes):
        raise ShapeError(f"{node.label}: cannot squeeze axes {axes} of shape {data.shape}: sizes must be 1")
    return [data.reshape([d for i, d in enumerate(data.shape) if i not in axes])]


@folder("Concat")
def _concat(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    axis = node.attr("axis")
    if axis is None:
        raise ConvgenError(f"{node.label}: Concat needs an axis")
    return [np.concatenate(arrays, axis=axes_of(node, [axis], arrays[0].ndim)[0])]


@folder("ConstantOfShape")
def _constant_of_shape(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    shape = [int(d) for d in arrays[0].reshape(-1)]
    if any(d < 0 for d in shape):
        raise ShapeError(f"{node.label}: negative dimension in shape {shape}")
    check_folded_size(node, shape)
    value = node.attr("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return [np.full(shape, fill[0], dtype=fill.dtype)]


@folder("Range")
def _range(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    start, limit, delta = (a.reshape(()) for a in arrays)
    if delta == 0:
        raise ConvgenError(f"{node.label}: delta is 0")
    count = max(int(np.ceil((limit - start) / delta)), 0)
    check_folded_size(node, [count])
    return [(start + np.arange(count) * delta).astype(start.dtype)]


@folder("Slice")
def _slice(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    data = arrays[0]
    starts, ends = (np.asarray(a, np.int64).reshape(-1) for a in arrays[1:3])
    axes = arrays[3] if len(arrays) > 3 and arrays[3] is not None else np.arange(len(starts))
    steps = arrays[4] if len(arrays) > 4 and arrays[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes_of(node, axes, data.ndim), starts, ends, np.reshape(steps, -1)):
        if step == 0:
            raise ShapeError(f"{node.label}: step 0 on axis {axis}")
        index[axis] = slice_bounds(int(start), int(end), int(step), data.shape[axis])
    return [data[tuple(index)]]


def slice_bounds(start: int, end: int, step: int, size: int) -> slice:
    """ONNX Slice clamping of (start, end) for one axis, as a Python slice."""
    start, end = (v + size if v < 0 else v for v in (start, end))
    if step > 0:
        return slice(min(max(start, 0), size), min(max(end, 0), size), step)
    start, end = min(max(start, -1), size - 1), min(max(end, -1), size - 1)
    return slice(start, None if end < 0 else end, step)


@folder("Reshape")
def _reshape(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    data, shape = arrays
    target = [int(d) for d in shape.reshape(-1)]
    return [data.reshape(shapes.reshape_shape(node.label, data.shape, target, bool(node.attr("allowzero", 0))))]


@folder("Transpose")
def _transpose(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    perm = node.attr("perm")
    return [np.transpose(arrays[0], perm)]


@folder("Flatten")
def _flatten(node: NodeView, arrays: Arrays) -> list[np.ndarray]:
    data = arrays[0]
    axis = node.attr("axis", 1)
    axis = axis + data.ndim if axis < 0 else axis
    if not 0 <= axis <= data.ndim:
        raise ShapeError(f"{node.label}: axis {node.attr('axis')} is out of range for rank {data.ndim}")
    return [data.reshape(int(np.prod(data.shape[:axis])), -1)]

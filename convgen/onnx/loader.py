"""Reading an ONNX model: bytes or file -> a checked ModelProto at one opset, nodes in topological order.

Models at opsets 1-12 are raised to opset 13 with onnx's version converter, so the converters
see one form of every op (Clip/Pad/Slice/Squeeze take inputs, not attributes; Softmax works on
one axis).  Newer opsets (13 up to what the installed onnx knows) are read as they are: for the
ops convgen imports, later versions only added element types.
"""
from __future__ import annotations

import math
import os
from collections import deque
from typing import Any

from ..errors import ConvgenError, ModelFormatError, UnsupportedError

MIN_OPSET, CANONICAL_OPSET = 1, 13


def onnx_module():
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is in the test and onnx extras
        raise UnsupportedError("convgen.from_onnx needs the onnx package: pip install 'convgen[onnx]'") from None
    return onnx


def load_model(model: Any):
    """A path, bytes or ModelProto -> ModelProto (external data loaded for paths)."""
    onnx = onnx_module()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return _parse(onnx, bytes(model), "the given bytes")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"from_onnx: no ONNX file at {path!r}")
        try:
            return onnx.load(path)
        except Exception as error:  # protobuf's DecodeError, or external data that cannot be read
            raise ConvgenError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    raise TypeError(f"from_onnx takes a path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def _parse(onnx, data: bytes, where: str):
    try:
        return onnx.load_from_string(data)
    except Exception as error:
        raise ConvgenError(f"{where}: not a readable ONNX model ({type(error).__name__}: {error})") from None


def check_text(model) -> None:
    """Every name must be text: protobuf hands strings with invalid UTF-8 over as bytes."""
    graph = model.graph
    names = [graph.name] + [o.domain for o in model.opset_import]
    names += [v.name for v in list(graph.input) + list(graph.output) + list(graph.initializer)]
    for node in graph.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ConvgenError(f"the model has names that are not valid UTF-8 text: {bad[:5]}")


def default_opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ConvgenError("the model imports no version of the default ONNX operator set (opset_import)")
    return int(versions[0])


def at_supported_opset(model) -> tuple[Any, dict[str, Any]]:
    """The model at opset >= 13 (older ones converted with onnx's version converter), and the initializers
    that stayed out of the conversion by name: in the returned model those are data-less stand-ins."""
    onnx = onnx_module()
    check_text(model)
    opset = default_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if opset < MIN_OPSET or opset > newest:
        raise UnsupportedError(f"the model uses opset {opset}; convgen imports opsets {MIN_OPSET} to {newest}")
    if opset >= CANONICAL_OPSET:
        return model, {}
    from onnx import version_converter
    skeleton, weights = _without_weights(onnx, model)
    try:
        converted = version_converter.convert_version(skeleton, CANONICAL_OPSET)
    except Exception as error:
        op_types = sorted({n.op_type for n in model.graph.node})
        raise UnsupportedError(f"onnx's version converter could not raise the model from opset {opset} "
                               f"to {CANONICAL_OPSET} (its op types: {', '.join(op_types)}): {error}") from None
    if opset < 11:
        _keep_opset10_resizing(onnx, converted)
    return converted, weights


# Initializers of more elements than this stay out of onnx's version converter, which never reads weights yet
# serializes and parses the whole model (VGG-19's 548 MB: 46 s; without them 0.2 s).  Shape and axes
# tensors, which adapters may read, are far smaller.
DETACHED_ELEMENTS = 1024


def _without_weights(onnx, model) -> tuple[Any, dict[str, Any]]:
    """A copy of `model` whose large top-level initializers are stand-ins without data (dims and type
    kept), built field by field so the weights are never copied; and those initializers by name."""
    skeleton = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(skeleton, field, value)
    weights = {}
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(skeleton.graph, field, value)
            continue
        for tensor in value:
            if math.prod(tensor.dims) <= DETACHED_ELEMENTS:   # (reading raw_data would copy it)
                skeleton.graph.initializer.add().CopyFrom(tensor)
                continue
            weights[tensor.name] = tensor
            skeleton.graph.initializer.add(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type)
    return skeleton, weights


def _copy_field(message, field, value) -> None:
    if field.is_repeated:
        getattr(message, field.name).extend(value)
    elif field.type == field.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


OPSET10_NEAREST = "convgen_opset10"
"""The nearest_mode of a Resize raised from Upsample or Resize-10: floor, ceil where the axis shrinks."""


def _keep_opset10_resizing(onnx, model) -> None:
    """The converter turns Upsample and Resize-10 into Resize-13 without coordinate_transformation_mode, which
    then defaults to half_pixel; they resized with asymmetric coordinates and onnxruntime's opset-10
    rounding (floor, ceil when downsampling).  Say so on the node."""
    for node in model.graph.node:
        if node.op_type == "Resize" and not any(a.name == "coordinate_transformation_mode" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
            node.attribute.append(onnx.helper.make_attribute("nearest_mode", OPSET10_NEAREST))


def topological_order(graph, defined: set[str]) -> list:
    """The graph's nodes, each after the nodes it reads from; a clear error for cycles and dangling reads."""
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if not out:
                continue
            if out in producer or out in defined:
                raise ConvgenError(f"value {out!r} is defined twice (by node {_label(node)})")
            producer[out] = i
    waiting = [0] * len(graph.node)
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in {v for v in node.input if v}:
            if name in producer:
                waiting[i] += 1
                readers.setdefault(producer[name], []).append(i)
            elif name not in defined:
                raise ConvgenError(f"node {_label(node)} reads {name!r}, which no node, initializer or graph "
                                   "input defines (a missing initializer?)")
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(graph.node[i])
        for j in readers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) != len(graph.node):
        stuck = [_label(n) for i, n in enumerate(graph.node) if waiting[i] > 0]
        raise ConvgenError(f"the graph has a cycle through nodes {stuck}")
    return order


def _label(node) -> str:
    return f"{node.name or '(unnamed)'!r} ({node.op_type})"


def _count(names) -> int:
    """Positions a node fills: trailing empty names are optional inputs or outputs left out."""
    names = list(names)
    while names and not names[-1]:
        names.pop()
    return len(names)


def _bounds(low: int, high: int) -> str:
    if high >= 2**31 - 1:
        return f"at least {low}"
    return f"{low}" if low == high else f"{low} to {high}"


def check_arity(graph, opset: int) -> None:
    """Every node has as many inputs and outputs as its op's schema at the model's opset allows: a Conv
    with four inputs or a Relu with two outputs is a malformed model, not one whose extra names are
    silently dropped (onnxruntime rejects it too)."""
    onnx = onnx_module()
    for i, node in enumerate(graph.node):
        domain = "" if node.domain == "ai.onnx" else node.domain
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, domain)
        except onnx.defs.SchemaError:
            continue  # an op onnx does not define: check_supported names it
        for what, count, low, high in (("inputs", _count(node.input), schema.min_input, schema.max_input),
                                       ("outputs", _count(node.output), schema.min_output, schema.max_output)):
            if not low <= count <= high:
                raise ModelFormatError(f"node {_label(node)} (#{i}) has {count} {what}; {node.op_type} at opset "
                                       f"{opset} takes {_bounds(low, high)}")

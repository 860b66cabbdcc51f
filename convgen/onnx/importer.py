"""ONNX GraphProto -> convgen Graph: node by node, folding what is known at import."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .. import dtypes, ops
from ..errors import ConvgenError, ModelFormatError, ShapeError, UnsupportedError
from ..ir import Graph
from ..trace import Tensor
from . import adaptive_fold
from .attributes import element_type, node_attributes, to_array
from .context import Context, NodeView, c_name, file_name
from .converters import CONVERTERS
from .folding import FOLDERS
from .loader import at_supported_opset, check_arity, default_opset, load_model, topological_order


def supported_op_types() -> frozenset[str]:
    return frozenset(CONVERTERS) | frozenset(FOLDERS)


def from_onnx(model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """An ONNX model (a path, bytes or onnx.ModelProto) as a convgen Graph.

    Initializers become compile-time constants; graph inputs that are not initializers stay run-time
    inputs (weights included, as in ONNX's node tests).  Inputs and outputs keep the file's names
    (`/conv1/Conv_output_0`, `input.1`, ...): the compiled model takes model(**{name: array}) as
    onnxruntime's feeds do; the C code gets sanitized identifiers (the saved header lists both).  `input_shapes` fixes symbolic dimensions.
    Opsets 7 to 12 are raised to 13.  Raises UnsupportedError listing every op type convgen does not
    import (with its nodes), ModelFormatError / ConvgenError / ShapeError for a malformed model,
    naming the node or tensor.  Needs the onnx package (pip install "convgen[onnx]").

    >>> from onnx import TensorProto, helper
    >>> pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    >>> onnx_graph = helper.make_graph(
    ...     [pool], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    >>> g = convgen.from_onnx(helper.make_model(onnx_graph), input_shapes={"x": (2, 3, 8, 8)})
    >>> g.output_types[0].shape
    (2, 3, 4, 4)
    >>> convgen.compile(g)(np.ones((2, 3, 8, 8), np.float32)).shape
    (2, 3, 4, 4)
    >>> g = convgen.from_onnx("model.onnx")                 # doctest: +SKIP
    """
    proto, weights = at_supported_opset(load_model(model))
    graph = proto.graph
    check_supported(graph)
    check_arity(graph, default_opset(proto))
    ctx = Context()
    _read_initializers(ctx, graph, weights)
    _read_inputs(ctx, graph, dict(input_shapes or {}))
    order = topological_order(graph, set(ctx.values))
    readers: dict[str, list] = {}
    for node in order:
        for name in set(node.input):
            readers.setdefault(name, []).append(node)
    folded: set[int] = set()   # ids of the nodes of patterns converted as one (adaptive_fold)
    for position, node in enumerate(order):
        if id(node) in folded:
            continue
        pattern = adaptive_fold.fold(ctx, graph, order, position, readers, default_opset(proto))
        if pattern is not None:
            folded.update(id(n) for n in pattern)
            continue
        _convert(ctx, node)
    return _finish(ctx, graph)


def check_supported(graph) -> None:
    """One error listing every op type convgen cannot import, with the nodes that use it."""
    known = supported_op_types()
    missing: dict[str, list[str]] = {}
    for i, node in enumerate(graph.node):
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op not in known:
            missing.setdefault(op, []).append(node.name or f"#{i}")
    if missing:
        listing = "; ".join(f"{op}: {names}" for op, names in sorted(missing.items()))
        raise UnsupportedError(f"the model uses ops convgen does not import: {listing}")


def _read_initializers(ctx: Context, graph, weights: Mapping) -> None:
    """Every initializer's array; `weights`: those the opset conversion left out (their stand-ins are in `graph`)."""
    for tensor in graph.initializer:
        tensor = weights.get(tensor.name, tensor)
        if tensor.name in ctx.values:
            raise ConvgenError(f"initializer {tensor.name!r} is defined twice")
        ctx.values[tensor.name] = to_array(tensor, f"initializer {tensor.name!r}")
    for sparse in graph.sparse_initializer:
        raise UnsupportedError(f"sparse initializer {sparse.values.name!r} is not supported")


def _input_shape(value_info, override) -> tuple[int, ...]:
    name = value_info.name
    if override is not None:
        return tuple(int(d) for d in override)
    if not value_info.type.HasField("tensor_type") or not value_info.type.tensor_type.HasField("shape"):
        raise ShapeError(f"graph input {name!r} has no tensor shape; give it with input_shapes={{{name!r}: ...}}")
    dims = []
    for axis, dim in enumerate(value_info.type.tensor_type.shape.dim):
        if not dim.HasField("dim_value"):
            raise ShapeError(f"graph input {name!r}: axis {axis} is symbolic ({dim.dim_param or '?'}); convgen "
                             f"compiles static shapes: give them with input_shapes={{{name!r}: (...)}}")
        dims.append(int(dim.dim_value))
    return tuple(dims)


def _read_inputs(ctx: Context, graph, overrides: dict) -> None:
    names = {i.name for i in graph.input}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConvgenError(f"input_shapes names {unknown}, which are not graph inputs {sorted(names)}")
    seen: set[str] = set()
    for value_info in graph.input:
        if value_info.name in seen:
            raise ConvgenError(f"graph input {value_info.name!r} is listed twice")
        seen.add(value_info.name)
        if value_info.name in ctx.values:
            continue  # an initializer listed as an input (IR < 4): a constant with a default
        where = f"graph input {value_info.name!r}"
        dtype = element_type(value_info.type.tensor_type.elem_type, where)
        shape = _input_shape(value_info, overrides.get(value_info.name))
        if not shape:
            raise ShapeError(f"{where} is a scalar; convgen's run-time inputs have rank >= 1")
        ctx.values[value_info.name] = ctx.tracer.input(shape, file_name(value_info.name), dtype)



def _view(ctx: Context, node) -> NodeView:
    name = c_name(node.name or node.op_type.lower())
    return NodeView(ctx, node.op_type, name, node_attributes(node), list(node.input), list(node.output))


def _convert(ctx: Context, node) -> None:
    view = _view(ctx, node)
    try:
        _convert_node(ctx, node, view)
    except (AttributeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as error:
        # a node the converter's checks did not foresee (a required input left empty, an attribute
        # of another type): a clear error naming it, not an internal one
        raise ModelFormatError(f"{view.label}: malformed node ({type(error).__name__}: {error})") from error


def _convert_node(ctx: Context, node, view: NodeView) -> None:
    present = [ctx.value(v) for v in node.input if v]
    foldable = node.op_type in FOLDERS and all(not isinstance(v, Tensor) for v in present)
    if foldable:
        outputs = _guarded(view, FOLDERS[node.op_type], view, [ctx.value(v) if v else None for v in node.input])
    elif node.op_type in CONVERTERS:
        outputs = _guarded(view, CONVERTERS[node.op_type], view)
    else:
        raise view.unsupported("convgen evaluates this op only at import time, when every input is known; "
                               f"here {[v for v in node.input if isinstance(ctx.values.get(v), Tensor)]} "
                               "are computed at run time")
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    if view.computed_from is not None:  # computed in float32 from another type: the type ONNX gives it
        outputs = [_cast_back(view, v, j) for j, v in enumerate(outputs)]
    for name, value in zip(node.output, outputs):
        if name and value is not None:
            ctx.values[name] = value if isinstance(value, Tensor) else np.asarray(value)


def _cast_back(view: NodeView, value, j: int):
    if not isinstance(value, Tensor) or value.type.dtype != "float32":
        return value
    return view.ctx.tracer.emit(f"{view.name}_out{j}_{view.computed_from}", "cast", ops.CastAttrs(view.computed_from),
                                [value], kind="Cast")


def _guarded(view: NodeView, fn, *args):
    """A node whose attributes or inputs have the wrong type or size raises an error naming it."""
    try:
        return fn(*args)
    except ConvgenError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as error:
        raise ConvgenError(f"{view.label}: malformed node ({type(error).__name__}: {error})") from error


def _declared(ctx: Context, value_info, value: Tensor) -> Tensor:
    """A graph output in the element type the model declares for it (none declared: as computed)."""
    declared = value_info.type.tensor_type.elem_type if value_info.type.HasField("tensor_type") else 0
    if not declared:
        return value
    dtype = element_type(declared, f"graph output {value_info.name!r}")
    if dtype == value.type.dtype:
        return value
    return ctx.tracer.emit(c_name(f"{value_info.name}_as_{dtype}"), "cast", ops.CastAttrs(dtype), [value], kind="Cast")


def _constant_output(ctx: Context, value_info, value: np.ndarray) -> str:
    """A graph output known at import (a shape, Dropout's all-true mask): a float32 graph constant, cast to
    its element type where that is another and float32 holds its values exactly."""
    dtype = dtypes.name_of(value.dtype)
    if value.size == 0:
        raise UnsupportedError(f"graph output {value_info.name!r} is empty (shape {list(value.shape)}); convgen's "
                               "tensors have no empty axes")
    exact = dtype is not None and value.ndim > 0 and np.array_equal(value.astype(np.float32).astype(value.dtype), value)
    if not exact:
        kind = "scalar" if value.ndim == 0 else "tensor"
        raise UnsupportedError(f"graph output {value_info.name!r} is a {value.dtype} {kind} known at import; "
                               "convgen's outputs known at import are tensors of its element types that float32 "
                               "holds exactly")
    name = ctx.constant(value_info.name, value)
    if dtype == "float32":
        return name
    return ctx.tracer.emit(c_name(f"{value_info.name}_as_{dtype}"), "cast", ops.CastAttrs(dtype), [name], kind="Cast").value


def _finish(ctx: Context, graph) -> Graph:
    tracer = ctx.tracer
    outputs = []
    names = [file_name(v.name) for v in graph.output]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ModelFormatError(f"graph outputs {repeated} are listed twice")
    for value_info in graph.output:
        if value_info.name not in ctx.values:
            raise ConvgenError(f"graph output {value_info.name!r} is not computed by any node")
        value = ctx.values[value_info.name]
        if isinstance(value, Tensor):
            outputs.append(_declared(ctx, value_info, value).value)
            continue
        outputs.append(_constant_output(ctx, value_info, value))
    if not outputs:
        raise ConvgenError("the ONNX graph has no outputs")
    used = {v for n in tracer.nodes for v in n.inputs} | set(outputs)
    constants = {k: v for k, v in tracer.constants.items() if k in used}
    return Graph(name=c_name(graph.name or "onnx_model"), inputs=tuple(tracer.inputs), nodes=tuple(tracer.nodes),
                 outputs=tuple(outputs), constants=constants,
                 output_names=tuple(names))


"""Converters of data movement on run-time values: Slice, Split, Gather and GatherND (constant indices), Expand, Tile,
DepthToSpace, SpaceToDepth: each a slice or an expand (convgen/ops/movement.py), with reshapes and
transposes around it; Resize / Upsample (nearest, linear, cubic, antialiased): whole-factor nearest the same way, the
rest resample layers (convgen/ops/resample.py)."""
from __future__ import annotations

import math

import numpy as np

from .. import ops, shapes
from ..ops import resample
from ..errors import ShapeError
from ..trace import Tensor
from .context import NodeView
from .converters import COMPILE_TIME_INPUTS, converter, data
from .folding import axes_of

COMPILE_TIME_INPUTS.update({"Where": (0,), "GatherND": (1,), "Split": (1,), "Expand": (1,), "Tile": (1,), "Resize": (1, 2, 3), "Upsample": (1,)})


def _slice(node: NodeView, x: Tensor, ranges: dict[int, tuple[int, int, int]], suffix: str = "") -> Tensor:
    """x sliced on the axes in `ranges` (axis -> (first, step, count)), whole on the others."""
    if all(ranges.get(a, (0, 1, d)) == (0, 1, d) for a, d in enumerate(x.shape)):
        return x
    first, steps, counts = zip(*(ranges.get(a, (0, 1, d)) for a, d in enumerate(x.shape)))
    return node.emit("slice", ops.SliceAttrs(first, steps, counts), [x], suffix=suffix)


def _reshape(node: NodeView, x: Tensor, shape, suffix: str) -> Tensor:
    return x if tuple(shape) == x.shape else node.emit("reshape", ops.ReshapeAttrs(tuple(shape)), [x], suffix=suffix)


def _expand(node: NodeView, x: Tensor, shape, suffix: str = "") -> Tensor:
    return x if tuple(shape) == x.shape else node.emit("expand", ops.ExpandAttrs(tuple(shape)), [x], suffix=suffix)


@converter("Slice")
def _slice_node(node: NodeView) -> list:
    x = data(node)
    starts, ends = (node.const(i, what).reshape(-1).astype(np.int64) for i, what in ((1, "starts"), (2, "ends")))
    given_axes = node.optional_const(3, "axes")
    axes = axes_of(node, given_axes, x.ndim) if given_axes is not None else list(range(len(starts)))
    steps = node.optional_const(4, "steps")
    steps = np.ones(len(starts), np.int64) if steps is None else steps.reshape(-1)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(f"{node.label}: starts, ends, axes and steps of lengths {len(starts)}, {len(ends)}, "
                         f"{len(axes)}, {len(steps)}")
    ranges = {}
    for axis, start, end, step in zip(axes, starts.tolist(), ends.tolist(), steps.tolist()):
        first, count = shapes.slice_axis(max(min(start, 2 ** 62), -2 ** 62), max(min(end, 2 ** 62), -2 ** 62),
                                         int(step), x.shape[axis])
        ranges[axis] = (first, int(step), count)
    return [_slice(node, x, ranges)]


@converter("Split")
def _split(node: NodeView) -> list:
    x = data(node)
    axis = axes_of(node, [node.attr("axis", 0)], x.ndim)[0]
    size, outputs = x.shape[axis], len(node.output_names)
    given = node.optional_const(1, "split")
    sizes = given.reshape(-1).tolist() if given is not None else node.attr("split")
    if sizes is None:
        parts = int(node.attr("num_outputs", outputs))
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
    if len(sizes) != outputs or sum(sizes) != size or min(sizes) < 1:
        raise ShapeError(f"{node.label}: split sizes {list(sizes)} for {outputs} outputs of an axis of size {size}")
    starts = np.cumsum([0] + list(sizes[:-1])).tolist()
    return [_slice(node, x, {axis: (int(s), 1, int(n))}, suffix=f"_{j}") for j, (s, n) in enumerate(zip(starts, sizes))]


@converter("Gather")
def _gather(node: NodeView) -> list:
    """Constant indices: one strided slice when they step evenly, else a concatenation of slices."""
    x = data(node)
    indices = node.const(1, "indices").astype(np.int64)
    axis = axes_of(node, [node.attr("axis", 0)], x.ndim)[0]
    size = x.shape[axis]
    if indices.size == 0 or np.any((indices < -size) | (indices >= size)):
        raise ShapeError(f"{node.label}: indices {indices.tolist()} out of range (or empty) for axis {axis} of size {size}")
    flat = np.where(indices < 0, indices + size, indices).reshape(-1).tolist()
    even = shapes.strided_sources(size, flat) if len(set(flat)) == len(flat) else None
    if even is not None:
        gathered = _slice(node, x, {axis: (even[0], even[1], len(flat))})
    else:
        pieces = [_slice(node, x, {axis: (i, 1, 1)}, suffix=f"_{j}") for j, i in enumerate(flat)]
        gathered = node.emit("concat", ops.ConcatAttrs(axis), pieces)
    return [_reshape(node, gathered, x.shape[:axis] + indices.shape + x.shape[axis + 1:], "_shape")]


@converter("GatherND")
def _gather_nd(node: NodeView) -> list:
    """Constant indices (batch_dims 0) into the leading k axes: one gather of rows of the input viewed as
    (d0 * ... * dk-1, rest) (torch's dynamo exporter writes adaptive pooling with uneven bins so)."""
    x = data(node)
    indices = node.const(1, "indices").astype(np.int64)
    if node.attr("batch_dims", 0):
        raise node.unsupported(f"batch_dims={node.attr('batch_dims')} (convgen takes 0)")
    k = indices.shape[-1] if indices.ndim else 0
    if indices.ndim < 1 or not 1 <= k <= x.ndim or indices.size == 0:
        raise ShapeError(f"{node.label}: indices of shape {list(indices.shape)} for data of shape {list(x.shape)}")
    leading = np.array(x.shape[:k])
    if np.any((indices < -leading) | (indices >= leading)):
        raise ShapeError(f"{node.label}: indices out of range for the leading axes {list(x.shape[:k])}")
    flat = np.ravel_multi_index(tuple(np.where(indices < 0, indices + leading, indices).reshape(-1, k).T), x.shape[:k])
    rows = _reshape(node, x, (int(np.prod(leading)),) + x.shape[k:], "_rows")
    picked = node.emit("resample", resample.nearest_plan(0, flat.tolist()), [rows], suffix="_gather")
    return [_reshape(node, picked, indices.shape[:-1] + x.shape[k:], "_shape")]


@converter("Expand")
def _expand_node(node: NodeView) -> list:
    x = data(node)
    shape = shapes.broadcast_shape(node.label, x.shape, [int(d) for d in node.const(1, "shape").reshape(-1)])
    return [_expand(node, _reshape(node, x, (1,) * (len(shape) - x.ndim) + x.shape, "_rank"), shape)]


@converter("Tile")
def _tile(node: NodeView) -> list:
    """(d0, d1, ...) tiled (r0, r1, ...): (1, d0, 1, d1, ...) expanded to (r0, d0, r1, d1, ...), reshaped."""
    x = data(node)
    repeats = [int(r) for r in node.const(1, "repeats").reshape(-1)]
    if len(repeats) != x.ndim or min(repeats) < 1:
        raise ShapeError(f"{node.label}: repeats {repeats} for an input of rank {x.ndim} (one positive count per axis)")
    interleaved = _reshape(node, x, [v for d in x.shape for v in (1, d)], "_split")
    tiled = _expand(node, interleaved, [v for d, r in zip(x.shape, repeats) for v in (r, d)])
    return [_reshape(node, tiled, [d * r for d, r in zip(x.shape, repeats)], "_merge")]


def _permute(node: NodeView, x: Tensor, split_shape, perm, out_shape) -> Tensor:
    y = _reshape(node, x, split_shape, "_split")
    y = node.emit("transpose", ops.TransposeAttrs(tuple(perm)), [y], suffix="_move")
    return _reshape(node, y, out_shape, "_merge")


@converter("DepthToSpace")
def _depth_to_space(node: NodeView) -> list:
    x = data(node)
    b = int(node.attr("blocksize"))
    if x.ndim != 4 or b < 1 or x.shape[1] % (b * b):
        raise ShapeError(f"{node.label}: blocksize {b} for input {list(x.shape)}: a 4-D input with channels "
                         "divisible by blocksize^2")
    n, c, h, w = x.shape
    out = (n, c // (b * b), h * b, w * b)
    if node.attr("mode", "DCR") == "CRD":
        return [_permute(node, x, (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3), out)]
    return [_permute(node, x, (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2), out)]


@converter("SpaceToDepth")
def _space_to_depth(node: NodeView) -> list:
    x = data(node)
    b = int(node.attr("blocksize"))
    if x.ndim != 4 or b < 1 or x.shape[2] % b or x.shape[3] % b:
        raise ShapeError(f"{node.label}: blocksize {b} for input {list(x.shape)}: a 4-D input with height and "
                         "width divisible by it")
    n, c, h, w = x.shape
    perm = (0, 1, 3, 5, 2, 4) if node.attr("mode", "DCR") == "CRD" else (0, 3, 5, 1, 2, 4)
    return [_permute(node, x, (n, c, h // b, b, w // b, b), perm, (n, c * b * b, h // b, w // b))]


def _scaled(size: int, scale: float) -> int:
    """An axis's output size from its scale, as onnxruntime computes it: the product in float32, truncated."""
    return int(math.floor(np.float32(size) * np.float32(scale)))


def _resize_sizes(node: NodeView, x: Tensor) -> tuple[list[int], list[float]]:
    """The output size and scale of every axis, from `scales` or `sizes` (Upsample: scales)."""
    if node.op_type == "Upsample":
        scales = node.attr("scales")
        scales = node.const(1, "scales").reshape(-1).tolist() if scales is None else scales
        return [_scaled(d, s) for d, s in zip(x.shape, scales)], [float(s) for s in scales]
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise ShapeError(f"{node.label}: keep_aspect_ratio_policy {policy!r}")
    axes = node.attr("axes")
    axes = list(range(x.ndim)) if axes is None else axes_of(node, axes, x.ndim)
    scales, sizes = node.optional_const(2, "scales"), node.optional_const(3, "sizes")
    out, factor = list(x.shape), [1.0] * x.ndim
    if sizes is not None and sizes.size:
        sizes = sizes.reshape(-1).tolist()
        if policy != "stretch":   # one scale for the axes given, the output sizes rounded half up from it
            ratios = [np.float32(s) / np.float32(x.shape[a]) for a, s in zip(axes, sizes)]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out[a], factor[a] = int(np.float32(scale) * np.float32(x.shape[a]) + np.float32(0.5)), float(scale)
            return out, factor
        for a, s in zip(axes, sizes):
            out[a], factor[a] = int(s), float(np.float32(s) / np.float32(x.shape[a]))
    elif scales is not None and scales.size:
        for a, s in zip(axes, scales.reshape(-1).tolist()):
            out[a], factor[a] = _scaled(x.shape[a], s), float(s)
    else:
        raise ShapeError(f"{node.label}: neither scales nor sizes is given")
    return out, factor


def _whole_factors(node: NodeView, x: Tensor, sources: list[list[int]]) -> Tensor | None:
    """Nearest resizing whose sources are whole-factor repeats or an even stride on every axis: a slice
    and an expand (no table); None otherwise."""
    repeats, ranges = [], {}
    for axis, (d, picked) in enumerate(zip(x.shape, sources)):
        o = len(picked)
        k = shapes.nearest_repeat_factor(d, o, picked)
        strided = shapes.strided_sources(d, picked) if o <= d else None
        if k is not None:
            repeats.append(k)
        elif strided is not None:
            repeats.append(1)
            ranges[axis] = (strided[0], strided[1], o)
        else:
            return None
    y = _slice(node, x, ranges, suffix="_pick")
    if any(k > 1 for k in repeats):
        interleaved = _reshape(node, y, [v for d in y.shape for v in (d, 1)], "_split")
        y = _expand(node, interleaved, [v for d, k in zip(y.shape, repeats) for v in (d, k)])
        y = _reshape(node, y, [d * k for d, k in zip(interleaved.shape[::2], repeats)], "_merge")
    return y


def _interpolation_taps(node: NodeView, mode: str):
    """The tap table of one axis for modes linear and cubic, antialiased (opset 18) or not: a function of
    (in size, out size, scale, coordinate mode, roi)."""
    a, outside = node.attr("cubic_coeff_a", -0.75), bool(node.attr("exclude_outside", 0))
    if _antialiased(node):
        return lambda d, o, s, c, r: shapes.antialias_taps(d, o, s, c, mode, a, outside, r)
    if mode == "cubic":
        return lambda d, o, s, c, r: shapes.cubic_taps(d, o, s, c, a, outside, r)
    return shapes.linear_taps


def _antialiased(node: NodeView) -> bool:
    return node.op_type == "Resize" and bool(node.attr("antialias", 0)) and node.attr("mode", "nearest") != "nearest"


def _regions(node: NodeView, x: Tensor, coordinates: str) -> list[shapes.Roi]:
    """tf_crop_and_resize's roi per axis (starts then ends, over `axes` when given); (0, 1) otherwise."""
    regions = [(0.0, 1.0)] * x.ndim
    roi = node.optional_const(1, "roi") if coordinates == "tf_crop_and_resize" else None
    if roi is None or not roi.size:
        if coordinates == "tf_crop_and_resize":
            raise ShapeError(f"{node.label}: coordinate_transformation_mode tf_crop_and_resize needs roi")
        return regions
    axes = node.attr("axes")
    axes = list(range(x.ndim)) if axes is None else axes_of(node, axes, x.ndim)
    roi = roi.reshape(-1).astype(np.float32).tolist()
    if len(roi) != 2 * len(axes):
        raise ShapeError(f"{node.label}: roi has {len(roi)} values for {len(axes)} axes (starts, then ends)")
    for k, a in enumerate(axes):
        regions[a] = (roi[k], roi[len(axes) + k])
    return regions


@converter("Resize", "Upsample")
def _resize(node: NodeView) -> list:
    """Nearest (every coordinate mode and nearest_mode), linear and cubic (any axes, one at a time; also
    antialiased, and cubic's coefficient and exclude_outside) resizing in
    onnxruntime's float32 coordinate arithmetic: whole-factor nearest repeats and strides are a slice
    and an expand, the rest one resample layer per changed axis (convgen/ops/resample.py)."""
    x = data(node)
    mode = node.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise node.unsupported(f"mode {mode!r}: convgen resizes with modes nearest, linear and cubic")
    if mode != "nearest" and node.computed_from not in (None, "float16", "bfloat16", "float64"):
        raise node.unsupported(f"linear resizing of {node.computed_from} values (convgen interpolates floats)")
    out, factor = _resize_sizes(node, x)
    if min(out) < 1:
        raise ShapeError(f"{node.label}: output shape {out} from input {list(x.shape)}")
    opset10 = node.op_type == "Upsample"
    coordinates = "asymmetric" if opset10 else node.attr("coordinate_transformation_mode", "half_pixel")
    if coordinates not in shapes.RESIZE_COORDINATES:
        raise node.unsupported(f"coordinate_transformation_mode {coordinates!r} (convgen takes "
                               f"{list(shapes.RESIZE_COORDINATES)})")
    if out == list(x.shape):   # onnxruntime copies when no axis changes size, whatever the scales
        return [x]
    # an axis of scale 1 is copied whatever the coordinate mode says (onnxruntime: tf_half_pixel_for_nn
    # with nearest_mode ceil would shift it by one)
    kept = [d == o and s == 1.0 for d, o, s in zip(x.shape, out, factor)]
    regions, fill = _regions(node, x, coordinates), node.attr("extrapolation_value", 0.0)
    cropped = coordinates == "tf_crop_and_resize"

    # per axis, the output indices that take extrapolation_value (computed once: the tables test each index)
    outside = [shapes.extrapolated(d, o, s, r) if cropped and not k else set()
               for d, o, s, r, k in zip(x.shape, out, factor, regions, kept)]
    if mode != "nearest":
        taps = _interpolation_taps(node, mode)
        plans = {a: resample.linear_plan(a, [((), ()) if i in outside[a] else t for i, t in
                                             enumerate(taps(d, o, s, coordinates, regions[a]))], fill)
                 for a, (d, o, s) in enumerate(zip(x.shape, out, factor)) if not kept[a]}
    else:
        rounding = "floor" if opset10 else node.attr("nearest_mode", "round_prefer_floor")
        sources = [list(range(d)) if k else
                   [None if i in outside[a] else j
                    for i, j in enumerate(shapes.nearest_sources(d, o, s, coordinates, rounding, regions[a]))]
                   for a, (d, o, s, k) in enumerate(zip(x.shape, out, factor, kept))]
        fast = None if cropped else _whole_factors(node, x, sources)
        if fast is not None:
            return [fast]
        plans = {a: resample.nearest_plan(a, picked, fill) for a, picked in enumerate(sources)}
    emit = lambda attrs, v, suffix: node.emit("resample", attrs, [v], suffix=suffix)  # noqa: E731
    return [resample.resample_axes(x, plans, emit)]


@converter("Where")
def _where(node: NodeView) -> list:
    """A condition known at import that picks one side everywhere: that side, broadcast to the output; else
    the where layer (ops.binary), its condition a comparison's run-time 0/1 or the constant mask as 0/1."""
    condition = node.input(0)
    if isinstance(condition, Tensor):
        condition = node.as_float32(condition, 0, typed=False)   # a bool input or Cast: as 0/1
        return [node.emit("where", ops.BinaryAttrs(), [condition, node.operand(1), node.operand(2)])]
    condition = condition.astype(bool)
    shape = shapes.broadcast_shape(node.label, condition.shape, node.shape_of(1), node.shape_of(2))
    if not (condition.all() or not condition.any()):
        mask = node.ctx.constant(node.input_names[0], condition.astype(np.float32))
        return [node.emit("where", ops.BinaryAttrs(), [mask, node.operand(1), node.operand(2)])]
    side = 1 if condition.all() else 2
    value = node.input(side)
    if not isinstance(value, Tensor):
        return [np.ascontiguousarray(np.broadcast_to(value, shape))]
    x = data(node, side)
    return [_expand(node, _reshape(node, x, (1,) * (len(shape) - x.ndim) + x.shape, "_rank"), shape)]

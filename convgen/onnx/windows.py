"""Window attributes shared by Conv and the pools: strides, dilations, pads and auto_pad."""
from __future__ import annotations

from .. import shapes
from ..errors import ShapeError
from .context import NodeView

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def ints(node: NodeView, key: str, count: int, default: int) -> tuple[int, ...]:
    values = node.attr(key)
    if values is None:
        return (default,) * count
    if len(values) != count:
        raise ShapeError(f"{node.label}: {key} has {len(values)} values, the {count}-D window needs {count}")
    return tuple(int(v) for v in values)


def window(node: NodeView, in_spatial: tuple[int, ...], kernel: tuple[int, ...]):
    """(stride, pads, dilation): pads as (begin, end) per axis, auto_pad resolved exactly as ONNX says
    (SAME_*: output ceil(in / stride), the total pad from the dilated kernel, the odd one at the end
    for SAME_UPPER and at the beginning for SAME_LOWER)."""
    nd = len(kernel)
    stride = ints(node, "strides", nd, 1)
    dilation = ints(node, "dilations", nd, 1)
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in AUTO_PADS:
        raise ShapeError(f"{node.label}: unknown auto_pad {auto_pad!r}; ONNX defines {AUTO_PADS}")
    if auto_pad != "NOTSET":
        pads = shapes.resolve_padding(auto_pad.lower(), in_spatial, kernel, stride, dilation, node.label)
    else:
        flat = ints(node, "pads", 2 * nd, 0)
        pads = shapes.resolve_padding(tuple(zip(flat[:nd], flat[nd:])), in_spatial, kernel, stride, dilation,
                                      node.label)
    return stride, pads, dilation

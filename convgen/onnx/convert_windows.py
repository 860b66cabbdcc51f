"""Converters of the window ops: Conv, ConvTranspose and the pools (auto_pad as the spec says)."""
from __future__ import annotations

from .. import ops, shapes
from ..errors import ShapeError
from ..trace import Tensor
from .context import NodeView
from .converters import converter, data
from .windows import ints, window


# -- convolution and pooling ------------------------------------------------------------

@converter("Conv")
def _conv(node: NodeView) -> list:
    x = data(node)
    w_shape = node.shape_of(1)
    kernel = tuple(w_shape[2:])
    declared = node.attr("kernel_shape")
    if declared is not None and tuple(declared) != kernel:
        raise ShapeError(f"{node.label}: kernel_shape {list(declared)} differs from the weight's {list(kernel)}")
    shapes.check_rank(node.label, x.shape, len(kernel) + 2)
    stride, pads, dilation = window(node, x.shape[2:], kernel)
    attrs = ops.ConvAttrs(kernel, stride, pads, dilation, int(node.attr("group", 1)))
    inputs = [x, node.operand(1)] + ([node.operand(2)] if node.has_input(2) else [])
    return [node.emit("conv", attrs, inputs)]


@converter("ConvTranspose")
def _conv_transpose(node: NodeView) -> list:
    """pads, auto_pad and output_shape resolve to (pads, output_padding) in shapes, as ONNX says."""
    x = data(node)
    kernel = tuple(node.shape_of(1)[2:])
    declared = node.attr("kernel_shape")
    if declared is not None and tuple(declared) != kernel:
        raise ShapeError(f"{node.label}: kernel_shape {list(declared)} differs from the weight's {list(kernel)}")
    nd = len(kernel)
    shapes.check_rank(node.label, x.shape, nd + 2)
    stride, dilation = ints(node, "strides", nd, 1), ints(node, "dilations", nd, 1)
    output_padding = ints(node, "output_padding", nd, 0)
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    output_shape = node.attr("output_shape")
    if output_shape:
        pads, output_padding = shapes.transposed_pads_for_output(
            node.label, x.shape[2:], list(output_shape)[-nd:], kernel, stride, dilation, output_padding, auto_pad)
    elif auto_pad != "NOTSET":
        pads, output_padding = shapes.transposed_auto_pads(node.label, x.shape[2:], kernel, stride, dilation,
                                                           output_padding, auto_pad)
    else:
        flat = ints(node, "pads", 2 * nd, 0)
        pads = tuple(zip(flat[:nd], flat[nd:]))
    attrs = ops.ConvTransposeAttrs(kernel, stride, pads, dilation, output_padding, int(node.attr("group", 1)))
    inputs = [x, node.operand(1)] + ([node.operand(2)] if node.has_input(2) else [])
    return [node.emit("conv_transpose", attrs, inputs)]


def _pool_window(node: NodeView, x: Tensor):
    kernel = node.attr("kernel_shape")
    if not kernel:
        raise ShapeError(f"{node.label}: kernel_shape is required")
    kernel = tuple(int(k) for k in kernel)
    shapes.check_rank(node.label, x.shape, len(kernel) + 2)
    return (kernel,) + window(node, x.shape[2:], kernel)


@converter("MaxPool")
def _max_pool(node: NodeView) -> list:
    x = data(node)
    kernel, stride, pads, dilation = _pool_window(node, x)
    wants_indices = len(node.output_names) > 1 and bool(node.output_names[1])
    layout = "column_major" if node.attr("storage_order", 0) else "row_major"
    attrs = ops.PoolAttrs("max", kernel, stride, pads, dilation, ceil_mode=bool(node.attr("ceil_mode", 0)),
                          return_indices=wants_indices, index_layout=layout, pad_limit="window")
    out = node.emit("pool", attrs, [x])
    return list(out) if wants_indices else [out]


@converter("AveragePool")
def _average_pool(node: NodeView) -> list:
    x = data(node)
    kernel, stride, pads, dilation = _pool_window(node, x)
    attrs = ops.PoolAttrs("avg", kernel, stride, pads, dilation, ceil_mode=bool(node.attr("ceil_mode", 0)),
                          count_include_pad=bool(node.attr("count_include_pad", 0)), pad_limit="window")
    return [node.emit("pool", attrs, [x])]


@converter("LpPool")
def _lp_pool(node: NodeView) -> list:
    x = data(node)
    kernel, stride, pads, dilation = _pool_window(node, x)
    attrs = ops.LpPoolAttrs(float(node.attr("p", 2)), kernel, stride, pads, dilation,
                            ceil_mode=bool(node.attr("ceil_mode", 0)), convention="onnx", pad_limit="window")
    return [node.emit("lp_pool", attrs, [x])]


@converter("GlobalLpPool")
def _global_lp_pool(node: NodeView) -> list:
    return [node.emit("global_lp_pool", ops.GlobalLpPoolAttrs(float(node.attr("p", 2))), [data(node)])]


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: NodeView) -> list:
    kind = "avg" if node.op_type == "GlobalAveragePool" else "max"
    return [node.emit("global_pool", ops.GlobalPoolAttrs(kind), [data(node)])]

"""Padding and cropping, op "pad" with PadAttrs(pads, mode="constant", value=0.0):

    pads   one (begin, end) pair per input axis, every axis (ONNX lists all begins, then all ends:
           pairs = tuple(zip(onnx_pads[:rank], onnx_pads[rank:]))); a negative pad crops
    mode   "constant" (fill with value) | "reflect" (mirror without the edge) | "edge" (repeat the
           edge; torch "replicate") | "wrap" (torch "circular")
    value  the fill of constant mode

ONNX Pad of every opset (opset 2 attributes; opset 11+ inputs pads / constant_value / axes, which
must be constants) and torch.nn.functional.pad.  Crops apply first; then pads read the cropped axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import shapes
from ..ir import TensorType, check_input_types
from .registry import OpDef, register


@dataclass(frozen=True)
class PadAttrs:
    pads: tuple[tuple[int, int], ...]
    mode: str = "constant"
    value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "pads", tuple((int(b), int(e)) for b, e in self.pads))
        object.__setattr__(self, "value", float(self.value))


def _infer(layer: str, attrs: PadAttrs, types: list[TensorType]) -> tuple[TensorType, ...]:
    check_input_types(layer, types, 1)
    return (TensorType(shapes.pad_shape(layer, types[0].shape, attrs.pads, attrs.mode)),)


NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_reference(attrs: PadAttrs, x: np.ndarray) -> np.ndarray:
    shapes.pad_shape("reference", x.shape, attrs.pads, attrs.mode)
    cropped = x[tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(attrs.pads))]
    widths = [(max(b, 0), max(e, 0)) for b, e in attrs.pads]
    extra = {"constant_values": attrs.value} if attrs.mode == "constant" else {}
    return np.pad(cropped, widths, mode=NUMPY_MODES[attrs.mode], **extra).astype(np.float32)


register(OpDef(
    name="pad",
    infer=_infer,
    flops=lambda a, ins, outs: 0,
    reference=pad_reference,
))

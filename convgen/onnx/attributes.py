"""ONNX attributes and tensors -> plain Python values and numpy arrays."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import dtypes
from ..errors import ConvgenError, DTypeError, UnsupportedError
from .loader import onnx_module


def to_array(tensor, where: str) -> np.ndarray:
    """A TensorProto as a numpy array; truncated or inconsistent data raise a ConvgenError naming it."""
    onnx = onnx_module()
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise UnsupportedError(f"{where}: tensor {tensor.name!r} keeps its data in an external file; "
                               "load the model from its path so onnx reads that file")
    try:
        array = onnx.numpy_helper.to_array(tensor)
    except Exception as error:
        raise ConvgenError(f"{where}: tensor {tensor.name!r} cannot be read "
                           f"(dims {list(tensor.dims)}: {type(error).__name__}: {error})") from None
    if array.dtype == object or (array.dtype.kind not in "fiub" and array.dtype.name != "bfloat16"):
        raise UnsupportedError(f"{where}: tensor {tensor.name!r} has element type {array.dtype}; "
                               "convgen reads numbers only")
    return array


def node_attributes(node) -> dict[str, Any]:
    """{name: value}: ints, floats, strings (decoded), lists of them, tensors as numpy arrays."""
    onnx = onnx_module()
    values: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.ref_attr_name:
            raise UnsupportedError(f"node {node.name!r} ({node.op_type}): attribute {attr.name!r} refers to a "
                                   "function attribute; convgen imports plain graphs")
        if attr.type == onnx.AttributeProto.TENSOR:
            values[attr.name] = to_array(attr.t, f"node {node.name!r} ({node.op_type}) attribute {attr.name!r}")
            continue
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                         onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS,
                         onnx.AttributeProto.TENSORS, onnx.AttributeProto.TYPE_PROTO,
                         onnx.AttributeProto.TYPE_PROTOS):
            raise UnsupportedError(f"node {node.name!r} ({node.op_type}): attribute {attr.name!r} of type "
                                   f"{onnx.AttributeProto.AttributeType.Name(attr.type)} is not supported")
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        values[attr.name] = value
    return values


def numpy_dtype(onnx_type: int, where: str) -> np.dtype:
    onnx = onnx_module()
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_type))
    except Exception:
        raise UnsupportedError(f"{where}: element type {onnx_type} has no numpy equivalent") from None
    if dtype.kind not in "fiub" and dtype.name != "bfloat16":
        raise UnsupportedError(f"{where}: element type {dtype} is not a number type")
    return dtype


def element_type(onnx_type: int, where: str) -> str:
    """convgen's name for an ONNX element type a run-time value may have (convgen/dtypes.py)."""
    name = dtypes.name_of(numpy_dtype(onnx_type, where))
    if name is None:
        raise DTypeError(f"{where} has element type {numpy_dtype(onnx_type, where)}; convgen's run-time values are "
                         f"{list(dtypes.NAMES)}")
    return name

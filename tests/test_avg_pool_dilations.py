"""ONNX AveragePool with dilations (opset 19) against onnxruntime, on both backends: 1-D to 3-D, strides,
pads, ceil_mode and count_include_pad (torch has no dilated average pool; ops/pool.py's numpy reference is
checked against onnxruntime too, and stands in where onnxruntime refuses pads as large as the kernel)."""
from __future__ import annotations

import numpy as np
import onnxruntime
from hypothesis import given, strategies as st
from onnx import TensorProto, helper

import convgen
from conftest import assert_close, capped_settings, reference_outputs


@st.composite
def dilated_pools(draw, pad_below_kernel: bool = True):
    """Per axis kernel 1-3, stride 1-3, dilation 1-3 (one axis at least 2), pads below the kernel (onnxruntime's
    limit) or below the dilated window (convgen's), and a size the dilated window fits in, padding included."""
    nd = draw(st.integers(1, 3))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    dilation[0] = max(dilation[0], 2)
    stride = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    window = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    limits = kernel if pad_below_kernel else window
    begin = [draw(st.integers(0, lim - 1)) for lim in limits]
    end = [draw(st.integers(0, lim - 1)) for lim in limits]
    size = [draw(st.integers(max(1, w - b - e), max(1, w - b - e) + 6)) for w, b, e in zip(window, begin, end)]
    return dict(shape=[2, 3] + size, kernel_shape=kernel, strides=stride, dilations=dilation, pads=begin + end,
                ceil_mode=draw(st.integers(0, 1)), count_include_pad=draw(st.integers(0, 1)))


def pool_model(case: dict) -> bytes:
    attrs = {k: v for k, v in case.items() if k != "shape"}
    graph = helper.make_graph([helper.make_node("AveragePool", ["x"], ["y"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, case["shape"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]).SerializeToString()


def _input(case: dict) -> np.ndarray:
    return np.random.default_rng(sum(case["shape"])).standard_normal(case["shape"]).astype(np.float32)


@capped_settings(20)
@given(case=dilated_pools())
def test_dilated_average_pool_matches_onnxruntime(case, backend):
    data, x = pool_model(case), _input(case)
    expected = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    graph = convgen.from_onnx(data)
    assert_close(reference_outputs(graph, x)[0], expected)   # the numpy reference agrees with onnxruntime
    assert_close(convgen.compile(graph, backend=backend)(x), expected)


@capped_settings(8)
@given(case=dilated_pools(pad_below_kernel=False))
def test_pads_up_to_the_dilated_window_match_the_reference(case, backend):
    """Pads onnxruntime refuses (>= the kernel, < the dilated window: every window still overlaps the input)."""
    graph, x = convgen.from_onnx(pool_model(case)), _input(case)
    assert_close(convgen.compile(graph, backend=backend)(x), reference_outputs(graph, x)[0])

"""from_onnx on hand-built models: malformed files, names, folding, auto_pad, MaxPool indices.

Oracle: onnxruntime on the same model (onnx's reference evaluator miscounts ceil_mode and
SAME_LOWER pool outputs in onnx 1.23, so it is not used).
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from conftest import assert_close, capped_settings

FLOAT = TensorProto.FLOAT


def make_model(nodes, inputs, outputs, initializers=(), opset=17, name="m") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, FLOAT, s) for n, s in outputs],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_onnxruntime(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def conv_model(opset: int = 17) -> onnx.ModelProto:
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    return make_model([node], [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], [("w", w)], opset)


# -- malformed models -----------------------------------------------------------------------------

def test_truncated_bytes_raise_a_clear_error():
    data = conv_model().SerializeToString()
    for cut in range(1, len(data), 37):
        with pytest.raises(convgen.ConvgenError):
            convgen.from_onnx(data[:cut])


@capped_settings(60)
@given(flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(1, 255)), min_size=1, max_size=4))
def test_corrupted_bytes_import_or_raise_a_convgen_error(flips):
    """Any byte corruption of a valid file: a Graph, or a ConvgenError (never another exception)."""
    data = bytearray(conv_model().SerializeToString())
    for position, xor in flips:
        data[position % len(data)] ^= xor
    try:
        convgen.from_onnx(bytes(data))
    except convgen.ConvgenError:
        pass


def test_wrongly_typed_attribute_names_the_node():
    model = conv_model()
    node = model.graph.node[0]
    node.attribute.append(helper.make_attribute("strides", 2))  # an INT where INTS belong
    with pytest.raises(convgen.ConvgenError, match=r"node 'conv' \(Conv\)"):
        convgen.from_onnx(model)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        convgen.from_onnx(tmp_path / "absent.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\xff\x00not protobuf\x13" * 10)
    with pytest.raises(convgen.ConvgenError, match="not a readable ONNX model"):
        convgen.from_onnx(tmp_path / "garbage.onnx")
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto"):
        convgen.from_onnx(42)


def test_external_data_is_read_from_the_path(tmp_path, backend, rng):
    model = conv_model()
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = run_onnxruntime(model, {"x": x})[0]
    path = tmp_path / "conv.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    assert (tmp_path / "w.bin").stat().st_size > 0
    assert_close(convgen.compile(convgen.from_onnx(path), backend=backend)(x), expected)
    with pytest.raises(convgen.UnsupportedError, match="external file"):
        convgen.from_onnx(onnx.load(path, load_external_data=False))


def test_missing_initializer_is_named():
    model = conv_model()
    del model.graph.initializer[:]
    with pytest.raises(convgen.ConvgenError, match=r"node 'conv' \(Conv\) reads 'w'.*missing initializer"):
        convgen.from_onnx(model)


def test_truncated_initializer_data_is_named():
    model = conv_model()
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:10]
    with pytest.raises(convgen.ConvgenError, match="initializer 'w'.*cannot be read"):
        convgen.from_onnx(model)


def test_cycle_is_reported():
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")]
    model = make_model(nodes, [("x", [1, 2])], [("a", [1, 2])])
    with pytest.raises(convgen.ConvgenError, match=r"cycle through nodes .*'first' \(Relu\).*'second' \(Relu\)"):
        convgen.from_onnx(model)


def test_wrong_ranks_name_the_node():
    model = conv_model()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", FLOAT, [3, 8, 8]))
    with pytest.raises(convgen.ShapeError, match=r"node 'conv' \(Conv\): input must have rank 4"):
        convgen.from_onnx(model)


def test_every_unsupported_op_is_listed_at_once():
    nodes = [helper.make_node("Hardmax", ["x"], ["a"], name="e1"), helper.make_node("Det", ["a"], ["b"], name="h1"),
             helper.make_node("Relu", ["b"], ["c"], name="r"), helper.make_node("Det", ["c"], ["y"], name="h2")]
    with pytest.raises(convgen.UnsupportedError) as info:
        convgen.from_onnx(make_model(nodes, [("x", [1, 4])], [("y", [1, 4])]))
    assert "Hardmax: ['e1']" in str(info.value) and "Det: ['h1', 'h2']" in str(info.value)
    assert "Relu" not in str(info.value)


def test_symbolic_dimensions_need_input_shapes():
    model = conv_model()
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(convgen.ShapeError, match="axis 0 is symbolic.*input_shapes"):
        convgen.from_onnx(model)
    graph = convgen.from_onnx(model, input_shapes={"x": (2, 3, 8, 8)})
    assert graph.inputs[0][1].shape == (2, 3, 8, 8)
    with pytest.raises(convgen.ConvgenError, match="not graph inputs"):
        convgen.from_onnx(model, input_shapes={"image": (2, 3, 8, 8)})


def test_opsets_outside_the_range_are_refused():
    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(convgen.UnsupportedError, match=f"opset {newest + 1}; convgen imports opsets 1 to"):
        convgen.from_onnx(conv_model(opset=newest + 1))


@pytest.mark.parametrize("opset", [1, 6])
def test_old_opsets_are_raised(opset):
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = onnxruntime.InferenceSession(conv_model().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(convgen.compile(convgen.from_onnx(conv_model(opset=opset)))(x), expected,
                               rtol=1e-5, atol=1e-5)


# -- names, constants and run-time weights ----------------------------------------------------------

def test_hostile_names_never_reach_the_generated_code(backend):
    evil = '*/ int evil; /* "\n#include <stdio.h>'
    nodes = [helper.make_node("Relu", [evil], ["r" + evil], name=evil),
             helper.make_node("Sigmoid", ["r" + evil], ["out" + evil], name=evil)]
    model = make_model(nodes, [(evil, [2, 3])], [("out" + evil, [2, 3])], name=evil)
    compiled = convgen.compile(convgen.from_onnx(model), backend=backend)
    # the signature's string literal carries the file's names, escaped; outside literals and comments, none
    code = re.sub(r'/\*.*?\*/|"(?:\\.|[^"\\\n])*"|c"[^"]*"', " ", compiled.source, flags=re.S)
    assert "*/ int evil" not in code and "#include <stdio.h>" not in code and '"' not in code
    assert compiled.input_names == (evil,) and compiled.output_names == ("out" + evil,)   # the file's names
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    assert_close(compiled(x), 1 / (1 + np.exp(-np.maximum(x, 0))))


def test_weights_given_as_graph_inputs_stay_run_time_inputs(backend, rng):
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 1], pads=[1, 0, 1, 2])
    model = make_model([node], [("x", [2, 3, 7, 6]), ("w", [5, 3, 3, 2]), ("b", [5])], [("y", None)])
    graph = convgen.from_onnx(model)
    assert graph.input_names == ("x", "w", "b") and not graph.constants
    feeds = {"x": rng.standard_normal((2, 3, 7, 6)), "w": rng.standard_normal((5, 3, 3, 2)),
             "b": rng.standard_normal(5)}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    assert_close(convgen.compile(graph, backend=backend)(**feeds), run_onnxruntime(model, feeds)[0])


# -- shape arithmetic folded at import ----------------------------------------------------------------

def test_shape_arithmetic_folds_into_constants(backend, rng):
    """Shape, Gather, Unsqueeze, Squeeze, Slice, Cast, Range, ConstantOfShape and integer Div/Mul
    compute a reshape target and clip bounds at import; no layer is left for them."""
    c = helper.make_node
    nodes = [
        c("Shape", ["x"], ["shape"]),
        c("Gather", ["shape", "r0"], ["n"], axis=0),                        # N, a scalar
        c("Slice", ["shape", "one", "big"], ["rest"]),                      # (C, H, W)
        c("ConstantOfShape", ["three"], ["ones"], value=numpy_helper.from_array(np.array([1], np.int64))),
        c("Mul", ["rest", "ones"], ["rest2"]),
        c("Range", ["r0", "r3", "r1"], ["idx"]),                            # [0, 1, 2]
        c("Gather", ["rest2", "idx"], ["rest3"]),
        c("Cast", ["rest3"], ["restf"], to=TensorProto.FLOAT),
        c("Cast", ["restf"], ["resti"], to=TensorProto.INT64),
        c("Div", ["resti", "resti"], ["unit"]),                             # [1, 1, 1]
        c("Mul", ["unit", "rest"], ["chw"]),
        c("Slice", ["chw", "zero", "big"], ["chw2"]),
        c("Unsqueeze", ["n", "zero"], ["n1"]),
        c("Squeeze", ["n1", "zero"], ["n0"]),
        c("Unsqueeze", ["n0", "zero"], ["n2"]),
        c("Concat", ["n2", "minus1"], ["target"], axis=0),                   # [N, -1]
        c("Reshape", ["x", "target"], ["flat"]),
        c("Clip", ["flat", "lo", "hi"], ["y"]),
    ]
    ints = lambda *v: np.array(v, np.int64)  # noqa: E731
    initializers = [("zero", ints(0)), ("one", ints(1)), ("big", ints(2 ** 62)), ("three", ints(3)),
                    ("r0", np.array(0, np.int64)), ("r3", np.array(3, np.int64)), ("r1", np.array(1, np.int64)),
                    ("minus1", ints(-1)), ("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.25, np.float32))]
    model = make_model(nodes, [("x", [2, 3, 4, 5])], [("y", [2, 60])], initializers)
    graph = convgen.from_onnx(model)
    assert [n.op for n in graph.nodes] == ["reshape", "activation"]
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    assert_close(convgen.compile(graph, backend=backend)(x), run_onnxruntime(model, {"x": x})[0])


def test_old_opsets_are_version_converted(backend, rng):
    """Opset 10: Clip's bounds are attributes, Dropout has is_test-era semantics; both convert to 13."""
    nodes = [helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.5), helper.make_node("Dropout", ["c"], ["y"])]
    model = make_model(nodes, [("x", [2, 6])], [("y", [2, 6])], opset=10)
    x = rng.standard_normal((2, 6)).astype(np.float32)
    assert_close(convgen.compile(convgen.from_onnx(model), backend=backend)(x), np.clip(x, -0.5, 0.5))


# -- auto_pad and MaxPool indices against onnxruntime / the ONNX reference ------------------------------------

windows = st.fixed_dictionaries({
    "ndim": st.integers(1, 3), "kernel": st.integers(1, 3), "stride": st.integers(1, 3),
    "dilation": st.integers(1, 2), "size": st.integers(5, 8),
    "auto_pad": st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"])})


def _window_attrs(w: dict, dilations: bool = True) -> dict:
    nd = w["ndim"]
    attrs = dict(kernel_shape=[w["kernel"]] * nd, strides=[w["stride"]] * nd, auto_pad=w["auto_pad"])
    if dilations:
        attrs["dilations"] = [w["dilation"]] * nd
    return attrs


def spec_pads(auto_pad: str, size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """ONNX's auto_pad, written out from the spec: SAME_* gives ceil(in / stride) outputs, with the
    total pad taken from the dilated kernel and the odd one at the end (UPPER) or begin (LOWER)."""
    if auto_pad == "VALID":
        return 0, 0
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return (total // 2, total - total // 2) if auto_pad == "SAME_UPPER" else (total - total // 2, total // 2)


@capped_settings(12)
@given(w=windows, op=st.sampled_from(["Conv", "MaxPool", "AveragePool"]))
def test_auto_pad_is_the_spec_explicit_padding(backend, w, op):
    """SAME_UPPER / SAME_LOWER / VALID give the output of the same op with the explicit pads the spec
    defines, run by onnxruntime (which itself refuses dilation with SAME_* for Conv and pads MaxPool
    as if undilated, and whose reference evaluator miscounts SAME_LOWER pools: explicit pads avoid both)."""
    nd, rng = w["ndim"], np.random.default_rng(w["size"])
    shape = [1, 2] + [w["size"] + i for i in range(nd)]
    inputs, initializers = ["x"], []
    attrs = _window_attrs(w, dilations=op != "AveragePool")
    dilation = w["dilation"] if op != "AveragePool" else 1
    if op == "Conv":
        inputs.append("w")
        initializers = [("w", rng.standard_normal([3, 2] + [w["kernel"]] * nd).astype(np.float32))]
        del attrs["kernel_shape"]
    model = make_model([helper.make_node(op, inputs, ["y"], **attrs)], [("x", shape)], [("y", None)], initializers)
    pairs = [spec_pads(w["auto_pad"], size, w["kernel"], w["stride"], dilation) for size in shape[2:]]
    explicit = dict(attrs, auto_pad="NOTSET", pads=[b for b, _ in pairs] + [e for _, e in pairs])
    oracle = make_model([helper.make_node(op, inputs, ["y"], **explicit)], [("x", shape)], [("y", None)],
                        initializers)
    x = rng.standard_normal(shape).astype(np.float32)
    actual = convgen.compile(convgen.from_onnx(model), backend=backend)(x)
    if w["auto_pad"] != "VALID":
        assert actual.shape[2:] == tuple(-(-size // w["stride"]) for size in shape[2:])
    assert_close(actual, run_onnxruntime(oracle, {"x": x})[0])


@capped_settings(12)
@given(w=windows, storage_order=st.integers(0, 1), pad=st.integers(0, 2), ceil_mode=st.booleans())
def test_max_pool_indices_match_onnxruntime(backend, w, storage_order, pad, ceil_mode):
    """Indices flattened over N*C*spatial, row- or column-major (storage_order), as ONNX specifies."""
    nd = w["ndim"]
    shape = [2, 3] + [w["size"] + i for i in range(nd)]
    attrs = _window_attrs(w)
    del attrs["auto_pad"]
    pad = min(pad, w["kernel"] - 1)  # onnxruntime wants pads below the (undilated) kernel
    attrs.update(pads=[pad] * (2 * nd), storage_order=storage_order, ceil_mode=int(ceil_mode))
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    model = make_model([node], [("x", shape)], [("y", None)], opset=12)
    model.graph.output.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))
    x = np.random.default_rng(w["size"]).permutation(np.prod(shape)).reshape(shape).astype(np.float32)  # no ties
    graph = convgen.from_onnx(model)
    values, indices = convgen.compile(graph, backend=backend)(x)
    expected_values, expected_indices = run_onnxruntime(model, {"x": x})
    reference_values, reference_indices = convgen.ops.run_reference("pool", graph.nodes[0].attrs, x)
    np.testing.assert_array_equal(reference_indices, expected_indices)
    assert_close(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(x.reshape(-1)[indices] if storage_order == 0 else values, values)

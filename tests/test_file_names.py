"""An ONNX model is called with the names in its file, as onnxruntime's feeds are: model(**{name: x}),
model.input_names and model.output_names carry them exactly, while the C code sees only sanitized,
distinct identifiers.  onnxruntime, fed the same names, is the oracle."""
from __future__ import annotations

import pickle
import re
import subprocess

import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen.names import is_reserved

from conftest import assert_close, capped_settings

# 29 kinds of names exporters and people write; all valid ONNX value names.
NAMES = ["input.1", "/conv1/Conv_output_0", "onnx::Conv_5", "x-y", "x_y", "a b", " lead", "trail ", "名前",
         "ünïcödé", "😀", "0start", "123", "int", "for", "NULL", "workspace", "output", "x:1", "concat:1", "a\nb",
         'q"uote', "*/ evil /*", "back\\slash", "L" * 300, "X", "x", "_", "input_1"]
OUTPUTS = ["19", "/pool/MaxPool_output_0", "onnx::Indices 7 ✓"]
C_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def named_model() -> onnx.ModelProto:
    """Concat (order matters, so swapped inputs show) -> Conv -> MaxPool with Indices."""
    weight = np.random.default_rng(3).standard_normal((3, len(NAMES), 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Concat", NAMES, ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "conv.weight"], [OUTPUTS[0]], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", [OUTPUTS[0]], OUTPUTS[1:], kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(
        nodes, "named", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 4, 4]) for n in NAMES],
        [helper.make_tensor_value_info(n, t, None) for n, t in zip(OUTPUTS, [TensorProto.FLOAT] * 2 + [TensorProto.INT64])],
        [numpy_helper.from_array(weight, "conv.weight")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnxruntime_outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.fixture(scope="module")
def model_and_feeds():
    rng = np.random.default_rng(5)
    return named_model(), {n: rng.standard_normal((1, 1, 4, 4)).astype(np.float32) for n in NAMES}


@pytest.fixture(scope="module", params=["c", "llvm"])
def compiled(request, model_and_feeds):
    return convgen.compile(convgen.from_onnx(model_and_feeds[0]), backend=request.param)


def check_outputs(actual, expected) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype
        if e.dtype == np.int64:
            np.testing.assert_array_equal(a, e)
        else:
            assert_close(a, e)


def test_keyword_call_takes_the_files_names(compiled, model_and_feeds):
    model, feeds = model_and_feeds
    assert compiled.input_names == tuple(NAMES) and compiled.output_names == tuple(OUTPUTS)
    expected = onnxruntime_outputs(model, feeds)
    check_outputs(compiled(**feeds), expected)
    check_outputs(compiled(*feeds.values()), expected)
    reordered = dict(reversed(list(feeds.items())))            # by name, whatever the order
    check_outputs(compiled(**reordered), expected)
    with pytest.raises(TypeError, match="unknown \\['input_1_'\\], missing \\['input.1'\\]"):
        compiled(**{("input_1_" if n == "input.1" else n): x for n, x in feeds.items()})


def test_c_identifiers_are_sanitized_and_distinct(compiled):
    idents = [spec["ident"] for spec in compiled.signature["inputs"] + compiled.signature["outputs"]]
    assert all(C_IDENT.fullmatch(i) and not is_reserved(i) for i in idents), idents
    assert len({i.upper() for i in idents}) == len(NAMES) + len(OUTPUTS)   # a-b and a_b stay two inputs
    if compiled.backend == "c":
        code = re.sub(r'/\*.*?\*/|"(?:\\.|[^"\\\n])*"', " ", compiled.source, flags=re.S)
        assert code.isascii() and '"' not in code and "*/" not in code and "\\" not in code


def test_pickled_model_keeps_the_names(compiled, model_and_feeds):
    model, feeds = model_and_feeds
    clone = pickle.loads(pickle.dumps(compiled))
    assert clone.input_names == tuple(NAMES) and clone.output_names == tuple(OUTPUTS)
    check_outputs(clone(**feeds), onnxruntime_outputs(model, feeds))
    graph = pickle.loads(pickle.dumps(compiled.graph))
    assert graph.output_names == tuple(OUTPUTS)


def test_saved_model_maps_names_to_identifiers(compiled, model_and_feeds, tmp_path):
    model, feeds = model_and_feeds
    directory = compiled.save(tmp_path / "saved")
    header = (directory / f"{compiled.prefix}.h").read_text()
    assert f'/* input "input.1": 1 x 1 x 4 x 4 */\n#define {compiled.prefix.upper()}_INPUT_1_DIM0 1' in header
    assert f'/* input "input_1": 1 x 1 x 4 x 4 */\n#define {compiled.prefix.upper()}_INPUT_1_1_DIM0 1' in header
    use = tmp_path / "use.c"
    use.write_text(f'#include "{directory / compiled.prefix}.h"\nint main(void) {{ return 0; }}\n')
    result = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-pedantic-errors", "-Werror", "-fsyntax-only",
                             str(use)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = convgen.load(directory)
    assert loaded.input_names == tuple(NAMES) and loaded.output_names == tuple(OUTPUTS)
    check_outputs(loaded(**feeds), onnxruntime_outputs(model, feeds))


def test_repeated_output_names_are_a_format_error(model_and_feeds):
    model = onnx.ModelProto()
    model.CopyFrom(model_and_feeds[0])
    model.graph.output[2].name = OUTPUTS[1]
    with pytest.raises(convgen.ModelFormatError, match="listed twice"):
        convgen.from_onnx(model)


def test_graph_output_names_must_match_the_outputs(model_and_feeds):
    graph = convgen.from_onnx(model_and_feeds[0])
    for names in (OUTPUTS[:2], (OUTPUTS[0],) * 3, ("a", "b", 3)):
        with pytest.raises(convgen.ConvgenError, match="output_names"):
            type(graph)(graph.name, graph.inputs, graph.nodes, graph.outputs, dict(graph.constants), tuple(names))


# Any text protobuf stores (no lone surrogates) and onnxruntime accepts (no NUL).
NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=24)


@given(names=st.lists(NAME, min_size=2, max_size=5, unique=True), backend=st.sampled_from(["c", "llvm"]))
@capped_settings(12)
def test_drawn_names_match_onnxruntime(names, backend):
    assume("cat" not in names)    # the intermediate's name (ONNX assigns each name once)
    inputs, output = names[:-1], names[-1]
    nodes = [helper.make_node("Concat", inputs, ["cat"], axis=0), helper.make_node("Sigmoid", ["cat"], [output])]
    graph = helper.make_graph(nodes, "drawn", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3])
                                               for n in inputs],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(len(names))
    feeds = {n: rng.standard_normal((2, 3)).astype(np.float32) for n in inputs}
    compiled = convgen.compile(convgen.from_onnx(model), backend=backend)
    assert compiled.input_names == tuple(inputs) and compiled.output_names == (output,)
    assert_close(compiled(**feeds), onnxruntime_outputs(model, feeds)[0])

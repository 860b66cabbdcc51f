"""Hostile inputs at the public entry points: DSL layer constructors and tracing with arbitrary
arguments and shapes, graph construction, and the call path of a compiled model.  Every one
either works or raises a clear Python exception (ConvgenError, ValueError, TypeError,
NotImplementedError) — never another exception type, a crash or a wrong result; NaN and inf
propagate as in torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convgen
from convgen import lower, nn, passes
from convgen.backends import c as c_backend
from convgen.target import host

from conftest import assert_close, capped_settings, reference_outputs

CLEAR = (convgen.ConvgenError, ValueError, TypeError, NotImplementedError)

hostile_int = st.one_of(st.integers(-3, 9), st.sampled_from([0, 2 ** 31, 10 ** 12]), st.floats(allow_nan=True),
                        st.none(), st.text(max_size=2), st.booleans(), st.tuples(st.integers(-2, 5), st.integers(-2, 5)),
                        st.lists(st.integers(-1, 4), max_size=4), st.sampled_from(["same", "valid", "full"]))
hostile_shape = st.one_of(st.lists(st.integers(-1, 9), max_size=6).map(tuple), st.just((1, 1, 10 ** 10)),
                          st.just(()), st.lists(st.integers(1, 7), min_size=3, max_size=5).map(tuple))

LAYERS = {
    "Conv1d": (nn.Conv1d, 7), "Conv2d": (nn.Conv2d, 7), "Conv3d": (nn.Conv3d, 7),
    "MaxPool1d": (nn.MaxPool1d, 6), "MaxPool2d": (nn.MaxPool2d, 6), "MaxPool3d": (nn.MaxPool3d, 6),
    "AvgPool1d": (nn.AvgPool1d, 6), "AvgPool2d": (nn.AvgPool2d, 6), "AvgPool3d": (nn.AvgPool3d, 6),
    "Linear": (nn.Linear, 3), "BatchNorm2d": (nn.BatchNorm2d, 2), "Softmax": (nn.Softmax, 1),
    "Flatten": (nn.Flatten, 1), "LocallyConnected1d": (nn.LocallyConnected1d, 6),
    "LocallyConnected2d": (nn.LocallyConnected2d, 6), "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, 1),
    "ConvTranspose2d": (nn.ConvTranspose2d, 9), "LPPool2d": (nn.LPPool2d, 4), "GlobalLpPool": (nn.GlobalLpPool, 1),
    "LeakyReLU": (nn.LeakyReLU, 1), "Hardtanh": (nn.Hardtanh, 2), "GlobalMaxPool": (nn.GlobalMaxPool, 0),
}


@given(st.sampled_from(sorted(LAYERS)), st.data(), hostile_shape)
@capped_settings(300)
def test_dsl_layers_with_hostile_arguments_raise_clear_errors(name, data, shape):
    cls, arity = LAYERS[name]
    args = data.draw(st.lists(hostile_int, max_size=arity), label="args")
    try:
        graph = nn.Sequential(cls(*args)).to_graph(shape)
    except CLEAR:
        return
    try:   # a graph that was accepted lowers to plain integers and renders, or says why not
        c_backend.render_source(lower.lower(passes.optimize(graph), host(), 2))
    except CLEAR:
        pass


@given(st.lists(st.tuples(st.sampled_from(["conv", "pool", "add", "linear", "nope", "flatten", "softmax"]),
                          st.lists(st.sampled_from(["x", "y", "w", "missing", "n0", "n1"]), max_size=3)),
                max_size=4),
       st.lists(st.sampled_from(["x", "n0", "n1", "missing", "w"]), max_size=3))
@capped_settings(150)
def test_hand_built_graphs_with_dangling_edges_cycles_and_bad_ops(nodes, outputs):
    """Graph() checks its own consistency: unknown values, cycles (a node reading a later output), duplicates."""
    from convgen import Graph, Node, TensorType
    from convgen.ops import ConvAttrs, PoolAttrs
    attrs = {"conv": ConvAttrs((1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
             "pool": PoolAttrs("max", (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1))}
    t = TensorType((1, 1, 2, 2))
    built = [Node(f"n{i}", op, attrs.get(op), tuple(ins), (f"n{i}",), (t,)) for i, (op, ins) in enumerate(nodes)]
    try:
        graph = Graph("g", (("x", t), ("y", t)), tuple(built), tuple(outputs),
                      {"w": np.ones((1, 1, 1, 1), np.float32)})
        c_backend.render_source(lower.lower(passes.optimize(graph), host(), 1))
    except CLEAR:
        pass


@pytest.fixture(scope="module", params=["c", "llvm"])
def model(request):
    nn.manual_seed(8)
    graph = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2)).to_graph((2, 2, 6, 6), name="calls")
    return graph, convgen.compile(graph, backend=request.param)


def _misaligned(x: np.ndarray) -> np.ndarray:
    raw = np.zeros(x.nbytes + 1, np.uint8)
    view = raw[1:].view(np.float32).reshape(x.shape)
    view[...] = x
    assert not view.flags.aligned
    return view


def _readonly(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.setflags(write=False)
    return x


CONVERTED = {   # accepted: converted to float32 C order by the documented rule
    "float64": lambda x: x.astype(np.float64), "float16": lambda x: x.astype(np.float16),
    "big-endian": lambda x: x.astype(">f4"), "int8": lambda x: np.round(x).astype(np.int8),
    "uint64": lambda x: np.abs(np.round(x)).astype(np.uint64), "fortran order": np.asfortranarray,
    "negative strides": lambda x: x[::-1, ::-1, ::-1, ::-1].copy()[::-1, ::-1, ::-1, ::-1],
    "every other element": lambda x: np.repeat(x, 2, axis=3)[..., ::2], "misaligned": _misaligned,
    "read-only": _readonly, "nested lists": lambda x: x.tolist(), "torch tensor": torch.from_numpy,
    "masked array": lambda x: np.ma.masked_array(x, mask=x > 0),
}
REJECTED = {    # (value, exception, message)
    "complex": (lambda x: x.astype(np.complex64), TypeError, "complex64"),
    "bool": (lambda x: x > 0, TypeError, "bool"),
    "strings": (lambda x: x.astype(str), TypeError, "dtype"),
    "objects": (lambda x: x.astype(object), TypeError, "object"),
    "datetime": (lambda x: np.zeros(x.shape, "datetime64[s]"), TypeError, "datetime64"),
    "ragged list": (lambda x: [[1.0, 2.0], [3.0]], ValueError, r"input 'input': not an array of shape \(2, 2, 6, 6\)"),
    "scalar": (lambda x: 3.0, ValueError, r"expected shape \(2, 2, 6, 6\), got \(\)"),
    "zero-size batch": (lambda x: x[:0], ValueError, r"got \(0, 2, 6, 6\)"),
    "one sample of two": (lambda x: x[:1], ValueError, "expected shape"),
    "extra axis": (lambda x: x[None], ValueError, "expected shape"),
    "None": (lambda x: None, TypeError, "object"),
    "a string": (lambda x: "x", TypeError, "dtype"),
}


@pytest.mark.parametrize("how", sorted(CONVERTED))
def test_inputs_converted_by_the_documented_rule(model, how):
    graph, compiled = model
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    value = CONVERTED[how](x)
    expected = reference_outputs(graph, np.asarray(value, dtype=np.float32))[0]
    assert_close(compiled(value), expected)


@pytest.mark.parametrize("how", sorted(REJECTED))
def test_inputs_rejected_with_clear_errors(model, how):
    make, error, message = REJECTED[how]
    with pytest.raises(error, match=message):
        model[1](make(np.zeros((2, 2, 6, 6), np.float32)))


def test_out_arrays_must_be_exact(model):
    compiled = model[1]
    x = np.zeros((2, 2, 6, 6), np.float32)
    shape = compiled.output_shapes[0]
    for bad in (np.zeros(shape, np.float64), np.zeros(shape[1:], np.float32), np.zeros(shape, np.float32).T,
                _readonly(np.zeros(shape, np.float32)), _misaligned(np.zeros(shape, np.float32))):
        with pytest.raises(ValueError, match="out="):
            compiled(x, out=bad)
    with pytest.raises(TypeError, match="numpy array"):
        compiled(x, out=[[0.0]])


def test_nan_and_inf_propagate_as_in_torch(backend):
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    x[0, 0, 1, 1], x[0, 1, 2, 3], x[0, 1, 4, 4], x[0, 0, 5, 0] = np.nan, np.inf, -np.inf, np.nan
    nn.manual_seed(3)
    conv, linear = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(72, 4)
    i = nn.Input(x.shape, name="x")
    heads = {
        "conv": (conv(i), lambda t: TF.conv2d(t, torch.from_numpy(conv.param("weight")),
                                              torch.from_numpy(conv.param("bias")), padding=1)),
        "max pool": (nn.MaxPool2d(3, 2, padding=1)(i), lambda t: TF.max_pool2d(t, 3, 2, padding=1)),
        "avg pool": (nn.AvgPool2d(2)(i), lambda t: TF.avg_pool2d(t, 2)),
        "relu": (nn.relu(i), torch.relu), "sigmoid": (nn.sigmoid(i), torch.sigmoid), "tanh": (nn.tanh(i), torch.tanh),
        "relu6": (nn.relu6(i), TF.relu6), "leaky": (nn.leaky_relu(i, 0.1), lambda t: TF.leaky_relu(t, 0.1)),
        "softmax": (nn.Softmax(1)(i), lambda t: torch.softmax(t, 1)),
        "global max": (nn.GlobalMaxPool()(i), lambda t: torch.amax(t, (2, 3), keepdim=True)),
        "global avg": (nn.GlobalAvgPool()(i), lambda t: torch.mean(t, (2, 3), keepdim=True)),
        "linear": (linear(nn.flatten(i)), lambda t: TF.linear(t.flatten(1), torch.from_numpy(linear.param("weight")),
                                                                torch.from_numpy(linear.param("bias")))),
    }
    compiled = convgen.compile(nn.graph(*(h for h, _ in heads.values()), name="nan"), backend=backend)
    for (name, (_, reference)), got in zip(heads.items(), compiled(x)):
        expected = reference(torch.from_numpy(x)).numpy()
        assert np.array_equal(np.isnan(got), np.isnan(expected)), name
        assert np.array_equal(np.isinf(got), np.isinf(expected)) and np.all(got[np.isinf(got)] == expected[np.isinf(got)]), name
        finite = np.isfinite(expected)
        assert_close(got[finite], expected[finite])


def test_cli_run_never_unpickles_inputs(tmp_path, capsys):
    from convgen import cli
    nn.manual_seed(1)
    (tmp_path / "m.py").write_text("from convgen import nn\ngraph = nn.Sequential(nn.ReLU()).to_graph((1, 2))\n")
    np.save(tmp_path / "x.npy", np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    assert cli.main(["run", str(tmp_path / "m.py"), "--input", str(tmp_path / "x.npy")]) == 1
    assert "allow_pickle" in capsys.readouterr().err


def test_load_refuses_libraries_that_are_not_models(tmp_path):
    import shutil

    import _cffi_backend        # any shared library that is not a convgen model
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "libmodel.so").write_bytes(b"\x7fELF" + b"\0" * 60)
    (tmp_path / "foreign").mkdir()
    shutil.copy(_cffi_backend.__file__, tmp_path / "foreign" / "libforeign.so")
    for directory, message in (("truncated", "not a loadable"), ("foreign", "foreign_signature")):
        with pytest.raises(convgen.ConvgenError, match=message):
            convgen.load(tmp_path / directory)


@pytest.mark.parametrize("make", [lambda: nn.Linear(2 ** 31, 1), lambda: nn.Conv2d(2 ** 31, 1, 1),
                                  lambda: nn.Conv3d(1, 10 ** 12, 1), lambda: nn.BatchNorm2d(2 ** 31),
                                  lambda: nn.PReLU(10 ** 12), lambda: nn.ConvTranspose2d(2 ** 31, 1, 1)])
def test_absurd_parameter_sizes_fail_before_allocating(make):
    """Found by the hostile-arguments test: BatchNorm2d(2**31) allocated 32 GB and the OS killed the worker."""
    with pytest.raises(convgen.ShapeError, match="the limit is"):
        make()

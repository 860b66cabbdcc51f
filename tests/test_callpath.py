"""The C call path (convgen/callpath.py, templates/callpath.c.j2): fixed-batch models and cached
convgen.functional calls run through it; every array that needs something done goes to the Python
path, with the same results and errors.  torch is the oracle; CONVGEN_C_CALLS=0 gives the Python path
to compare with."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convgen
import convgen.functional as F
from convgen import callpath, nn
from models import lenet5, numpy_state, torch_lenet5

from conftest import assert_close, capped_settings, t64


@pytest.fixture(scope="module", params=["c", "llvm"])
def lenet(request):
    """(C-path model, Python-path model, torch reference) of one LeNet-5."""
    reference = torch_lenet5().eval()
    net = lenet5()
    net.load_state_dict(numpy_state(reference))
    graph = net.to_graph((1, 1, 32, 32), name="lenet5")
    fast = convgen.compile(graph, backend=request.param)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVGEN_C_CALLS", "0")
        slow = convgen.compile(graph, backend=request.param)
    return fast, slow, reference


def torch_lenet(reference, x) -> np.ndarray:
    with torch.no_grad():
        return reference.double()(t64(x)).numpy()


def test_the_extension_builds_and_models_use_it(lenet):
    fast, slow, _ = lenet
    assert callpath.module() is not None, callpath.unavailable
    assert fast._fast is not None and slow._fast is None


def test_fresh_outputs_and_out_match_torch_and_the_python_path(lenet, rng):
    fast, slow, reference = lenet
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    expected = torch_lenet(reference, x)
    y = fast(x)
    assert y.dtype == np.float32 and y.shape == (1, 10) and y.flags.owndata
    assert_close(y, expected)
    assert np.array_equal(y, slow(x))
    out = np.full((1, 10), np.nan, np.float32)
    assert fast(x, out=out) is out
    assert np.array_equal(out, y)
    assert fast(x) is not y                  # a fresh array per call


# layouts the C path hands to the Python path: each is converted there and gives torch's result
LAYOUTS = {
    "float64": lambda x: x.astype(np.float64),
    "fortran": lambda x: np.asfortranarray(x),
    "strided": lambda x: np.repeat(x, 2, axis=3)[..., ::2],
    "reversed": lambda x: x[..., ::-1].copy()[..., ::-1],
    "list": lambda x: x.tolist(),
    "tensor": lambda x: torch.from_numpy(x),
    "misaligned": lambda x: np.frombuffer(np.concatenate([np.zeros(1, np.uint8), x.view(np.uint8).ravel()]).data,
                                          np.float32, offset=1).reshape(x.shape),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_arrays_that_need_converting_take_the_python_path(lenet, rng, layout):
    fast, slow, reference = lenet
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    given_x = LAYOUTS[layout](x)
    assert_close(fast(given_x), torch_lenet(reference, x))
    assert np.array_equal(fast(given_x), slow(given_x))


def test_a_read_only_input_is_exact(lenet, rng):
    fast, _, reference = lenet
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    x.flags.writeable = False
    assert_close(fast(x), torch_lenet(reference, x))


@pytest.mark.parametrize("call, error, message", [
    (lambda m, x: m(np.ones((1, 1, 31, 32), np.float32)), ValueError, "expected shape (1, 1, 32, 32)"),
    (lambda m, x: m(x, x), TypeError, "expected 1 input(s)"),
    (lambda m, x: m(), TypeError, "expected 1 input(s)"),
    (lambda m, x: m(x.astype(bool)), TypeError, "expected a float32 array"),
    (lambda m, x: m(x, out=np.empty((1, 10), np.float64)), ValueError, "out= for output"),
    (lambda m, x: m(x, out=np.empty((1, 10), np.float32)[:, ::-1]), ValueError, "out= for output"),
    (lambda m, x: m(x, out=np.empty((10,), np.float32)), ValueError, "out= for output"),
    (lambda m, x: m(x, out=(np.empty((1, 10), np.float32),) * 2), ValueError, "out= needs 1 array(s)"),
    (lambda m, x: m(wrong=x), TypeError, "unknown ['wrong']"),
])
def test_bad_calls_raise_the_python_paths_errors(lenet, call, error, message):
    fast, slow, _ = lenet
    x = np.ones((1, 1, 32, 32), np.float32)
    for model in (fast, slow):
        with pytest.raises(error) as raised:
            call(model, x)
        assert message in str(raised.value)


def test_a_read_only_out_is_refused(lenet):
    fast, _, _ = lenet
    out = np.empty((1, 10), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        fast(np.ones((1, 1, 32, 32), np.float32), out=out)


def test_a_call_kept_after_its_model_is_collected_raises_instead_of_crashing():
    graph = nn.Sequential(nn.Conv2d(1, 2, 3)).to_graph((1, 1, 6, 6), name="short_lived")
    model = convgen.compile(graph)
    call = model._fast
    x = np.ones((1, 1, 6, 6), np.float32)
    assert call(x).shape == (1, 2, 4, 4)
    del model
    gc.collect()
    with pytest.raises(ReferenceError):
        call(x)
    with pytest.raises(ReferenceError):
        call(x.astype(np.float64))   # the Python path too


def test_several_inputs_and_outputs_match_torch(backend, rng):
    """functional.conv2d runs a 3-input model, max_pool2d with indices a 2-output one (int64 indices)."""
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    for _ in range(3):     # the first call compiles, the others are index hits through the C path
        y = F.conv2d(x, w, b, padding=1, backend=backend)
        assert_close(y, TF.conv2d(t64(x), t64(w), t64(b), padding=1).numpy())
        values, indices = F.max_pool2d(x, 3, 2, return_indices=True, backend=backend)
        tv, ti = TF.max_pool2d(torch.from_numpy(x), 3, 2, return_indices=True)
        assert np.array_equal(values, tv.numpy()) and np.array_equal(indices, ti.numpy())
        assert indices.dtype == np.int64
    key = F._signature(("conv", 2, backend), (1, 1, 1, 1, None), None, x, w, b)
    assert F._signatures[key].__class__.__name__ == "Call"


def test_a_graph_without_inputs_matches_onnxruntime(backend):
    """A graph of constants: no input arrays, the output alone (and out=)."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = helper.make_graph([helper.make_node("Constant", [], ["z"], value=numpy_helper.from_array(value))],
                              "constant", [], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expected = onnxruntime.InferenceSession(model_proto.SerializeToString(),
                                            providers=["CPUExecutionProvider"]).run(None, {})[0]
    model = convgen.compile(convgen.from_onnx(model_proto), backend=backend)
    assert model._fast is not None and model.input_names == ()
    assert np.array_equal(model(), expected)
    out = np.empty((2, 3), np.float32)
    assert model(out=out) is out and np.array_equal(out, expected)
    del onnx


def test_several_outputs_into_out(backend, rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    values, indices = F.max_pool2d(x, 2, return_indices=True, backend=backend)
    model = next(m for k, m in F._kernels.items() if k[0] == "pool" and k[2] == (x.shape,) and k[3] == backend
                 and k[1].return_indices)
    outs = (np.empty_like(values), np.empty_like(indices))
    assert model(x, out=outs) is outs
    assert np.array_equal(outs[0], values) and np.array_equal(outs[1], indices)


@capped_settings(20)
@given(h=st.integers(2, 12), w=st.integers(2, 12), channels=st.integers(1, 5), kernel=st.integers(1, 2),
       layout=st.sampled_from(sorted(LAYOUTS) + ["exact"]), use_out=st.booleans())
def test_drawn_pools_through_either_path_match_torch(h, w, channels, kernel, layout, use_out):
    x = np.random.default_rng(h * 100 + w).standard_normal((1, channels, h, w)).astype(np.float32)
    expected = TF.max_pool2d(torch.from_numpy(x), kernel).numpy()
    given_x = x if layout == "exact" else LAYOUTS[layout](x)
    for _ in range(2):
        if use_out:
            out = np.empty(expected.shape, np.float32)
            F.max_pool2d(x, kernel)      # compiled, so the model is in the index
            key = F._signature(("max", 2, False, True, False, "c"), (kernel, None, 0, 1, None, None), None, x)
            assert F._signatures[key](given_x, out=out) is out
            assert np.array_equal(out, expected)
        else:
            assert np.array_equal(F.max_pool2d(given_x, kernel), expected)


"""The LLVM backend: C and LLVM agree on hypothesis-drawn layers; the JIT path (no compiler or
linker on the machine), save/load, show_code and threads."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convgen
import convgen.functional as F
from convgen import ShapeError, nn
from convgen.backends.llvm import native

from models import lenet5

# -- C and LLVM against each other -----------------------------------------------------------

def assert_same(c_out, llvm_out) -> None:
    """Both backends run the same loops in the same order: equal up to FMA contraction."""
    c_outs = c_out if isinstance(c_out, tuple) else (c_out,)
    llvm_outs = llvm_out if isinstance(llvm_out, tuple) else (llvm_out,)
    for a, b in zip(c_outs, llvm_outs):
        assert a.shape == b.shape and a.dtype == b.dtype
        if a.dtype == np.int64:
            np.testing.assert_array_equal(b, a)
        else:
            finite = np.abs(a[np.isfinite(a)])
            scale = max(1.0, float(finite.max())) if finite.size else 1.0
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * scale, equal_nan=True)


def both(build) -> None:
    """Run `build(backend)` for C and LLVM; a shape that cannot exist is not an example."""
    try:
        c_out = build("c")
    except ShapeError:
        assume(False)
    assert_same(c_out, build("llvm"))


@st.composite
def conv_layers(draw):
    ndim = draw(st.sampled_from([1, 2, 2, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, ocg = draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 3, 5, 8, 13, 16, 17, 33, 40]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    pads = tuple((draw(st.integers(0, (k - 1) * d)), draw(st.integers(0, (k - 1) * d)))
                 for k, d in zip(kernel, dilation))
    size = {1: (1, 40), 2: (1, 23), 3: (1, 9)}[ndim]
    spatial = tuple(draw(st.integers(*size)) for _ in range(ndim))
    return dict(x=(draw(st.integers(1, 2)), cg * groups) + spatial, w=(ocg * groups, cg) + kernel,
                stride=stride, pads=pads, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31)))


@settings(max_examples=25)
@given(case=conv_layers())
def test_conv_runtime_weights_agree(case):
    """Weights as inputs: packed at run time."""
    rng = np.random.default_rng(case["seed"])
    x, w = rng.standard_normal(case["x"]).astype(np.float32), rng.standard_normal(case["w"]).astype(np.float32)
    b = rng.standard_normal(case["w"][0]).astype(np.float32) if case["bias"] else None
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(case["x"]) - 2]
    both(lambda backend: conv(x, w, b, case["stride"], case["pads"], case["dilation"], case["groups"],
                              backend=backend))


@settings(max_examples=20)
@given(case=conv_layers(), activation=st.sampled_from([None, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ReLU6]))
def test_conv_constant_weights_and_fused_activation_agree(case, activation):
    """Weights in the graph: packed at compile time, with the activation fused into the kernel."""
    ndim = len(case["x"]) - 2
    nn.manual_seed(case["seed"])
    conv = getattr(nn, f"Conv{ndim}d")(case["x"][1], case["w"][0], case["w"][2:], case["stride"], case["pads"],
                                       case["dilation"], case["groups"], bias=case["bias"])
    layers = [conv] + ([activation()] if activation else [])
    x = np.random.default_rng(case["seed"]).standard_normal(case["x"]).astype(np.float32)

    def run(backend: str):
        graph = nn.Sequential(*layers).to_graph(case["x"], name="conv")
        return convgen.compile(graph, backend=backend, threads=1)(x)
    both(run)


@st.composite
def pool_layers(draw):
    ndim = draw(st.sampled_from([1, 2, 2, 3]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    pads = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    size = {1: (1, 30), 2: (1, 17), 3: (1, 8)}[ndim]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5))) + tuple(draw(st.integers(*size)) for _ in range(ndim))
    return dict(shape=shape, kernel=kernel, stride=stride, pads=pads, dilation=draw(st.integers(1, 2)),
                ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                divisor=draw(st.sampled_from([None, None, 3])), nans=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31)))


@settings(max_examples=25)
@given(case=pool_layers())
def test_max_pool_values_and_indices_agree(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["shape"]).astype(np.float32)
    if case["nans"]:
        x[rng.random(x.shape) < 0.1] = np.nan
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(case["shape"]) - 2]
    both(lambda backend: pool(x, case["kernel"], case["stride"], case["pads"], case["dilation"], case["ceil_mode"],
                              return_indices=True, backend=backend))


@settings(max_examples=25)
@given(case=pool_layers())
def test_avg_pool_agrees(case):
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"]).astype(np.float32)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(case["shape"]) - 2]
    both(lambda backend: pool(x, case["kernel"], case["stride"], case["pads"], case["ceil_mode"],
                              case["count_include_pad"], case["divisor"], backend=backend))


@settings(max_examples=20)
@given(rows=st.integers(1, 5), in_features=st.integers(1, 70), out_features=st.integers(1, 70),
       bias=st.booleans(), seed=st.integers(0, 2**31))
def test_linear_agrees(rows, in_features, out_features, bias, seed):
    nn.manual_seed(seed)
    net = nn.Sequential(nn.Linear(in_features, out_features, bias=bias), nn.LeakyReLU(0.1))
    x = np.random.default_rng(seed).standard_normal((rows, in_features)).astype(np.float32)
    both(lambda backend: convgen.compile(net.to_graph((rows, in_features), name="dense"), backend=backend)(x))


def test_activations_and_elementwise_ops_agree_on_special_values(rng):
    """The activation table's NaN, infinity and saturation behaviour matches the C templates'."""
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-8, -0.2, 0.24, 0.26, 9.9, 10.1, -88.0, 100.0],
                       np.float32)
    x = np.concatenate([special, rng.standard_normal(51).astype(np.float32) * 4]).reshape(1, 4, 4, 4)
    for layer in (nn.ReLU(), nn.ReLU6(), nn.Hardtanh(-0.5, 0.5), nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(),
                  nn.Hardsigmoid(), nn.Hardswish(), nn.Hardsigmoid(alpha=0.2, beta=0.5),
                  nn.BatchNorm2d(4), nn.Softmax(1), nn.GlobalMaxPool(), nn.GlobalAvgPool()):
        graph = nn.Sequential(layer).to_graph(x.shape, name="elementwise")
        assert_same(convgen.compile(graph, backend="c")(x), convgen.compile(graph, backend="llvm")(x))


def test_dag_with_add_concat_and_copies_agrees(rng):
    """Residual adds, concatenation, and a graph output that is an input (a copy in the run function)."""
    x_in = nn.Input((2, 6, 9, 9), name="image")
    a = nn.relu(nn.Conv2d(6, 6, 3, padding=1)(x_in))
    joined = nn.cat([nn.add(a, x_in), nn.Conv2d(6, 3, 1)(x_in)], dim=1)
    graph = nn.graph(joined, nn.flatten(x_in), name="dag")
    x = rng.standard_normal((2, 6, 9, 9)).astype(np.float32)
    assert_same(convgen.compile(graph, backend="c")(x), convgen.compile(graph, backend="llvm")(x))


# -- threads -------------------------------------------------------------------------------------

def threaded_net() -> nn.Module:
    """Layers big enough that every parallelized loop of the templates gets two threads."""
    nn.manual_seed(7)
    return nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 1, 1),
                         nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Conv2d(32, 2, 3, padding=1),
                         nn.Flatten(), nn.Linear(2 * 64 * 64, 300))


@pytest.mark.parametrize("winograd", [True, False], ids=["winograd", "direct"])
def test_two_threads_give_the_same_results_as_one(rng, winograd):
    graph = threaded_net().to_graph((2, 16, 64, 64), name="threaded")
    x = rng.standard_normal((2, 16, 64, 64)).astype(np.float32)
    one = convgen.compile(graph, backend="llvm", threads=1, winograd=winograd)
    two = convgen.compile(graph, backend="llvm", threads=2, winograd=winograd)
    threads = {k.template: k.params.get("THREADS") for k in two._lowered.kernels}
    first_conv = "conv_winograd" if winograd else "conv_direct"
    assert threads == {first_conv: 2, "pool": 2, "conv_depthwise": 2, "conv_rowwise": 2, "linear": 2}
    assert "GOMP_parallel" in two.source and "GOMP_parallel" not in one.source
    assert two.source.count('call i32 @"omp_get_thread_num"()') >= 5  # pad copies, rows, blocks: each outlined
    np.testing.assert_array_equal(two(x), one(x))
    assert_same(convgen.compile(graph, backend="c", threads=2, winograd=winograd)(x), two(x))


# -- the JIT path: no C compiler and no linker --------------------------------------------------

@pytest.fixture
def no_toolchain(monkeypatch, tmp_path):
    """CC names a missing compiler and PATH holds neither cc nor ld."""
    monkeypatch.setenv("CC", "/nonexistent/cc-for-convgen")
    monkeypatch.delenv("LD", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert native.find_linker() is None


def test_without_compiler_or_linker_the_model_is_jit_compiled(tmp_path, rng):
    graph = lenet5().to_graph((3, 1, 32, 32), name="lenet5")
    x = rng.standard_normal((3, 1, 32, 32)).astype(np.float32)
    expected = convgen.compile(graph, backend="c")(x)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CC", "/nonexistent/cc-for-convgen")
        mp.setenv("PATH", str(tmp_path / "empty-bin"))
        mp.delenv("LD", raising=False)
        model = convgen.compile(graph, backend="llvm", cache_dir=tmp_path / "cache")
        assert model.library_path is None and "JIT" in repr(model)
        assert_same(expected, model(x))
        with pytest.raises(convgen.ConvgenError, match="JIT-compiled.*needs one"):
            model.save(tmp_path / "saved")
    assert not list((tmp_path / "cache").glob("*.so"))
    # with a linker back on the PATH, the JIT-compiled model saves as a shared library
    loaded = convgen.load(model.save(tmp_path / "saved"))
    assert loaded.signature["backend"] == "llvm"
    np.testing.assert_array_equal(loaded(x), model(x))


def test_jit_runs_on_two_threads(no_toolchain, rng):
    graph = threaded_net().to_graph((2, 16, 64, 64), name="threaded")
    two = convgen.compile(graph, backend="llvm", threads=2)
    assert two.library_path is None and "GOMP_parallel" in two.source
    one = convgen.compile(graph, backend="llvm", threads=1)
    x = rng.standard_normal((2, 16, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(two(x), one(x))


def test_functional_api_jit(no_toolchain, rng):
    x = rng.standard_normal((1, 3, 11, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 2)).astype(np.float32)
    attrs = convgen.ops.ConvAttrs((3, 2), (1, 1), ((1, 1), (1, 0)), (1, 1))
    expected = convgen.ops.run_reference("conv", attrs, x, w)
    np.testing.assert_allclose(F.conv2d(x, w, padding=((1, 1), (1, 0)), backend="llvm"), expected,
                               rtol=1e-4, atol=1e-5)


def test_links_with_ld_when_there_is_no_c_compiler(monkeypatch, tmp_path, rng):
    ld = shutil.which("ld")
    if ld is None:
        pytest.skip("no ld on this machine")
    (tmp_path / "bin").mkdir()
    os.symlink(ld, tmp_path / "bin" / "ld")
    monkeypatch.setenv("CC", "/nonexistent/cc-for-convgen")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert native.find_linker() == ["ld", "-shared"]
    nn.manual_seed(2)
    graph = nn.Sequential(nn.Conv2d(4, 20, 3), nn.Sigmoid(), nn.AvgPool2d(2)).to_graph((1, 4, 12, 12), name="ld")
    model = convgen.compile(graph, backend="llvm", threads=2, cache_dir=tmp_path / "cache")
    assert model.library_path.parent == tmp_path / "cache"
    x = rng.standard_normal((1, 4, 12, 12)).astype(np.float32)
    monkeypatch.undo()
    assert_same(convgen.compile(graph, backend="c")(x), model(x))


# -- deployment and inspection -----------------------------------------------------------------

def test_save_load_round_trip(tmp_path, rng):
    graph = lenet5().to_graph((1, 1, 32, 32), name="lenet5")
    model = convgen.compile(graph, backend="llvm", cache_dir=tmp_path / "cache")
    directory = model.save(tmp_path / "saved")
    assert sorted(p.name for p in directory.iterdir()) == ["lenet5.h", "liblenet5.so", "main.c"]
    loaded = convgen.load(directory)
    assert loaded.signature["backend"] == "llvm" and loaded.workspace_bytes == model.workspace_bytes
    x = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_show_code_prints_a_layers_llvm_ir():
    nn.manual_seed(0)
    graph = nn.Sequential(nn.Conv2d(3, 20, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2)).to_graph(
        (1, 3, 40, 40), name="shown")
    model = convgen.compile(graph, backend="llvm", threads=1)
    assert model.source.startswith("; Generated by convgen") and "target triple" in model.source
    conv = model.show_code("0")
    assert conv.startswith('; layer "0" (conv): @layer0_conv_0\n')
    functions = re.findall(r'^define [^@]*@"([^"]+)"', conv, re.M)
    # the kernel, its full register tile and, when the row tile does not divide 40, the remainder
    # tile (the tile depends on the host's vector registers: 14 + 12 on AVX-512, 4 on AVX2); read in place
    # (no padded copy), each of them for interior and border rows, and the border tiles at the row's ends
    (kernel,) = [k for k in model._lowered.kernels if k.op == "conv"]
    p = kernel.params
    row_tile, width, rows = p["RW"], p["VW"], p["RH"]
    if p["CLIP"]:
        tiles = [f"1x{row_tile}", *(f"1x{r}.at{ow0}" for ow0, r in p["LEFT_TILES"] + p["RIGHT_TILES"])]
        tiles = [t.replace(".at", clipped + ".at") if ".at" in t else t + clipped for clipped in ("", ".rows")
                 for t in tiles]
    else:
        tiles = [f"{rows}x{t}" for t in [row_tile] + ([40 % row_tile] if 40 % row_tile else [])]
    assert functions == ["layer0_conv_0"] + [f"layer0_conv_0.tile{t}" for t in tiles]
    assert f"llvm.fma.v{width}f32" in conv
    assert "convgen_tanhf" in conv and "pool" not in conv
    assert model.show_code("2").startswith('; layer "2" (pool)')
    with pytest.raises(KeyError):
        model.show_code("no such layer")
    assert "weights" in model.source and "\\00\\00\\00" not in model.source  # the blob stays out of the listing


def test_cache_key_separates_backends_and_reuses_llvm_libraries(tmp_path):
    nn.manual_seed(0)
    graph = nn.Sequential(nn.Conv2d(2, 4, 3)).to_graph((1, 2, 6, 6), name="cached")
    c_model = convgen.compile(graph, backend="c", cache_dir=tmp_path)
    first = convgen.compile(graph, backend="llvm", cache_dir=tmp_path)
    second = convgen.compile(graph, backend="llvm", cache_dir=tmp_path)
    assert first.library_path == second.library_path != c_model.library_path
    assert sorted(Path(p).name for p in tmp_path.glob("*.so")) == sorted(
        [c_model.library_path.name, first.library_path.name])


def test_weights_object_from_a_cache_path_with_quotes_and_backslashes(tmp_path, rng):
    """The weights are assembled by .incbin from a file in the build directory: a cache path the
    assembler and the IR string must both escape still gives the weights, 64-byte aligned."""
    nn.manual_seed(3)
    graph = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).to_graph((1, 3, 10, 10), name="quoted")
    cache = tmp_path / 'we"ird \\ dir\u00e9'
    model = convgen.compile(graph, backend="llvm", cache_dir=cache)
    assert model.library_path.parent == cache
    weights = model._library.function(model._ffi, f"{model.prefix}_embedded_weights", "const void*(*)(void)")()
    assert int(model._ffi.cast("uintptr_t", weights)) % 64 == 0
    x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32)
    assert_same(convgen.compile(graph, backend="c")(x), model(x))

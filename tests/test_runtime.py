"""Calling compiled models: argument checks, out=, save/load, threads, compiler errors, the cache."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

import convgen
import convgen.functional as F
from convgen import nn
from convgen.backends import c as c_backend

from conftest import BACKENDS, assert_close

SHAPE = (2, 3, 9, 9)


@pytest.fixture(scope="module", params=BACKENDS)
def small(request):
    nn.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    graph = net.to_graph(SHAPE, name="small")
    return graph, convgen.compile(graph, backend=request.param)


def reference(graph, x):
    values = {graph.input_names[0]: x, **graph.constants}
    for node in graph.nodes:
        values[node.output] = convgen.ops.run_reference(node.op, node.attrs, *(values[v] for v in node.inputs))
    return values[graph.outputs[0]]


def test_positional_named_and_converted_inputs(small, rng):
    graph, model = small
    x = rng.standard_normal(SHAPE).astype(np.float32)
    expected = reference(graph, x)
    assert_close(model(x), expected)
    assert_close(model(input=x), expected)
    assert_close(model(x.astype(np.float64)), expected)             # converted to float32
    assert_close(model(x.tolist()), expected)                       # nested lists
    wide = np.zeros(SHAPE[:3] + (18,), np.float32)
    wide[..., ::2] = x
    assert_close(model(wide[..., ::2]), expected)                   # non-contiguous: copied


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros((2, 3, 9, 8), np.float32), ValueError, r"expected shape \(2, 3, 9, 9\), got \(2, 3, 9, 8\)"),
    (np.zeros((3, 9, 9), np.float32), ValueError, "expected shape"),
    (np.zeros(SHAPE, np.complex64), TypeError, "complex64"),
    (np.array([["a"]]), TypeError, "dtype"),
])
def test_bad_inputs_raise_clear_errors(small, bad, error, message):
    with pytest.raises(error, match=message):
        small[1](bad)


def test_wrong_number_or_names_of_inputs(small):
    model = small[1]
    x = np.zeros(SHAPE, np.float32)
    with pytest.raises(TypeError, match="expected 1 input"):
        model(x, x)
    with pytest.raises(TypeError, match="expected 1 input"):
        model()
    with pytest.raises(TypeError, match=r"unknown \['image'\]"):
        model(image=x)
    with pytest.raises(TypeError, match="not both"):
        model(x, input=x)


def test_out_writes_into_preallocated_array(small, rng):
    graph, model = small
    x = rng.standard_normal(SHAPE).astype(np.float32)
    out = np.full(model.output_shapes[0], np.nan, np.float32)
    assert model(x, out=out) is out
    assert_close(out, reference(graph, x))
    for bad in (np.empty(model.output_shapes[0], np.float64), np.empty((1, 1), np.float32),
                np.empty(model.output_shapes[0][:-1] + (8,), np.float32)[..., ::2]):
        with pytest.raises(ValueError, match="out="):
            model(x, out=bad)


def test_repeated_calls_with_the_same_arrays_see_every_change(small, rng):
    """The fast path reuses the last call's buffers for the very same arrays: new contents are read,
    and arrays changed in place (shape, dtype, strides, writeable) are checked again."""
    graph, model = small
    x = rng.standard_normal(SHAPE).astype(np.float32)
    out = np.empty(model.output_shapes[0], np.float32)
    for _ in range(2):
        x[...] = rng.standard_normal(SHAPE)
        assert model(x, out=out) is out
        assert_close(out, reference(graph, x))
        assert_close(model(x), reference(graph, x))        # fresh outputs: never the cached ones
    other = rng.standard_normal(SHAPE).astype(np.float32)  # another array of the same shape
    assert_close(model(other, out=out), reference(graph, other))
    model(x, out=out)
    x.shape = (SHAPE[0], -1)
    with pytest.raises(ValueError, match="expected shape"):
        model(x, out=out)
    x.shape = SHAPE
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out="):
        model(x, out=out)
    out.flags.writeable = True
    as_ints = x.view(np.int32)                               # same memory, another dtype: converted
    assert_close(model(as_ints, out=out), reference(graph, as_ints.astype(np.float32)))
    strided = np.empty(SHAPE[:-1] + (2 * SHAPE[-1],), np.float32)[..., ::2]
    strided[...] = x
    assert_close(model(strided, out=out), reference(graph, x))


def test_a_model_is_freed_with_its_last_reference(small):
    """No reference cycle through the fast path's closure: the library is released without a gc pass."""
    graph, _ = small
    model = convgen.compile(graph)
    x = np.zeros(SHAPE, np.float32)
    model(x, out=model(x))
    alive = weakref.ref(model)
    gc.disable()
    try:
        del model
        assert alive() is None
    finally:
        gc.enable()


def test_save_load_round_trip_with_header(small, tmp_path, rng):
    graph, model = small
    directory = model.save(tmp_path / "saved")
    assert sorted(p.name for p in directory.iterdir()) == ["libsmall.so", "main.c", "small.h"]
    header = (directory / "small.h").read_text()
    assert "int small_forward(const void* weights_blob, int64_t batch, const float* input, float* output, " \
           "void* workspace);" in header
    assert "static inline int small_run(small_ctx* ctx, const float* input, float* output)" in header
    assert "#define SMALL_INPUT_DIM3 9" in header
    loaded = convgen.load(directory)
    assert loaded.input_shapes == model.input_shapes and loaded.output_shapes == model.output_shapes
    x = rng.standard_normal(SHAPE).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_saved_library_runs_from_plain_c(small, tmp_path, rng):
    graph, model = small
    directory = model.save(tmp_path / "deploy")
    x = rng.standard_normal(SHAPE).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    (tmp_path / "main.c").write_text(r'''
#include <stdio.h>
#include "small.h"
int main(int argc, char** argv) {
    static float x[SMALL_INPUT_SIZE], y[SMALL_OUTPUT_SIZE];
    FILE* f = fopen(argv[1], "rb");
    if (!f || fread(x, sizeof(float), SMALL_INPUT_SIZE, f) != SMALL_INPUT_SIZE) return 2;
    fclose(f);
    small_ctx* ctx;
    if (small_create(&ctx, NULL, NULL) != SMALL_OK) return 3;
    if (small_run(ctx, x, y) != SMALL_OK) return 4;
    small_destroy(ctx);
    fwrite(y, sizeof(float), SMALL_OUTPUT_SIZE, stdout);
    return 0;
}
''')
    exe = tmp_path / "main"
    subprocess.run(["cc", "-O1", "-o", str(exe), str(tmp_path / "main.c"), f"-I{directory}", f"-L{directory}",
                    "-lsmall", f"-Wl,-rpath,{directory}"], check=True)
    result = subprocess.run([str(exe), str(tmp_path / "x.bin")], check=True, capture_output=True)
    y = np.frombuffer(result.stdout, np.float32).reshape(model.output_shapes[0])
    np.testing.assert_array_equal(y, model(x))


def test_load_rejects_non_models(tmp_path):
    with pytest.raises(convgen.ConvgenError, match="lib<name>.so"):
        convgen.load(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(convgen.ConvgenError):
        convgen.load(tmp_path / "notes.txt")


@pytest.mark.parametrize("threads", [1, 2])   # 2: each Python thread runs its own OpenMP team
def test_many_python_threads_share_one_model(backend, rng, threads):
    nn.manual_seed(5)
    graph = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)).to_graph((1, 8, 24, 24))
    model = convgen.compile(graph, backend=backend, threads=threads)
    assert model.workspace_bytes > 0          # the per-thread workspaces are exercised
    assert model._fast is not None            # through the C call path (tests/test_callpath.py)
    inputs = [rng.standard_normal((1, 8, 24, 24)).astype(np.float32) for _ in range(8)]
    expected = [reference(graph, x) for x in inputs]
    failures = []

    def worker(i: int) -> None:
        out = np.empty(model.output_shapes[0], np.float32)   # each thread's cached buffers: its own arrays
        for k in range(20):
            y = model(inputs[i], out=out) if k % 2 else model(inputs[i])
            if not np.allclose(y, expected[i], rtol=1e-4, atol=1e-5):
                failures.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_functional_kernel_cache_is_thread_safe(backend, rng):
    x = rng.standard_normal((1, 2, 11, 13)).astype(np.float32)
    weights = [rng.standard_normal((3, 2, 2, 2)).astype(np.float32) for _ in range(6)]
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        results[i] = F.conv2d(x, weights[i], stride=(1, 2), padding=((1, 0), (0, 1)), backend=backend)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    from convgen.ops import ConvAttrs, run_reference
    attrs = ConvAttrs((2, 2), (1, 2), ((1, 0), (0, 1)), (1, 1))
    for i, w in enumerate(weights):
        assert_close(results[i], run_reference("conv", attrs, x, w))


def test_compiler_failure_raises_compile_error_with_stderr(tmp_path, monkeypatch):
    monkeypatch.setenv("CFLAGS", "-O2 --no-such-flag-for-convgen")
    graph = nn.Sequential(nn.Conv2d(1, 1, 1)).to_graph((1, 1, 2, 2))
    with pytest.raises(convgen.CompileError, match="no-such-flag-for-convgen") as info:
        convgen.compile(graph, cache_dir=tmp_path)
    assert "no-such-flag-for-convgen" in info.value.stderr


def test_cache_reuses_libraries_and_keys_on_weights(backend, tmp_path, monkeypatch):
    nn.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3))
    graph = net.to_graph((1, 2, 6, 6), name="cached")
    first = convgen.compile(graph, backend=backend, cache_dir=tmp_path)
    second = convgen.compile(graph, backend=backend, cache_dir=tmp_path)
    assert first.library_path == second.library_path
    assert first.library_path.parent == tmp_path
    net.load_state_dict({"0.weight": np.ones((4, 2, 3, 3)), "0.bias": np.zeros(4)})
    third = convgen.compile(net.to_graph((1, 2, 6, 6), name="cached"), backend=backend, cache_dir=tmp_path)
    assert third.library_path != first.library_path
    assert not list(tmp_path.glob(".build-*")) and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path / "env"))
    assert convgen.compile(graph, backend=backend).library_path.parent == tmp_path / "env"


def test_parallel_processes_compile_the_same_graph(backend, tmp_path):
    script = (
        "import sys, numpy as np, convgen\n"
        "from convgen import nn\n"
        "nn.manual_seed(0)\n"
        "g = nn.Sequential(nn.Conv2d(3, 7, 3), nn.ReLU()).to_graph((1, 3, 10, 10), name='race')\n"
        "m = convgen.compile(g, backend=sys.argv[2], cache_dir=sys.argv[1])\n"
        "print(float(m(np.ones((1, 3, 10, 10), np.float32)).sum()))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), backend], stdout=subprocess.PIPE, env=env)
             for _ in range(4)]
    outputs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outputs)) == 1
    assert len(list(tmp_path.glob("librace-*.so"))) == 1


def test_show_code_prints_one_layer(small):
    code = small[1].show_code("0")
    if small[1].backend == "c":
        assert code.startswith('/* layer "0" (conv)') and "static void" in code
        assert "_Static_assert" in code
    else:
        assert code.startswith('; layer "0" (conv)') and 'define internal void @"layer0_conv_0"' in code
        assert "llvm.fma.v" in code and "_pool_" not in code
    with pytest.raises(KeyError):
        small[1].show_code("no such layer")


def test_templates_are_found():
    assert (c_backend.template_dir() / "model.c.j2").is_file()


def test_compile_rejects_non_graphs():
    with pytest.raises(TypeError, match="convgen.Graph"):
        convgen.compile(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="threads"):
        convgen.compile(nn.Sequential(nn.ReLU()).to_graph((1, 1, 2, 2)), threads=0)
    with pytest.raises(ValueError, match="backend"):
        convgen.compile(nn.Sequential(nn.ReLU()).to_graph((1, 1, 2, 2)), backend="fortran")


def test_readme_test_command_is_what_ci_runs():
    root = Path(__file__).resolve().parent.parent
    command = 'pip install ".[test]" && pytest -n 2 tests'
    assert command in (root / "README.md").read_text()
    assert command in (root / ".ci" / "run").read_text()


def test_calls_release_the_gil(backend):
    """While one long call is inside C, another Python thread runs.

    With a 100 s switch interval the interpreter never takes the GIL away from the calling
    thread, so the other thread can only run before the call returns if the call released the
    GIL: no timing threshold.  A few attempts absorb a loaded host's scheduling delays."""
    graph = nn.Sequential(*[nn.Conv2d(32, 32, 3, padding=1) for _ in range(6)]).to_graph((1, 32, 128, 128))
    model = convgen.compile(graph, backend=backend, threads=1)
    x = np.ones((1, 32, 128, 128), np.float32)
    out = np.empty(model.output_shapes[0], np.float32)
    model(x, out=out)

    def ran_during_call() -> bool:
        started, stamps = threading.Event(), {}

        def compute() -> None:
            started.set()
            model(x, out=out)
            stamps["end"] = time.perf_counter()

        def python_work() -> None:
            started.wait()
            stamps["python"] = time.perf_counter()

        threads = [threading.Thread(target=python_work), threading.Thread(target=compute)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return stamps["python"] < stamps["end"]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        assert any(ran_during_call() for _ in range(5))
    finally:
        sys.setswitchinterval(interval)


def test_every_subpackage_ships_in_the_wheel():
    """pyproject lists packages explicitly: a new package directory must be listed too."""
    import tomllib
    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "convgen").rglob("__init__.py")}
    assert found <= listed, f"not shipped: {sorted(found - listed)}"

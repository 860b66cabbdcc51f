"""model.save(): libraries, header and main.c that run from plain C with no Python, against convgen's
own output; weights embedded or in a checked side file; shared, static and single-source formats."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import convgen
from convgen.deploy import FORMATS

from conftest import BACKENDS, assert_close
from models import lenet5

BATCH = 2
SHAPE = (BATCH, 1, 32, 32)
NO_PYTHON = {"PATH": "/usr/bin:/bin"}  # the programs run with an empty environment: no PYTHONPATH, no venv
LINK = {"shared": ["-L.", "-llenet", "-Wl,-rpath,$ORIGIN"], "static": ["liblenet.a", "-fopenmp", "-lm"],
        "source": ["lenet.c", "-O2", "-march=native", "-fopenmp", "-lm"]}


def _graph():
    return lenet5().to_graph(SHAPE, name="lenet")


@pytest.fixture(scope="module", params=BACKENDS)
def fixed(request):
    return convgen.compile(_graph(), backend=request.param)


@pytest.fixture(scope="module", params=BACKENDS)
def any_batch(request):
    return convgen.compile(_graph(), backend=request.param, batch=None)


def build(directory: Path, fmt: str, program: str = "main.c") -> Path:
    """Compile `program` against the saved model with cc, in the model's directory."""
    subprocess.run(["cc", "-O1", "-o", "main", program, *LINK[fmt]], cwd=directory, check=True, env=NO_PYTHON)
    return directory / "main"


def run(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./main", *args], cwd=directory, capture_output=True, text=True, env=NO_PYTHON)


def run_main(directory: Path, x: np.ndarray, out_shape: tuple[int, ...], *flags: str) -> np.ndarray:
    x.tofile(directory / "x.bin")
    result = run(directory, *flags, "x.bin", "y.bin")
    assert result.returncode == 0, result.stderr
    return np.fromfile(directory / "y.bin", np.float32).reshape(out_shape)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("weights", ["embedded", "file"])
def test_saved_model_runs_from_c_without_python(fixed, fmt, weights, tmp_path, rng):
    if fixed.backend == "llvm" and fmt == "source":
        with pytest.raises(convgen.UnsupportedError, match="only the C backend"):
            fixed.save(tmp_path, format=fmt, weights=weights)
        return
    directory = fixed.save(tmp_path / "model", format=fmt, weights=weights)
    library = {"shared": "liblenet.so", "static": "liblenet.a", "source": "lenet.c"}[fmt]
    expected = sorted([library, "lenet.h", "main.c"] + (["lenet.weights"] if weights == "file" else []))
    assert sorted(p.name for p in directory.iterdir()) == expected
    if weights == "file":
        assert (directory / "lenet.weights").stat().st_size == fixed.weights_bytes
    build(directory, fmt)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    assert_close(run_main(directory, x, (BATCH, 10)), fixed(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["shared", "static"])
def test_any_batch_model_runs_from_c_on_several_batches(any_batch, fmt, tmp_path, rng):
    directory = any_batch.save(tmp_path / "model", format=fmt, weights="file" if fmt == "shared" else "embedded")
    build(directory, fmt)
    for batch in (1, 3, 8):
        x = rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)
        assert_close(run_main(directory, x, (batch, 10)), any_batch(x), rtol=1e-6, atol=1e-6)
    (directory / "x.bin").write_bytes(b"\0" * 100)  # not a whole sample
    assert run(directory, "x.bin", "y.bin").returncode == 1


def test_header_documents_the_api_with_shapes_as_constants(fixed, any_batch, tmp_path):
    header = (fixed.save(tmp_path / "fixed") / "lenet.h").read_text()
    for text in ["#define LENET_BATCH 2", "#define LENET_INPUT_DIM0 2", "#define LENET_INPUT_DIM3 32",
                 "#define LENET_INPUT_SIZE 2048", "#define LENET_OUTPUT_SIZE 20", "LENET_ERROR_WEIGHTS_CHECKSUM = -5",
                 "static inline int lenet_create(lenet_ctx** ctx, void* workspace, const char* weights_path)",
                 "static inline int lenet_run(lenet_ctx* ctx, const float* input, float* output)",
                 "static inline void lenet_destroy(lenet_ctx* ctx)", f"#define LENET_WEIGHTS_BYTES {fixed.weights_bytes}"]:
        assert text in header
    header = (any_batch.save(tmp_path / "any") / "lenet.h").read_text()
    for text in ["#define LENET_BATCH 0", "#define LENET_INPUT_SAMPLE_SIZE 1024", "#define LENET_OUTPUT_DIM1 10",
                 "static inline int lenet_create(lenet_ctx** ctx, int64_t max_batch, void* workspace, "
                 "const char* weights_path)",
                 "static inline int lenet_run(lenet_ctx* ctx, int64_t batch, const float* input, float* output)"]:
        assert text in header
    assert "LENET_INPUT_DIM0" not in header and "Python" not in header.replace("no Python", "")


CHECKS = r'''
#include <stdio.h>
#include <stdlib.h>
#include "lenet.h"
/* prints one status per line: the API's answers to good and bad calls */
int main(void) {
    static float x[8 * 1024], y[8 * 10];
    size_t bytes = lenet_workspace_size(2);
    void* ws = aligned_alloc(64, bytes + 64);
    lenet_ctx* ctx = NULL;
    printf("%d\n", lenet_create(&ctx, 0, ws, "lenet.weights"));                 /* max_batch 0 */
    printf("%d\n", lenet_create(&ctx, 2, (char*)ws + 4, "lenet.weights"));      /* unaligned workspace */
    printf("%d\n", lenet_create(&ctx, 2, ws, "missing.weights"));               /* no such file */
    printf("%d\n", lenet_create(&ctx, 2, ws, "lenet.weights"));                 /* the caller's workspace */
    printf("%d\n", lenet_run(ctx, 3, x, y));                                    /* above max_batch */
    printf("%d\n", lenet_run(ctx, 0, x, y));
    printf("%d\n", lenet_run(NULL, 1, x, y));
    printf("%d\n", lenet_run(ctx, 2, x, y));
    printf("%d %d\n", lenet_workspace_size(2) == 2 * lenet_workspace_size(1), lenet_workspace_size(0) == 0);
    printf("%d\n", lenet_forward(lenet_embedded_weights(), 1, x, y, NULL));     /* side-file model: no weights */
    lenet_destroy(ctx);
    lenet_destroy(NULL);
    free(ws);
    return 0;
}
'''


def test_api_status_codes_and_callers_workspace(any_batch, tmp_path):
    directory = any_batch.save(tmp_path / "model", weights="file")
    (directory / "checks.c").write_text(CHECKS)
    build(directory, "shared", "checks.c")
    result = run(directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["-2", "-6", "-3", "0", "-2", "-2", "-6", "0", "1 1", "-3", ""]


@pytest.mark.parametrize("damage,status,message", [
    (lambda blob: blob[:-4], -4, "wrong size"),
    (lambda blob: blob + b"\0", -4, "wrong size"),
    (lambda blob: blob[:100] + bytes([blob[100] ^ 1]) + blob[101:], -5, "checksum"),
    (lambda blob: blob[4:8] + blob[:4] + blob[8:], -5, "checksum"),
])
def test_damaged_weights_file_is_refused(fixed, damage, status, message, tmp_path):
    directory = fixed.save(tmp_path / "model", weights="file")
    build(directory, "shared")
    blob = (directory / "lenet.weights").read_bytes()
    (directory / "lenet.weights").write_bytes(damage(blob))
    (directory / "x.bin").write_bytes(b"\0" * 4 * int(np.prod(SHAPE)))
    result = run(directory, "x.bin", "y.bin")
    assert result.returncode == 1 and message in result.stderr and f"status {status}" in result.stderr
    with pytest.raises(convgen.ConvgenError, match="bytes, but the library needs" if status == -4 else "checksum"):
        convgen.load(directory)


def test_missing_weights_file(fixed, tmp_path):
    directory = fixed.save(tmp_path / "model", weights="file")
    build(directory, "shared")
    (directory / "lenet.weights").rename(directory / "elsewhere.weights")
    (directory / "x.bin").write_bytes(b"\0" * 4 * int(np.prod(SHAPE)))
    result = run(directory, "x.bin", "y.bin")
    assert result.returncode == 1 and "weights missing" in result.stderr
    assert run(directory, "-w", "elsewhere.weights", "x.bin", "y.bin").returncode == 0
    with pytest.raises(convgen.ConvgenError, match="does not exist"):
        convgen.load(directory)


def test_side_file_model_loads_in_python(fixed, tmp_path, rng):
    loaded = convgen.load(fixed.save(tmp_path / "model", weights="file"))
    assert loaded.signature["weights"] == "file" and loaded.batch == BATCH
    x = rng.standard_normal(SHAPE).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), fixed(x))
    # a loaded model has no code left to regenerate: it saves again only as it is
    again = loaded.save(tmp_path / "again", weights="file")
    assert sorted(p.name for p in again.iterdir()) == ["lenet.h", "lenet.weights", "liblenet.so", "main.c"]
    np.testing.assert_array_equal(convgen.load(again)(x), fixed(x))
    with pytest.raises(convgen.ConvgenError, match="saved again only"):
        loaded.save(tmp_path / "static", format="static")


def test_bad_save_arguments(fixed, tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        fixed.save(tmp_path, format="dll")
    with pytest.raises(ValueError, match="weights must be one of"):
        fixed.save(tmp_path, weights="cloud")


def test_single_source_is_self_contained(tmp_path, rng):
    """The .c of format="source" needs nothing but a C compiler: no weights.bin, no convgen headers."""
    model = convgen.compile(_graph(), backend="c")
    directory = model.save(tmp_path / "model", format="source")
    source = (directory / "lenet.c").read_text()
    assert ".incbin" not in source and "#include \"" not in source
    build(directory, "source")
    x = rng.standard_normal(SHAPE).astype(np.float32)
    assert_close(run_main(directory, x, (BATCH, 10)), model(x), rtol=1e-6, atol=1e-6)

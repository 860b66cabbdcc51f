"""Every example runs (as a user would, in a subprocess) and produces its figure or output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=300)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_every_example_is_tested():
    tested = {"lenet5.py", "image_filters.py", "receptive_field.py", "local_vs_conv.py", "conv1d_signal.py",
              "batch_dask.py", "resnet18_onnx.py", "deploy_c"}
    assert {p.name for p in EXAMPLES.iterdir() if p.name != "output"} == tested


@pytest.mark.parametrize("backend", BACKENDS)
def test_lenet5(tmp_path, backend):
    out = run_example("lenet5.py", "--backend", backend, cwd=tmp_path)
    assert 'Graph "lenet5"' in out and "predicted class" in out
    error = float(out.split("max |convgen - torch| = ")[1].split()[0])
    assert error < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_filters(tmp_path, backend):
    out = run_example("image_filters.py", "--out", str(tmp_path), "--backend", backend, cwd=tmp_path)
    assert "matches numpy" in out
    assert_png(tmp_path / "image_filters.png")


def test_receptive_field(tmp_path):
    out = run_example("receptive_field.py", "--out", str(tmp_path), cwd=tmp_path)
    assert "[3, 5, 7, 9, 11, 13]" in out and "[3, 7, 15, 31, 63, 127]" in out
    assert "'5x5', '6x6', '14x14', '16x16', '32x32'" in out
    assert_png(tmp_path / "receptive_field.png")


@pytest.mark.parametrize("backend", BACKENDS)
def test_local_vs_conv(tmp_path, backend):
    out = run_example("local_vs_conv.py", "--out", str(tmp_path), "--backend", backend, cwd=tmp_path)
    seed_row = next(line for line in out.splitlines() if line.startswith("1-D"))
    assert seed_row.split()[-3:] == ["30", "10", "2"]          # the seed's counts
    assert "38,053,278,732" in out
    assert_png(tmp_path / "local_vs_conv.png")


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv1d_signal(tmp_path, backend):
    out = run_example("conv1d_signal.py", "--out", str(tmp_path), "--backend", backend, cwd=tmp_path)
    assert "n = (m-k)/s + 1 = 5: [21.0, 32.0, 43.0, 54.0, 65.0]" in out
    assert "n = (m-k)/s + 1 = 3: [21.0, 43.0, 65.0]" in out and "matches numpy" in out
    assert_png(tmp_path / "conv1d_signal.png")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_dask(tmp_path, backend):
    out = run_example("batch_dask.py", "--out", str(tmp_path), "--backend", backend, cwd=tmp_path)
    report = json.loads((tmp_path / "batch_dask.json").read_text())
    assert report["workers"] == 2 and report["images"] == 360 and report["accuracy"] >= 0.95, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_resnet18_onnx(tmp_path, backend):
    out = run_example("resnet18_onnx.py", "--out", str(tmp_path), "--backend", backend, "--size", "64",
                      "--calls", "1", cwd=tmp_path)
    assert (tmp_path / "resnet18.onnx").stat().st_size > 40e6            # 11.7M float32 parameters
    assert "inputs=[image: float32[1, 3, 64, 64]]" in out and "per image: convgen" in out
    error = float(out.split("max |convgen - torch| / max |torch| = ")[1].split(",")[0])
    assert error < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_deploy_c(tmp_path, backend):
    out = run_example("deploy_c/export.py", "--out", str(tmp_path), "--backend", backend, cwd=tmp_path)
    assert "C and Python agree on all 360 digits" in out
    accuracy = out.split("C program: accuracy: ")[1].split()[0]
    correct, total = map(int, accuracy.split("/"))
    assert total == 360 and correct / total >= 0.95
    assert (tmp_path / "classify").is_file() and (tmp_path / "model" / "lenet5.h").is_file()

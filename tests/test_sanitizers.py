"""The edge-tile suite (tests/sanitize_suite.py) under AddressSanitizer + UBSan, in a subprocess
with the ASan runtime preloaded; any report or wrong value fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import convgen.ops

SUITE = Path(__file__).resolve().parent / "sanitize_suite.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    cc = os.environ.get("CC") or "cc"
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    assert os.path.isabs(libasan), f"{cc} has no AddressSanitizer runtime: {libasan!r}"
    env = {**os.environ, "CONVGEN_SANITIZE": "1", "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0",
           "UBSAN_OPTIONS": "print_stacktrace=1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, env=env, timeout=600)


def test_edge_layers_of_every_op_run_clean_under_asan_and_ubsan():
    result = _run()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-5000:]
    assert "AddressSanitizer" not in report and "runtime error" not in report, report[-5000:]
    covered = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert covered >= set(convgen.ops.registry.OPS), f"ops without an edge case: {set(convgen.ops.registry.OPS) - covered}"


def test_the_harness_catches_an_overrun():
    result = _run("--self-check")
    assert result.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in result.stderr

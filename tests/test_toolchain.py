"""Missing toolchains: no C compiler -> the LLVM backend with a warning; no llvmlite -> C only;
neither -> ToolchainError naming both."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import convgen
from convgen import nn

from conftest import assert_close, reference_outputs


SHAPE = (1, 2, 6, 6)


def _graph():
    nn.manual_seed(2)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).to_graph(SHAPE, name="tools")


def _check_runs(model, graph):
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    assert_close(model(x), reference_outputs(graph, x)[0])


def _hide_llvmlite(monkeypatch):
    for name in ("llvmlite", "llvmlite.binding", "llvmlite.ir"):
        monkeypatch.setitem(sys.modules, name, None)   # `import llvmlite` now raises ImportError


def test_c_compiler_pointing_nowhere_uses_llvm_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc-for-convgen")
    with pytest.warns(convgen.ToolchainWarning, match="cc-for-convgen.*'llvm'"):
        model = convgen.compile(_graph(), backend="c", cache_dir=tmp_path)
    assert model.backend == "llvm"
    _check_runs(model, _graph())


def test_no_compiler_or_linker_on_path_jit_compiles_with_llvm(tmp_path, monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("LD", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))       # no cc, no ld
    with pytest.warns(convgen.ToolchainWarning, match="no C compiler"):
        model = convgen.compile(_graph(), cache_dir=tmp_path)
    assert model.backend == "llvm" and model.library_path is None   # JIT-compiled in process
    _check_runs(model, _graph())


def test_functional_api_falls_back_too(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc-for-convgen")
    x = np.random.default_rng(3).standard_normal((1, 1, 5, 5)).astype(np.float32)
    with pytest.warns(convgen.ToolchainWarning):
        y = convgen.functional.max_pool2d(x, 2, backend="c", threads=3)   # a key no other test compiles
    assert_close(y, x[:, :, :4, :4].reshape(1, 1, 2, 2, 2, 2).max(axis=(3, 5)))


def test_missing_llvmlite_uses_c_with_a_warning(tmp_path, monkeypatch):
    _hide_llvmlite(monkeypatch)
    with pytest.warns(convgen.ToolchainWarning, match="llvmlite"):
        model = convgen.compile(_graph(), backend="llvm", cache_dir=tmp_path)
    assert model.backend == "c"
    _check_runs(model, _graph())


def test_neither_toolchain_is_a_clear_error(tmp_path, monkeypatch):
    _hide_llvmlite(monkeypatch)
    monkeypatch.setenv("CC", "/nonexistent/cc-for-convgen")
    for backend in ("c", "llvm"):
        with pytest.raises(convgen.ToolchainError, match="no C compiler.*llvmlite|llvmlite.*no C compiler") as info:
            convgen.compile(_graph(), backend=backend, cache_dir=tmp_path)
        assert isinstance(info.value, convgen.CompileError)


def test_convgen_imports_and_compiles_without_llvmlite(tmp_path):
    script = ("import sys\n"
              "sys.modules['llvmlite'] = None\n"
              "import numpy as np, convgen\n"
              "from convgen import nn\n"
              "g = nn.Sequential(nn.Conv2d(1, 2, 3)).to_graph((1, 1, 5, 5))\n"
              "m = convgen.compile(g, cache_dir=sys.argv[1])\n"
              "print(m.backend, m(np.ones((1, 1, 5, 5), np.float32)).shape)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-W", "error", "-c", script, str(tmp_path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["c", "(1,", "2,", "3,", "3)"]

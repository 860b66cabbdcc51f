"""LLVM modules are verified before code generation: code generated from a module the verifier rejects
aborts the process (an assertion in instruction selection), so an invalid module must be a CompileError,
and a module LLVM's own optimizer breaks must still compile right."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import convgen
from convgen.backends.llvm import native

ROOT = Path(__file__).resolve().parents[1]


def _run_child(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter, so an abort fails the test instead of killing the run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONVGEN_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_max_pool_that_llvm_slp_vectorizer_breaks_compiles_and_agrees_with_torch(tmp_path):
    # issue 16: the SLP vectorizer turned this separable max pool's column reductions into a use before
    # its definition, and instruction selection aborted the interpreter (SIGABRT)
    result = _run_child("""
        import numpy as np, torch
        import convgen.functional as F
        rng = np.random.default_rng(0)
        for shape in [(2, 5, 8, 6), (1, 3, 8, 6), (2, 5, 9, 7)]:
            x = rng.standard_normal(shape).astype(np.float32)
            got = F.max_pool2d(x, (5, 5), stride=(1, 2), padding=(0, 1), ceil_mode=True, backend="llvm")
            want = torch.nn.functional.max_pool2d(torch.from_numpy(x), (5, 5), stride=(1, 2), padding=(0, 1),
                                                  ceil_mode=True).numpy()
            assert got.shape == want.shape and np.array_equal(got, want), shape
        print("OK")
        """, tmp_path)
    assert result.returncode == 0 and "OK" in result.stdout, (result.returncode, result.stderr[-2000:])


BAD_MODULE = """\
; layer "broken" (pool): @layer0_broken_pool
define internal void @layer0_broken_pool(ptr %y) {
entry:
  br label %start
start:
  %a = fadd float %b, 1.0
  %b = fadd float 2.0, 3.0
  store float %a, ptr %y
  ret void
}
define i32 @m_forward(ptr %y) {
entry:
  call void @layer0_broken_pool(ptr %y)
  ret i32 0
}
"""


def test_module_the_verifier_rejects_is_a_compile_error_naming_the_kernel():
    native.host_target()
    with pytest.raises(convgen.CompileError) as info:
        native.optimized_module(BAD_MODULE, None, native.target_machine())
    message = str(info.value)
    assert "does not dominate all uses" in message
    assert 'layer "broken" (@layer0_broken_pool)' in message
    assert "does not dominate" in info.value.stderr


def test_module_still_invalid_after_optimization_is_a_compile_error(monkeypatch):
    """The optimized module is verified too (then without the SLP vectorizer), never handed to code
    generation unverified."""
    native.host_target()
    good = BAD_MODULE.replace("%a = fadd float %b, 1.0\n  %b = fadd float 2.0, 3.0",
                              "%b = fadd float 2.0, 3.0\n  %a = fadd float %b, 1.0")
    calls = []

    def breaking_pipeline(module, machine, slp):  # what a broken pass would leave: an outlined function
        calls.append(slp)
        module.link_in(native.llvm.parse_assembly(BAD_MODULE.replace("@layer0_broken_pool", "@layer0_broken_pool.rows")
                                                  .replace("@m_forward", "@m_forward2").replace("%a", "%c").replace("%b", "%d")))

    monkeypatch.setattr(native, "_optimize", breaking_pipeline)
    with pytest.raises(convgen.CompileError, match=r'without the SLP vectorizer\) is invalid LLVM IR in layer "broken" \(@layer0_broken_pool.rows\)'):
        native.optimized_module(good, None, native.target_machine())
    assert calls == [True, False]

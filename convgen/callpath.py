"""The C call path (templates/callpath.c.j2): a small CPython extension that runs a fixed-batch model on
exact numpy arrays, its checks done in C (the Python fast path in convgen/runtime.py costs ~1.5 us a
call, most of a small model's; this one ~0.3 us).

Built once per Python ABI, numpy, compiler and convgen version into the default cache (as
lib_convgen_callpath-<key>.so, under the cache's lock), then imported from there.  Where it cannot be
built or imported (no C compiler or no Python headers: the LLVM backend needs neither) module() is
None and models keep the Python path; `unavailable` says why.  CONVGEN_C_CALLS=0 turns it off (read
when a model is made).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shlex
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import numpy as np

from . import cache

NAME = "_convgen_callpath"
_lock = threading.Lock()
_loaded: list[ModuleType | None] = []   # [] until tried once: then [module] or [None]
unavailable: str | None = None         # why module() is None (after a failed try)


def enabled() -> bool:
    return os.environ.get("CONVGEN_C_CALLS", "1") != "0"


def module() -> ModuleType | None:
    """The extension (built and imported on the first call in a process), or None when disabled or
    unavailable."""
    if not enabled():
        return None
    if _loaded:
        return _loaded[0]
    global unavailable
    with _lock:
        if not _loaded:
            try:
                _loaded.append(_import(_build()))
            except Exception as error:   # any failure only costs speed: models keep the Python path
                unavailable = f"{type(error).__name__}: {error}"
                _loaded.append(None)
    return _loaded[0]


def _includes() -> list[str]:
    return [sysconfig.get_paths()["include"], np.get_include()]


def _build() -> Path:
    from .backends.c import _run_tool, compiler, compiler_identity, environment
    source = environment().get_template("callpath.c.j2").render()
    cc = compiler()
    flags = ["-O2", "-shared", "-fPIC", "-fvisibility=hidden", *(f"-I{i}" for i in _includes())]
    key = cache.cache_key(NAME, source, cc, compiler_identity(cc), " ".join(flags), sys.version,
                          sysconfig.get_config_var("SOABI") or "", np.__version__)

    def build(output: Path) -> None:
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=".build-") as tmp:
            (Path(tmp) / "callpath.c").write_text(source)
            argv = shlex.split(cc) + flags + ["-o", "callpath.so", "callpath.c"]
            result = _run_tool(argv, Path(tmp), "C compiler")
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr[-2000:]}")
            os.replace(Path(tmp) / "callpath.so", output)

    return cache.library(cache.cache_root(None), NAME, key, build)


def _import(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_file_location(NAME, path, loader=loader)
    extension = importlib.util.module_from_spec(spec)
    loader.exec_module(extension)
    return extension

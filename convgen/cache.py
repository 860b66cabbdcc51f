"""The on-disk cache of compiled libraries.

A library's key hashes everything that changes the binary: the generated
source, the embedded weights, the compiler and its version, the flags, the CPU
and the convgen version.  Writes are atomic (temporary file, then os.replace),
so concurrent processes never load half a library.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from . import __version__


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get("CONVGEN_CACHE_DIR"):
        root = Path(os.environ["CONVGEN_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "convgen"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in (__version__, *parts):
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

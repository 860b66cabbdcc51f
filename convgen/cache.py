"""The on-disk cache of compiled libraries.

A library's key hashes everything that changes the binary: the generated
source, the embedded weights, the compiler and its version, the flags, the CPU
and the convgen version.  The library is `lib<prefix>-<key>.so`; beside it,
`lib<prefix>-<key>.so.sha256` holds the checksum of its bytes.

Safety rules:
- several processes compiling the same graph at once: one of them builds while
  the others wait on an exclusive lock (fcntl.flock on `.lib<prefix>-<key>.lock`)
  and then take the finished library; writes are atomic (temporary file, then
  os.replace), so nothing ever loads half a library;
- a library whose bytes no longer match its checksum (truncated, corrupted, or
  written by a version that kept no checksum) is rebuilt;
- an unwritable cache directory: an explicit `cache_dir` raises CacheError; the
  default one ($CONVGEN_CACHE_DIR, else $XDG_CACHE_HOME/convgen or ~/.cache/convgen)
  falls back, with a CacheWarning, to a private temporary directory for this process.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .errors import CacheError, CacheWarning

try:
    import fcntl
except ImportError:  # not POSIX: atomic renames still keep readers safe; concurrent builders just duplicate work
    fcntl = None

CHECKSUM_SUFFIX = ".sha256"
_fallback_lock = threading.Lock()
_fallback: Path | None = None
_verified: dict[Path, tuple] = {}   # path -> (inode, size, mtime_ns, checksum) verified by this process


def default_root() -> Path:
    if os.environ.get("CONVGEN_CACHE_DIR"):
        return Path(os.environ["CONVGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convgen"


def _writable(root: Path) -> OSError | None:
    """None if libraries can be written into `root` (created if missing), else the reason."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e
    return None


TEMPLATE_BYTECODE = "jinja-bytecode"


def template_bytecode_dir() -> Path | None:
    """Where Jinja keeps the compiled templates (Python code objects, keyed by each template's source and
    written atomically): <default root>/jinja-bytecode, so a process compiling its first model does not
    spend ~0.4 s turning the templates into Python again; None when that is not writable."""
    directory = default_root() / TEMPLATE_BYTECODE
    return directory if _writable(directory) is None else None


def _temporary_root() -> Path:
    global _fallback
    with _fallback_lock:
        if _fallback is None:
            _fallback = Path(tempfile.mkdtemp(prefix="convgen-cache-"))
        return _fallback


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory libraries are written to (see the module docstring for the fallback rule)."""
    root = Path(cache_dir) if cache_dir is not None else default_root()
    problem = _writable(root)
    if problem is None:
        return root
    if cache_dir is not None:
        raise CacheError(f"cache directory {str(root)!r} is not writable: {problem}")
    fallback = _temporary_root()
    warnings.warn(f"convgen: the cache directory {str(root)!r} is not writable ({problem}); compiled libraries "
                  f"go to {str(fallback)!r} for this process (set CONVGEN_CACHE_DIR to a writable directory)",
                  CacheWarning, stacklevel=3)
    return fallback


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


# -- libraries ------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(library: Path) -> Path:
    return library.with_name(library.name + CHECKSUM_SUFFIX)


def is_intact(library: Path) -> bool:
    """The library exists and its bytes match the checksum written beside it."""
    try:
        stat = library.stat()
        expected = checksum_path(library).read_text().strip()
    except OSError:
        return False
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns, expected)
    if _verified.get(library) == stamp:
        return True
    try:
        intact = _sha256(library) == expected
    except OSError:
        return False
    if intact:
        _verified[library] = stamp
    return intact


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def library(root: Path, prefix: str, key: str, build: Callable[[Path], None]) -> Path:
    """The cached library `lib<prefix>-<key>.so` in `root`, built by `build(path)` when missing or damaged.

    `build` must write `path` atomically; the checksum is written after it, under the lock.
    """
    path = root / f"lib{prefix}-{key}.so"
    if is_intact(path):
        return path
    with _locked(root / f".lib{prefix}-{key}.lock"):
        if is_intact(path):   # another process built it while we waited
            return path
        _verified.pop(path, None)
        build(path)
        atomic_write(checksum_path(path), (_sha256(path) + "\n").encode())
    return path


# -- maintenance (convgen cache info | clear) ---------------------------------------------------

def _entries(root: Path) -> list[Path]:
    """Every file or directory convgen put in `root`, and nothing else."""
    if not root.is_dir():
        return []
    patterns = ("lib*-*.so", "lib*-*.so" + CHECKSUM_SUFFIX, ".lib*-*.lock", "lib*-*.so.*.tmp",
                "lib*-*.so.sha256.*.tmp", ".build-*", ".probe-*", TEMPLATE_BYTECODE)
    found = {p for pattern in patterns for p in root.glob(pattern)}
    return sorted(found)


def info(cache_dir: str | os.PathLike | None = None) -> dict:
    """Where the cache is, how many libraries it holds, their total size, and how many are damaged."""
    root = Path(cache_dir) if cache_dir is not None else default_root()
    libraries = sorted(root.glob("lib*-*.so")) if root.is_dir() else []
    return {"path": str(root), "libraries": len(libraries),
            "bytes": sum(p.stat().st_size for p in _entries(root) if p.is_file()),
            "damaged": sum(not is_intact(p) for p in libraries),
            "writable": os.access(_existing_ancestor(root), os.W_OK | os.X_OK)}


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def clear(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete every library (and checksum, lock and leftover build file) from the cache; returns the count.

    Other files in the directory are left alone.  A process that has a library loaded keeps its
    mapping; the next compile rebuilds.
    """
    root = Path(cache_dir) if cache_dir is not None else default_root()
    removed = 0
    for entry in _entries(root):
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
    _verified.clear()
    return removed

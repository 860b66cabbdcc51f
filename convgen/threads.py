"""How many threads a model gets: the one place `threads=None` is resolved.

An explicit `threads=` wins.  Otherwise OMP_NUM_THREADS, when set, as OpenMP parses it (the first
value of a comma-separated list, surrounding blanks allowed, a positive int), read at every
compile and every `convgen.functional` call, so setting it between calls takes effect.  Otherwise
the cores this process may run on: its CPU affinity, capped by the cgroup CPU quota (v2 cpu.max,
v1 cpu.cfs_quota_us / cpu.cfs_period_us) rounded up, at least 1.

An invalid OMP_NUM_THREADS (empty, 0, negative, not a number) is ignored with a RuntimeWarning, as
torch and libgomp do, and the cores are used.  A value above the cores is taken as it is
(oversubscription is the user's call, as with any OpenMP program).

Fork: libgomp's thread pool does not survive os.fork(), and a team started in the child by the
thread that forked waits for the parent's workers for ever.  An at-fork handler therefore makes that
thread of the child run every OpenMP region on itself (one_thread_after_fork): models and
convgen.functional kernels give their results on one thread there, in grandchildren too, while the
parent keeps its teams and threads the child starts run theirs in full.  What threads=None means is
unchanged (the parent's cached kernels stay valid in the child).
"""
from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import warnings
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")

_OMP_VALUE = re.compile(r"\s*\+?(\d+)\s*(?:,.*)?", re.DOTALL)


def resolve_threads(threads: int | None) -> int:
    """`threads` if given (a positive int, else ValueError), else OMP_NUM_THREADS, else available_cores()."""
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        return threads
    return default_threads()


def default_threads() -> int:
    """What threads=None means now: OMP_NUM_THREADS if set and valid, else available_cores()."""
    value = _omp_variable()
    try:
        return _defaults[value]   # a dict hit: ~0.1 us less than two lru_caches on every functional call
    except KeyError:
        pass
    requested = omp_num_threads(value)
    if requested is None and value is not None:
        return _cores()   # an invalid value: not kept, so clearing omp_num_threads' cache warns again
    threads = _defaults[value] = requested if requested is not None else _cores()
    return threads


# OMP_NUM_THREADS's value (None: unset) -> what threads=None means with it; forgotten with the cores
# (_Cores.cache_clear: at fork, or when a caller re-reads them).
_defaults: dict[str | bytes | None, int] = {}


# os.environ.get costs ~0.7 us when the variable is unset (a KeyError raised and caught inside
# Mapping.get): a third of a cached convgen.functional call, which reads it every time.  The dict
# behind os.environ (bytes keys on POSIX, kept in step by os.environ's setters) answers in ~25 ns.
_ENVIRON_DATA = getattr(os.environ, "_data", None)
if os.name != "posix" or type(_ENVIRON_DATA) is not dict:
    _ENVIRON_DATA = None


def _omp_variable() -> str | bytes | None:
    if _ENVIRON_DATA is None:
        return os.environ.get("OMP_NUM_THREADS")
    return _ENVIRON_DATA.get(b"OMP_NUM_THREADS")


@functools.lru_cache(maxsize=64)   # one parse (and one warning) per distinct value
def omp_num_threads(value: str | bytes | None) -> int | None:
    """The thread count an OMP_NUM_THREADS value asks for, or None (unset, or invalid: warned)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    match = _OMP_VALUE.fullmatch(value)
    if match is None or int(match.group(1)) < 1:
        warnings.warn(f"convgen: ignoring invalid OMP_NUM_THREADS={value!r} (expected a positive int); "
                      f"using the {_cores()} core(s) this process may run on", RuntimeWarning, stacklevel=3)
        return None
    return int(match.group(1))


def available_cores(cgroup_root: str | os.PathLike = CGROUP_ROOT,
                    proc_cgroup: str | os.PathLike = PROC_CGROUP) -> int:
    """CPUs in this process's affinity mask, capped by its cgroup CPU quota rounded up; at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


# The cores are read once per process (as OpenMP and torch do) and again in a forked child, whose
# affinity a pool may have set; OMP_NUM_THREADS is read at every call (it is cheap).
class _Cores:
    """available_cores(), read once until cache_clear(), which also forgets default_threads' answers."""

    def __init__(self) -> None:
        self._cores: int | None = None

    def __call__(self) -> int:
        if self._cores is None:
            self._cores = available_cores()
        return self._cores

    def cache_clear(self) -> None:
        self._cores = None
        _defaults.clear()


_cores = _Cores()

# The OpenMP runtime both backends use: gcc -fopenmp links it, the LLVM backend calls its GOMP_parallel.
OPENMP_RUNTIME = "libgomp.so.1"


def one_thread_after_fork() -> bool:
    """In a forked child, make every OpenMP region the forking thread starts run on that thread alone;
    True if libgomp is loaded (else there is no thread pool to be stale, and nothing to do).

    libgomp keeps the team's worker threads in a pool hung off the thread that started the team;
    fork copies the pool but not its threads, so the child's next team of 2 or more waits for them
    for ever (a C program and both backends hang so).  A region whose team resolves to one thread
    returns before the pool is touched, and max-active-levels 0 makes every region resolve to one
    whatever its num_threads clause: no change to the generated code, nothing on the call path.
    The setting is the forking thread's (libgomp 12 keeps it per initial thread): threads the child
    starts have no stale pool and run their teams in full.  A grandchild inherits it."""
    try:
        gomp = ctypes.CDLL(OPENMP_RUNTIME, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except (OSError, AttributeError):   # not loaded (or no RTLD_NOLOAD on this platform)
        return False
    gomp.omp_set_max_active_levels(0)
    return True


def _after_fork_in_child() -> None:
    _cores.cache_clear()
    one_thread_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def cgroup_cpu_quota(cgroup_root: str | os.PathLike = CGROUP_ROOT,
                     proc_cgroup: str | os.PathLike = PROC_CGROUP) -> float | None:
    """The CPUs (quota / period) the tightest CPU quota on this process's cgroup path allows, or None
    (no quota, or no cgroup file system).  Quotas nest: every ancestor's counts, so the path is
    walked up to the mount's root (inside a container that root is the container's own cgroup)."""
    root = Path(cgroup_root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "":          # cgroup v2: 0::/path, cpu.max in the unified tree
            limits += [_v2_limit(d) for d in _ancestors(root, path)]
        elif "cpu" in controllers.split(","):   # cgroup v1: the cpu controller's own hierarchy
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                limits += [_v1_limit(d) for d in _ancestors(mount, path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _ancestors(mount: Path, path: str) -> list[Path]:
    """mount/path, its parents, and mount itself (the cgroup path may be the host's, not the namespace's)."""
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _v2_limit(directory: Path) -> float | None:
    """cpu.max is "<quota> <period>" in microseconds, or "max <period>" for no limit."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" and int(period) > 0 and int(quota) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_limit(directory: Path) -> float | None:
    """cpu.cfs_quota_us is -1 for no limit."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None

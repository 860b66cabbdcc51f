"""threads=None: OMP_NUM_THREADS when set (parsed as OpenMP does), else the cores this process may run
on (affinity, cgroup CPU quota); an explicit threads= wins.  Compile, convgen.functional and the
functional cache (which keys the resolved count) all go through convgen.threads.resolve_threads."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convgen
import convgen.functional as F
from convgen import nn, threads
from convgen.threads import available_cores, cgroup_cpu_quota, resolve_threads

from conftest import assert_close


@pytest.fixture
def no_omp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), (" 4 ", 4), ("2,1", 2), ("+5", 5)])
def test_omp_num_threads_is_taken(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert resolve_threads(None) == expected


@pytest.mark.parametrize("value", ["abc", "", "0", "-2", "1.5", ",2"])
def test_an_invalid_omp_num_threads_warns_and_falls_back_to_the_cores(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    threads.omp_num_threads.cache_clear()   # the warning is given once per distinct value
    with pytest.warns(RuntimeWarning, match="invalid OMP_NUM_THREADS"):
        assert resolve_threads(None) == available_cores()


def test_without_the_variable_the_cores_are_taken(no_omp):
    assert resolve_threads(None) == available_cores() == len(os.sched_getaffinity(0))


def test_explicit_threads_win(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads(2) == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            resolve_threads(bad)


def _graph():
    return nn.Sequential(nn.Conv2d(2, 4, 3)).to_graph((1, 2, 9, 9), name="threads")


def test_compile_takes_the_variable_and_explicit_threads_win(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert convgen.compile(_graph(), cache_dir=tmp_path).signature["threads"] == 3
    assert convgen.compile(_graph(), threads=2, cache_dir=tmp_path).signature["threads"] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert convgen.compile(_graph(), cache_dir=tmp_path).signature["threads"] == 1


def test_functional_cache_keys_the_resolved_count(monkeypatch, backend, rng):
    """Setting OMP_NUM_THREADS between calls gives a kernel of the new count, not the last one."""
    x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32)
    counts = []
    for value in ("1", "3", "1"):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        y = F.max_pool2d(x, 3, stride=1, padding=1, backend=backend)
        counts.append(_last_kernel_threads(x, backend))
        assert_close(y, F.max_pool2d(x, 3, stride=1, padding=1, backend=backend, threads=1))
    assert counts == [1, 3, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    F.max_pool2d(x, 3, stride=1, padding=1, backend=backend, threads=2)
    assert _last_kernel_threads(x, backend, threads=2) == 2


def _last_kernel_threads(x, backend, threads=None) -> int:
    """The thread count of the pool kernel convgen.functional compiled for x."""
    (model,) = [m for (op, attrs, shapes, key_backend, key_threads), m in F._kernels.items()
                if op == "pool" and shapes == (x.shape,) and key_backend == backend
                and key_threads == resolve_threads(threads) and attrs.kernel == (3, 3) and attrs.stride == (1, 1)]
    return model.signature["threads"]


def test_cgroup_quota_v2_and_v1(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    job = tmp_path / "user.slice" / "job"
    job.mkdir(parents=True)
    (job / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) is None
    (tmp_path / "user.slice" / "cpu.max").write_text("150000 100000\n")   # an ancestor's quota counts
    assert cgroup_cpu_quota(tmp_path, proc) == 1.5
    (job / "cpu.max").write_text("50000 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 0.5
    assert available_cores(tmp_path, proc) == 1                           # 0.5 CPU: rounded up, at least 1

    v1 = tmp_path / "v1"
    cpu = v1 / "cpu,cpuacct" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (v1 / "proc").write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1, v1 / "proc") is None
    (cpu / "cpu.cfs_quota_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1, v1 / "proc") == 1.0
    assert available_cores(v1, v1 / "proc") == 1
    assert cgroup_cpu_quota(tmp_path / "missing", tmp_path / "missing-proc") is None


def test_affinity_restricts_the_default_in_a_child_and_a_forked_grandchild():
    """One process: the cores seen before and after sched_setaffinity (the per-process count is
    re-read in a forked child), and what a compile with threads=None then takes."""
    code = textwrap.dedent("""
        import os, convgen
        from convgen import nn
        from convgen.threads import resolve_threads
        first = sorted(os.sched_getaffinity(0))[0]
        before = resolve_threads(None)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.sched_setaffinity(0, {first})
            os.write(write, str(resolve_threads(None)).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        forked = int(os.read(read, 16))
        os.sched_setaffinity(0, {first})
        import convgen.threads
        convgen.threads._cores.cache_clear()
        graph = nn.Sequential(nn.Conv2d(1, 2, 3)).to_graph((1, 1, 6, 6))
        print(before, forked, resolve_threads(None), convgen.compile(graph).signature["threads"])
    """)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    before, forked, after, compiled = map(int, out.stdout.split())
    assert before == len(os.sched_getaffinity(0))
    assert (forked, after, compiled) == (1, 1, 1)


def test_clearing_the_cores_forgets_what_threads_none_meant(monkeypatch, no_omp):
    """default_threads keeps its answer per OMP_NUM_THREADS value; re-reading the cores (as the fork
    handler does) must drop it, or a child with a narrower affinity kept the parent's count."""
    try:
        monkeypatch.setattr(threads, "available_cores", lambda: 7)
        threads._cores.cache_clear()
        assert resolve_threads(None) == 7
        monkeypatch.setattr(threads, "available_cores", lambda: 3)
        assert resolve_threads(None) == 7          # read once ...
        threads._cores.cache_clear()
        assert resolve_threads(None) == 3          # ... until cleared
        monkeypatch.setenv("OMP_NUM_THREADS", "5")
        assert resolve_threads(None) == 5
    finally:
        threads._cores.cache_clear()    # read again lazily, after monkeypatch restores available_cores

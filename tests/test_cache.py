"""The library cache: damaged libraries are rebuilt, concurrent builders take turns, unwritable
directories fail clearly or fall back, and info/clear see only convgen's files."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import convgen
from convgen import cache, nn

from conftest import assert_close, reference_outputs


SHAPE = (1, 2, 7, 7)


def _graph(name: str = "cached"):
    nn.manual_seed(11)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()).to_graph(SHAPE, name=name)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, lambda p: cache.checksum_path(p).unlink(),
                                    lambda p: p.write_bytes(b"")], ids=["truncated", "flipped", "no-checksum", "empty"])
def test_damaged_library_is_detected_and_rebuilt(backend, tmp_path, damage):
    graph = _graph()
    built = convgen.compile(graph, backend=backend, cache_dir=tmp_path / "built").library_path
    assert cache.is_intact(built)
    # A copy never loaded here (damaging a mapped library in place would crash this process).
    (tmp_path / "cache").mkdir()
    path = tmp_path / "cache" / built.name
    good = built.read_bytes()
    path.write_bytes(good)
    cache.checksum_path(path).write_bytes(cache.checksum_path(built).read_bytes())
    assert cache.is_intact(path)
    os.utime(path, ns=(1, 1))    # a different stamp than the one this process verified
    damage(path)
    assert not cache.is_intact(path)
    second = convgen.compile(graph, backend=backend, cache_dir=tmp_path / "cache")
    assert second.library_path == path and cache.is_intact(path)
    assert path.read_bytes() == good
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    assert_close(second(x), reference_outputs(graph, x)[0])


def test_explicit_unwritable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(convgen.CacheError, match="not writable") as info:
        convgen.compile(_graph(), cache_dir=blocker / "cache")
    assert isinstance(info.value, OSError)


def test_unwritable_default_cache_falls_back_to_a_temporary_directory(backend, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(convgen.CacheWarning, match="not writable"):
        model = convgen.compile(_graph(), backend=backend)
    assert not str(model.library_path).startswith(str(tmp_path))
    x = np.ones(SHAPE, np.float32)
    assert_close(model(x), reference_outputs(_graph(), x)[0])


def test_info_and_clear_touch_only_convgen_files(tmp_path):
    convgen.compile(_graph("one"), cache_dir=tmp_path)
    convgen.compile(_graph("two"), cache_dir=tmp_path, backend="llvm")
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "libkeep.so").write_bytes(b"not ours: no key in the name")
    summary = cache.info(tmp_path)
    assert summary["path"] == str(tmp_path)
    assert summary["libraries"] == 2 and summary["damaged"] == 0 and summary["writable"]
    assert summary["bytes"] >= sum(p.stat().st_size for p in tmp_path.glob("lib*-*.so"))
    checksum = cache.checksum_path(next(tmp_path.glob("libone-*.so")))
    checksum.write_text("0" * 64)
    assert cache.info(tmp_path)["damaged"] == 1
    assert cache.clear(tmp_path) >= 4          # two libraries, their checksums and locks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["libkeep.so", "notes.txt"]
    assert cache.info(tmp_path)["libraries"] == 0
    assert cache.clear(tmp_path / "missing") == 0


def test_concurrent_builders_in_threads_build_once(tmp_path, monkeypatch):
    """Threads of one process racing on one key: every caller gets an intact library, built once."""
    import threading
    from convgen.backends import c as c_backend
    calls = []
    real = c_backend.compile_source

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(c_backend, "compile_source", counting)
    graph = _graph("threads")
    results = []
    threads = [threading.Thread(target=lambda: results.append(convgen.compile(graph, cache_dir=tmp_path)))
               for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 4 and len({m.library_path for m in results}) == 1
    assert len(calls) == 1


def test_cli_cache_info_and_clear(tmp_path, capsys):
    from convgen import cli
    convgen.compile(_graph("cli"), cache_dir=tmp_path)
    assert cli.main(["cache", "info", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"path:      {tmp_path}" in out and "libraries: 1 (0 damaged" in out and "writable:  yes" in out
    assert cli.main(["cache", "clear", "--dir", str(tmp_path)]) == 0
    assert "removed 3 file(s)" in capsys.readouterr().out      # library, checksum, lock
    assert not list(tmp_path.iterdir())


def test_compiled_templates_are_kept_for_the_next_process(tmp_path):
    """A fresh process loads the templates' Jinja bytecode from <default cache>/jinja-bytecode instead of
    compiling them again, and `cache clear` removes it with the libraries."""
    script = "from convgen.backends import c; [c.environment().get_template(n) for n in ('model.c.j2', 'conv.c.j2')]"
    env = {**os.environ, "CONVGEN_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    stored = sorted((tmp_path / cache.TEMPLATE_BYTECODE).glob("__jinja2_*.cache"))
    assert len(stored) >= 2
    stamps = [p.stat().st_mtime_ns for p in stored]
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    assert [p.stat().st_mtime_ns for p in stored] == stamps   # loaded: Jinja writes only what it compiled
    assert cache.clear(tmp_path) >= 1
    assert not (tmp_path / cache.TEMPLATE_BYTECODE).exists()

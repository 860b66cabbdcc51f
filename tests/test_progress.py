"""Progress bars: drawn on a terminal, silent on pipes, under quiet and CONVGEN_QUIET."""
from __future__ import annotations

import io

import numpy as np
import pytest

import convgen
from convgen import nn, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    """A stderr that is a terminal (pytest re-installs sys.stderr after fixtures run: patch the lookup)."""
    stream = Terminal()
    monkeypatch.delenv("CONVGEN_QUIET", raising=False)
    monkeypatch.setattr(progress, "_quiet", False)
    monkeypatch.setattr(progress, "_stderr", lambda: stream)
    return stream


def test_track_draws_on_a_terminal(terminal):
    assert list(progress.track(range(5), "tuning", delay=0)) == [0, 1, 2, 3, 4]
    assert "tuning" in terminal.getvalue() and "0/5" in terminal.getvalue()


def test_bar_shows_stages(terminal):
    with progress.bar("compiling", total=2, delay=0) as b:
        b.update(1, stage="lower")
        b.update(1, stage="build")
    assert "compiling" in terminal.getvalue() and "build" in terminal.getvalue()


def test_silent_when_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress, "_stderr", lambda: stream)
    items = range(3)
    assert progress.track(items, "x", delay=0) is items       # no wrapper at all
    with progress.bar("x", total=1, delay=0) as b:
        b.update(1, stage="y")
    assert stream.getvalue() == ""


@pytest.mark.parametrize("how", ["argument", "set_quiet", "environment"])
def test_quiet(terminal, monkeypatch, how):
    if how == "set_quiet":
        progress.set_quiet(True)
    if how == "environment":
        monkeypatch.setenv("CONVGEN_QUIET", "1")
    quiet = True if how == "argument" else None
    assert list(progress.track(range(3), "x", quiet=quiet, delay=0)) == [0, 1, 2]
    with progress.bar("x", total=1, quiet=quiet, delay=0) as b:
        b.update(1)
    assert terminal.getvalue() == ""


def test_compile_draws_its_stages(terminal, monkeypatch, backend, tmp_path):
    monkeypatch.setattr(progress, "DELAY", 0)
    graph = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).to_graph((1, 1, 6, 6), name="barred")
    model = convgen.compile(graph, backend=backend, cache_dir=tmp_path)
    assert model(np.ones((1, 1, 6, 6), np.float32)).shape == (1, 2, 4, 4)
    drawn = terminal.getvalue()
    assert "compiling barred (2 layers)" in drawn and f"generate and build ({backend})" in drawn

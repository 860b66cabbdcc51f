"""Freed models leave nothing behind (their library unmapped, no file descriptor open) and calls do not
grow the process: short runs of benchmarks/soak.py, whose full runs the README quotes."""
from __future__ import annotations

import gc

import pytest

import convgen
from convgen import nn

from conftest import load_program

soak = load_program("benchmarks/soak.py", "soak_under_test")


@pytest.fixture
def no_gc():
    """Without the cyclic collector: a library must go when its model's last reference does."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_freed_models_unmap_their_libraries_and_close_no_files(backend, tmp_path, no_gc):
    before = soak.resources(tmp_path)
    model = convgen.compile(soak.distinct_graph(0), backend=backend, threads=1, cache_dir=tmp_path)
    assert soak.resources(tmp_path)["library_maps"] > 0      # the measure sees a live model's library
    del model
    result = soak.compile_soak(20, backend, tmp_path, report=lambda line: None, first=1)
    assert result["end"]["library_maps"] == 0
    assert result["end"]["fds"] == before["fds"]
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.endswith((".so", ".so.sha256", ".lock"))]
    assert leftovers == [], "temporary build files left in the cache"


@pytest.mark.parametrize("threads, use_out", [(1, False), (2, True)])
def test_many_calls_keep_resident_memory_flat(tmp_path, threads, use_out):
    graph = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).to_graph((1, 3, 32, 32), name="calls")
    model = convgen.compile(graph, threads=threads, cache_dir=tmp_path)
    result = soak.call_soak(model, 10_000, use_out, tmp_path, report=lambda line: None)
    # A leaked 16 KiB output per call would be 160 MiB; a leaked buffer object per call several MiB.
    assert result["rss_max_kib"] - result["start"]["rss_kib"] < 4096, result
    assert result["end"]["fds"] == result["start"]["fds"]

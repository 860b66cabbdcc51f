"""Soaks: many calls of one model, many compiles of distinct models, in one process each; the
process's resident memory (VmRSS), open file descriptors and the mappings of model libraries are
sampled along the way, and must come back to where they started once the models are freed.

    python benchmarks/soak.py calls --calls 1000000 --threads 1 2      # LeNet-5, fresh outputs and out=
    python benchmarks/soak.py compiles --count 10000 --backend c       # distinct small graphs, each freed

Each soak prints one line per checkpoint and a summary; --json writes the figures.  Libraries go to
a temporary cache directory (removed at the end), so every mapping of a model library is one of
this soak's and the counts say exactly what freed models left behind.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import convgen
from convgen import nn, zoo


def resources(library_dir: str | os.PathLike) -> dict[str, int]:
    """VmRSS in KiB, open file descriptors, and mappings of files under `library_dir`, of this process."""
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    directory = str(library_dir)
    with open("/proc/self/maps") as f:
        maps = sum(1 for line in f if directory in line)
    return {"rss_kib": rss, "fds": len(os.listdir("/proc/self/fd")), "library_maps": maps}


def call_soak(model: convgen.CompiledModel, calls: int, use_out: bool, library_dir, checkpoints: int = 10,
              report=print) -> dict:
    """`calls` calls of `model` on one input, each with a fresh output (use_out=False) or into one out=
    array; resources at the start (after a warm-up) and at `checkpoints` points along the way."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(model.input_shapes[0]).astype(np.float32)
    out = np.empty(model.output_shapes[0], np.float32)
    expected = model(x).copy()
    for _ in range(1000):   # warm-up: workspaces, buffers, OpenMP's team
        model(x, out=out) if use_out else model(x)
    samples, start = [resources(library_dir)], time.perf_counter()
    step = max(1, calls // checkpoints)
    done = 0
    while done < calls:
        n = min(step, calls - done)
        if use_out:
            for _ in range(n):
                model(x, out=out)
        else:
            for _ in range(n):
                model(x)
        done += n
        samples.append(resources(library_dir) | {"calls": done})
        report(f"  {done:>9,} calls  rss {samples[-1]['rss_kib']:,} KiB  fds {samples[-1]['fds']}")
    seconds = time.perf_counter() - start
    y = out if use_out else model(x)
    if not np.array_equal(y, expected):
        raise AssertionError("the soaked model's output changed")
    return {"calls": calls, "out": use_out, "seconds": seconds, "us_per_call": seconds / calls * 1e6,
            "start": samples[0], "end": samples[-1], "rss_max_kib": max(s["rss_kib"] for s in samples)}


def distinct_graph(i: int) -> convgen.Graph:
    """The i-th of many small, pairwise distinct graphs (input size, channels, kernel and pool vary)."""
    size, channels, kernel = 8 + i % 97, 1 + (i // 97) % 7, 1 + (i // 679) % 3
    net = nn.Sequential(nn.Conv2d(1, channels, 2 * kernel - 1), nn.ReLU(), nn.MaxPool2d(2))
    return net.to_graph((1, 1, size, size + i // 2037), name=f"soak{i}")


def compile_soak(count: int, backend: str, library_dir, checkpoints: int = 10, report=print,
                 first: int = 0) -> dict:
    """Compile, call once, and free `count` distinct graphs; resources before and at checkpoints."""
    gc.collect()
    samples, start = [resources(library_dir)], time.perf_counter()
    step = max(1, count // checkpoints)
    for i in range(first, first + count):
        model = convgen.compile(distinct_graph(i), backend=backend, threads=1, cache_dir=library_dir)
        model(np.ones(model.input_shapes[0], np.float32))
        del model
        if (i - first + 1) % step == 0 or i == first + count - 1:
            samples.append(resources(library_dir) | {"compiles": i - first + 1})
            rate = (i - first + 1) / (time.perf_counter() - start)
            report(f"  {i - first + 1:>6,} compiles ({rate:.1f}/s)  rss {samples[-1]['rss_kib']:,} KiB  "
                   f"fds {samples[-1]['fds']}  library maps {samples[-1]['library_maps']}")
    seconds = time.perf_counter() - start
    return {"compiles": count, "backend": backend, "seconds": seconds, "per_second": count / seconds,
            "start": samples[0], "end": samples[-1], "rss_max_kib": max(s["rss_kib"] for s in samples)}


def _summary(result: dict) -> str:
    start, end = result["start"], result["end"]
    return (f"rss {start['rss_kib']:,} -> {end['rss_kib']:,} KiB (max {result['rss_max_kib']:,}), "
            f"fds {start['fds']} -> {end['fds']}, library maps {start['library_maps']} -> {end['library_maps']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="soak", required=True)
    calls = sub.add_parser("calls", help="many calls of one model")
    calls.add_argument("--calls", type=int, default=1_000_000)
    calls.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    calls.add_argument("--batch", type=int, default=4, help="LeNet-5's batch (4: its first conv runs on 2 threads)")
    calls.add_argument("--backend", default="c")
    compiles = sub.add_parser("compiles", help="many compiles of distinct small graphs")
    compiles.add_argument("--count", type=int, default=10_000)
    compiles.add_argument("--backend", default="c")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    library_dir = tempfile.mkdtemp(prefix="convgen-soak-")
    results = []
    try:
        if args.soak == "calls":
            graph = zoo.lenet5().to_graph((args.batch, 1, 32, 32), name="lenet5")
            for threads in args.threads:
                model = convgen.compile(graph, backend=args.backend, threads=threads, cache_dir=library_dir)
                for use_out in (False, True):
                    print(f"LeNet-5 batch {args.batch}, {threads} thread(s), {'out=' if use_out else 'fresh outputs'}:")
                    result = call_soak(model, args.calls, use_out, library_dir) | {"threads": threads}
                    print(f"  {result['us_per_call']:.1f} us/call; {_summary(result)}")
                    results.append(result)
                del model
            gc.collect()
            print(f"all models freed: {resources(library_dir)}")
        else:
            print(f"{args.count:,} distinct graphs, backend {args.backend}:")
            result = compile_soak(args.count, args.backend, library_dir)
            print(f"  {result['per_second']:.1f} compiles/s; {_summary(result)}")
            results.append(result)
    finally:
        shutil.rmtree(library_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A whole network's time kernel by kernel (C backend, one thread), beside onnxruntime's total.

    PYTHONPATH=. python benchmarks/kernel_times.py mobilenet_v3_small [--runs 400] [--threads 2]

The network (a networks.NETWORKS name) is lowered as convgen.compile lowers it; its generated C gets a
thread-CPU clock around every kernel call of the forward function and is built once more, so each
kernel's median over the runs, less the median of an empty timed region (reading the thread clock is a
system call), is its own time, free of the other processes on a shared host (wall clocks are not). The
table lists every kernel (template, activation, layer), the sums per template, then convgen's (built
without the clocks) and onnxruntime's whole-network thread times (medians of loops of 10 calls).
With --threads N > 1 the thread clock would count the calling thread alone: kernels and networks are timed
on the wall clock (CLOCK_MONOTONIC, time.perf_counter) instead, both frameworks on N threads.
"""
from __future__ import annotations

import argparse
import ctypes
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import networks
from convgen import passes, lower
from convgen.backends import c as c_backend
from convgen.runtime import CompiledModel
from convgen.target import host

CALL = re.compile(r'^(\s+)(\S.*;)\s+/\* layer "([^"]*)" \((\w+)\) \*/$')


# The cost of the clock itself: a timed region with nothing in it, EMPTY_RUNS times. Reading the thread
# clock is a system call (no vDSO fast path for CLOCK_THREAD_CPUTIME_ID; ~0.5 us under KVM), which would
# otherwise be counted into every kernel; its median is subtracted from each kernel's.
EMPTY_RUNS = 1001
THREAD_CLOCK, WALL_CLOCK = "CLOCK_THREAD_CPUTIME_ID", "CLOCK_MONOTONIC"
EMPTY_REGIONS = f"""EXPORT void convgen_empty_regions_us(double *us) {{
    for (int i = 0; i < {EMPTY_RUNS}; i++) {{
        struct timespec t0, t1;
        clock_gettime(CLOCK, &t0);
        clock_gettime(CLOCK, &t1);
        us[i] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) * 1e-3;
    }}
}}"""


def clock_cost_us(library: ctypes.CDLL) -> float:
    """The median time of an empty timed region, in us."""
    us = (ctypes.c_double * EMPTY_RUNS)()
    library.convgen_empty_regions_us(us)
    return float(np.median(us[:]))


def instrumented(source: str, clock: str = THREAD_CLOCK) -> tuple[str, list[str]]:
    """The source with every kernel call of the forward function timed into convgen_kernel_us[i] on `clock`."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("EXPORT int") and "_forward(" in line)
    layers: list[str] = []
    for i in range(start, len(lines)):
        if lines[i] == "}":
            break
        call = CALL.match(lines[i])
        if call:
            lines[i] = (f"{call.group(1)}{{ struct timespec t0, t1; clock_gettime({clock}, &t0); "
                        f"{call.group(2)} clock_gettime({clock}, &t1); convgen_kernel_us[{len(layers)}] "
                        f"= (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) * 1e-3; }}")
            layers.append(call.group(3))
    lines.insert(start, f"#include <time.h>\nEXPORT double convgen_kernel_us[{len(layers)}];\n"
                        + EMPTY_REGIONS.replace("CLOCK,", f"{clock},"))
    return "#define _GNU_SOURCE\n" + "\n".join(lines), layers


def thread_time_us(call, seconds: float = 5.0, clock=time.thread_time_ns) -> float:
    """The median thread-CPU time (or `clock`'s) of one call, over loops of 10 calls for `seconds`."""
    for _ in range(10):
        call()
    loops, end = [], time.time() + seconds
    while time.time() < end:
        t = clock()
        for _ in range(10):
            call()
        loops.append((clock() - t) / 1e4)
    return float(np.median(loops))


def onnxruntime_call(net: networks.Network, x: np.ndarray, threads: int = 1):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(networks.onnx_bytes(net), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", choices=sorted(networks.NETWORKS))
    parser.add_argument("--runs", type=int, default=400, help="timed forward calls; the median per kernel is printed")
    parser.add_argument("--threads", type=int, default=1, help="threads of both frameworks (> 1: wall clocks)")
    args = parser.parse_args()
    wall = args.threads > 1
    net = networks.NETWORKS[args.network]
    optimized = passes.optimize(networks.convgen_graph(net))
    lowered = lower.lower(optimized, host(), args.threads)
    plain_source = c_backend.render_source(lowered)
    source, layers = instrumented(plain_source, WALL_CLOCK if wall else THREAD_CLOCK)
    with tempfile.TemporaryDirectory() as tmp:
        library, plain_library = Path(tmp) / f"{lowered.prefix}.so", Path(tmp) / "plain" / f"{lowered.prefix}.so"
        plain_library.parent.mkdir()
        c_backend.compile_source(source, lowered.weights, library)
        c_backend.compile_source(plain_source, lowered.weights, plain_library)
        model = CompiledModel(library, lowered.prefix, source=source, graph=optimized, lowered=lowered)
        # The whole network is timed without the clocks around its kernels.
        plain = CompiledModel(plain_library, lowered.prefix, source=plain_source, graph=optimized, lowered=lowered)
        handle = ctypes.CDLL(str(library))
        times = (ctypes.c_double * len(layers)).in_dll(handle, "convgen_kernel_us")
        x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
        y = np.empty(net.output_shape, np.float32)
        samples = np.zeros((args.runs, len(layers)))
        for run in range(-20, args.runs):
            model(x, out=y)
            if run >= 0:
                samples[run] = times[:]
        kernels = {k.layer: k for k in lowered.kernels}
        clock = clock_cost_us(handle)
        medians, by_template = np.maximum(np.median(samples, axis=0) - clock, 0.0), {}
        print(f"an empty timed region takes {clock:.2f} us (the {'wall' if wall else 'thread'} clock's own cost): "
              "subtracted from each kernel")
        print(f"{'us':>8}  {'kernel':15} {'activation':13} layer")
        for layer, us in zip(layers, medians):
            kernel = kernels[layer]
            act = kernel.params.get("activation")
            by_template[kernel.template] = by_template.get(kernel.template, 0.0) + us
            print(f"{us:8.1f}  {kernel.template:15} {act['kind'] if act else '-':13} {layer}")
        print("per kernel template (us): " + ", ".join(f"{t} {us:.1f}" for t, us in
                                                        sorted(by_template.items(), key=lambda kv: -kv[1])))
        timer = time.perf_counter_ns if wall else time.thread_time_ns
        print(f"sum of the kernels' medians {medians.sum():.1f} us; network ({'wall' if wall else 'thread'} time, "
              f"{args.threads} thread(s)): convgen-c {thread_time_us(lambda: plain(x, out=y), clock=timer):.1f} us, "
              f"onnxruntime {thread_time_us(onnxruntime_call(net, x, args.threads), clock=timer):.1f} us")


if __name__ == "__main__":
    sys.exit(main())

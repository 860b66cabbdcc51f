"""convgen side by side with PyTorch and onnxruntime, on the same layers, in one run.

    python benchmarks/bench.py                                   # quick suite, 1 and 2 threads
    python benchmarks/bench.py --suite full --threads 1 --json results.json
    python benchmarks/bench.py --layers depthwise_144x56,conv3d_64x8x28 --repeat 3

Each framework runs in its own process (their thread pools would fight over the
cores otherwise) on the same seeded inputs and weights; the outputs are compared,
so a wrong kernel cannot post a fast time.  The processes stay up and take turns:
per layer, their timed loops alternate, so load from other processes on a shared
host falls on every framework alike.  Reported per layer and framework:
median time, GFLOP/s, % of the FP32 FMA peak (measured here with a generated
kernel, per core, times the thread count), GB/s for memory-bound layers, the
maximum error against the reference (torch), the ratio convgen / best peer
(< 1: convgen is faster), and convgen's cold and warm compile times.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import networks  # noqa: E402  (benchmarks/networks.py)

SEED = 0
MIN_LOOP_SECONDS = 0.02   # each timed loop runs enough calls to last at least this long
# pause before each timed loop, after another framework's loop; longer when pools have threads: onnxruntime's pool
# threads spin for more than 10 ms after a multi-threaded run (with 10 ms, a 2-thread convolution timed
# right after onnxruntime's loop ran at half speed: 3x3 64x56 3530 vs 1820 us with 100 ms)
SETTLE_SECONDS = 0.01
SETTLE_SECONDS_THREADED = 0.1
TOLERANCE = 1e-3          # max |y - reference| / max |reference| above which a result is flagged


# -- the suite --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    name: str
    kind: str                      # "conv" | "max_pool" | "avg_pool" | "global_avg_pool" | "channel_mean"
    input_shape: tuple[int, ...]   # (N, C, *spatial), float32
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    memory_bound: bool = False     # also report GB/s (input + output bytes)

    @property
    def ndim(self) -> int:
        return len(self.input_shape) - 2


def conv(name, shape, oc, k, s=1, p=0, d=1, g=1) -> Layer:
    return Layer(name, "conv", shape, oc, k, s, p, d, g, memory_bound=g > 1 and g == shape[1])


def pool(name, kind, shape, k=1, s=1, p=0) -> Layer:
    return Layer(name, kind, shape, 0, k, s, p, memory_bound=True)


SUITE = [
    conv("lenet_c1", (1, 1, 32, 32), 6, 5),
    conv("lenet_c3", (1, 6, 14, 14), 16, 5),
    conv("resnet_conv1", (1, 3, 224, 224), 64, 7, s=2, p=3),
    conv("3x3_64x56", (1, 64, 56, 56), 64, 3, p=1),
    conv("3x3_128x28", (1, 128, 28, 28), 128, 3, p=1),
    conv("3x3_256x14", (1, 256, 14, 14), 256, 3, p=1),
    conv("3x3_512x7", (1, 512, 7, 7), 512, 3, p=1),
    conv("3x3_s2_128x56", (1, 128, 56, 56), 128, 3, s=2, p=1),
    conv("1x1_256to64_56", (1, 256, 56, 56), 64, 1),
    conv("1x1_64to256_56", (1, 64, 56, 56), 256, 1),
    conv("vgg_64x224", (1, 64, 224, 224), 64, 3, p=1),
    conv("depthwise_144x56", (1, 144, 56, 56), 144, 3, p=1, g=144),
    conv("dilated_256x28", (1, 256, 28, 28), 256, 3, p=2, d=2),
    conv("conv1d_64x16000", (1, 64, 16000), 64, 3, p=1),
    conv("conv3d_64x8x28", (1, 64, 8, 28, 28), 64, 3, p=1),
    conv("3x3_64x56_batch8", (8, 64, 56, 56), 64, 3, p=1),
    pool("maxpool_k3s2_64x112", "max_pool", (1, 64, 112, 112), 3, 2, 1),
    pool("maxpool_k2s2_6x28", "max_pool", (1, 6, 28, 28), 2, 2),
    pool("avgpool_k2s2_16x10", "avg_pool", (1, 16, 10, 10), 2, 2),
    pool("avgpool_k3s1p1_256x28", "avg_pool", (1, 256, 28, 28), 3, 1, 1),
    pool("global_avg_2048x7", "global_avg_pool", (1, 2048, 7, 7)),
    pool("maxpool3d_k2s2_64x8x28", "max_pool", (1, 64, 8, 28, 28), 2, 2),
    pool("channel_mean_256x56", "channel_mean", (1, 256, 56, 56)),   # ReduceMean over axis 1, keepdims
]
QUICK = ["3x3_64x56", "resnet_conv1", "lenet5"]

# Whole networks at batch 1 (benchmarks/networks.py): like a Layer, each has a name, kind "network",
# input_shape and flops; the runners build it per framework (convgen DSL, torch module with the same
# weights, its ONNX export) and everything after the run is the same as for layers.
NETWORKS = networks.NETWORKS
ENTRIES = {**{l.name: l for l in SUITE}, **NETWORKS}

CONVGEN_BACKENDS = ["c", "llvm"]
PEERS = ["torch", "onnxruntime"]
FRAMEWORKS = [f"convgen-{b}" for b in CONVGEN_BACKENDS] + PEERS
REFERENCE_ORDER = ["torch", "onnxruntime"]   # whose output the others are compared to


# -- layer facts ------------------------------------------------------------------------------

def out_size(i: int, layer: Layer) -> int:
    return (i + 2 * layer.padding - layer.dilation * (layer.kernel - 1) - 1) // layer.stride + 1


def output_shape(layer: Layer) -> tuple[int, ...]:
    n, c = layer.input_shape[:2]
    if layer.kind == "network":
        return layer.output_shape
    if layer.kind == "global_avg_pool":
        return (n, c) + (1,) * layer.ndim
    if layer.kind == "channel_mean":
        return (n, 1) + layer.input_shape[2:]
    spatial = tuple(out_size(i, layer) for i in layer.input_shape[2:])
    return (n, layer.out_channels if layer.kind == "conv" else c) + spatial


def flops(layer: Layer) -> int:
    """Conv: 2*N*OC*prod(out spatial)*(C/groups)*prod(kernel); pools: one op per tap read."""
    if layer.kind == "network":
        return layer.flops
    out = math.prod(output_shape(layer))
    if layer.kind == "conv":
        return 2 * out * (layer.input_shape[1] // layer.groups) * layer.kernel ** layer.ndim
    if layer.kind in ("global_avg_pool", "channel_mean"):
        return math.prod(layer.input_shape)
    return out * layer.kernel ** layer.ndim


def traffic_bytes(layer: Layer) -> int:
    return 4 * (math.prod(layer.input_shape) + math.prod(output_shape(layer)))


def entry_facts(layer) -> dict:
    """A layer's fields, or a network's name, kind and input shape, for the JSON."""
    if layer.kind == "network":
        return {"name": layer.name, "kind": layer.kind, "input_shape": layer.input_shape}
    return asdict(layer)


def describe(layer: Layer) -> str:
    """A short spec, e.g. 'conv2d 64x56x56>64 k3p1' or 'max2d 64x112x112 k3s2p1'."""
    n, c, *spatial = layer.input_shape
    shape = ("" if n == 1 else f"{n}x") + "x".join(map(str, [c, *spatial]))
    if layer.kind == "network":
        return f"network {shape}"
    if layer.kind in ("global_avg_pool", "channel_mean"):
        return f"{layer.kind} {shape}"
    window = f"k{layer.kernel}" + "".join(f"{p}{v}" for p, v, unit in (("s", layer.stride, 1), ("p", layer.padding, 0),
                                                                       ("d", layer.dilation, 1)) if v != unit)
    if layer.kind == "conv":
        groups = f" g{layer.groups}" if layer.groups > 1 else ""
        return f"conv{layer.ndim}d {shape}>{layer.out_channels} {window}{groups}"
    return f"{layer.kind.split('_')[0]}{layer.ndim}d {shape} {window}"


def arrays(layer: Layer) -> dict[str, np.ndarray]:
    """The layer's input and weights, the same in every process (regenerated from SEED)."""
    rng = np.random.default_rng(SEED)
    data = {"x": rng.standard_normal(layer.input_shape).astype(np.float32)}
    if layer.kind == "conv":
        fan_in = layer.input_shape[1] // layer.groups * layer.kernel ** layer.ndim
        shape = (layer.out_channels, layer.input_shape[1] // layer.groups) + (layer.kernel,) * layer.ndim
        data["w"] = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
    return data


# -- timing -----------------------------------------------------------------------------------

def calibrate(fn) -> int:
    """After a warm-up, how many calls make a loop last at least MIN_LOOP_SECONDS."""
    for _ in range(3):
        fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < MIN_LOOP_SECONDS:   # also warms caches and thread pools
        fn()
        calls += 1
    return max(calls, 1)


def timed_loop(fn, calls: int) -> float:
    """Seconds per call over one loop of `calls` calls (after a short untimed warm-up)."""
    for _ in range(min(calls, 3)):
        fn()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        gc.enable()


# -- runners: each returns (run, result) for one layer; run() is what is timed -----------------

def convgen_module(layer: Layer, data: dict):
    from convgen import nn
    if layer.kind == "conv":
        module = getattr(nn, f"Conv{layer.ndim}d")(layer.input_shape[1], layer.out_channels, layer.kernel,
                                                   stride=layer.stride, padding=layer.padding,
                                                   dilation=layer.dilation, groups=layer.groups, bias=False)
        module.load_state_dict({"weight": data["w"]})
        return module
    if layer.kind == "global_avg_pool":
        return nn.GlobalAvgPool()
    if layer.kind == "channel_mean":
        return channel_mean_module()
    cls = getattr(nn, f"{'Max' if layer.kind == 'max_pool' else 'Avg'}Pool{layer.ndim}d")
    return cls(layer.kernel, layer.stride, layer.padding)


def channel_mean_module():
    """x.mean(1, keepdim=True) as a DSL module (the DSL's reductions are Tensor methods, not layers)."""
    from convgen import nn

    class ChannelMean(nn.Module):
        def forward(self, x):
            return x.mean(1, keepdim=True)
    return ChannelMean()


def convgen_runner(layer: Layer, data: dict, threads: int, report: dict, backend: str):
    """Compile twice in this worker's fresh CONVGEN_CACHE_DIR: the first is cold, the second a cache hit."""
    import convgen
    graph = networks.convgen_graph(layer) if layer.kind == "network" else \
        convgen_module(layer, data).to_graph(layer.input_shape, name=layer.name)
    tune = os.environ.get("CONVGEN_BENCH_TUNE") == "1"   # --tune: measured schedules (cold time includes tuning)
    start = time.perf_counter()
    convgen.compile(graph, backend=backend, threads=threads, tune=tune)
    report["compile_cold_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model = convgen.compile(graph, backend=backend, threads=threads, tune=tune)
    report["compile_warm_s"] = time.perf_counter() - start
    report["algorithm"] = algorithms(model)
    x, out = data["x"], np.empty(model.output_shapes[0], np.float32)
    return (lambda: model(x, out=out)), (lambda: out)


# What each kernel's template says of the algorithm it runs (a template not named here is shown by its name).
ALGORITHMS = {"conv_direct": "direct", "conv_pixels": "pixels", "conv_rowwise": "rowwise", "conv_gemm": "1x1-GEMM"}


def algorithm(kernel) -> str:
    """e.g. "direct 1x7px 4x16ch" (rows x pixels of the tile, channel vectors x lanes), "winograd F(4,3)"."""
    p, name = kernel.params, kernel.template
    label = ALGORITHMS.get(name, name.removeprefix("conv_"))
    if "winograd" in name:   # the output tile's size, under whichever name its template gives it
        m = next((p[key] for key in ("WINOGRAD_M", "M", "MT", "TILE_M") if key in p), "m")
        return f"winograd F({m},3)"
    if name == "conv_direct":
        return f"{label} {p.get('RH', 1)}x{p['RW']}px {p['OCV']}x{p['VW']}ch"
    if name == "conv_pixels":
        return f"{label} {p['MR']}ch {p['NV']}x{p['VW']}px"
    return label


def algorithms(model) -> str:
    """The algorithm of every convolution kernel of a compiled model (its lowered kernels): one layer's,
    or for a network how many layers ran each ('direct x12, pixels x5')."""
    kernels = [k for k in model._lowered.kernels if k.op in ("conv", "conv_transpose")]
    if len(kernels) <= 1:
        return algorithm(kernels[0]) if kernels else "-"
    counts: dict[str, int] = {}
    for k in kernels:
        label = algorithm(k).split(" ")[0]
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{label} x{count}" for label, count in counts.items())


def torch_runner(layer: Layer, data: dict, threads: int, report: dict):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)   # torch.no_grad() for everything this worker runs
    x = torch.from_numpy(data["x"])
    if layer.kind == "network":
        module = networks.torch_model(layer)
        call = lambda: module(x)  # noqa: E731
    elif layer.kind == "conv":
        w, conv_fn = torch.from_numpy(data["w"]), getattr(F, f"conv{layer.ndim}d")
        call = lambda: conv_fn(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)  # noqa: E731
    elif layer.kind == "global_avg_pool":
        call = lambda: getattr(F, f"adaptive_avg_pool{layer.ndim}d")(x, 1)  # noqa: E731
    elif layer.kind == "channel_mean":
        call = lambda: torch.mean(x, 1, keepdim=True)  # noqa: E731
    else:
        pool_fn = getattr(F, f"{layer.kind}{layer.ndim}d")
        call = lambda: pool_fn(x, layer.kernel, layer.stride, layer.padding)  # noqa: E731
    report["note"] = "allocates its output on every call (F.conv*d has no out=)"
    holder = {}

    def run():
        holder["y"] = call()
    return run, lambda: holder["y"].numpy()


def onnx_model(layer: Layer, data: dict):
    """A one-node ONNX model (opset 17) computing the layer, weights as an initializer."""
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(layer.input_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape(layer)))
    window = dict(kernel_shape=[layer.kernel] * layer.ndim, strides=[layer.stride] * layer.ndim,
                  pads=[layer.padding] * (2 * layer.ndim))
    initializers = []
    if layer.kind == "conv":
        node = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[layer.dilation] * layer.ndim,
                                group=layer.groups, **window)
        initializers.append(numpy_helper.from_array(data["w"], "w"))
    elif layer.kind == "global_avg_pool":
        node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    elif layer.kind == "channel_mean":
        node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=1)
    elif layer.kind == "max_pool":
        node = helper.make_node("MaxPool", ["x"], ["y"], **window)
    else:
        node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=1, **window)
    graph = helper.make_graph([node], layer.name, [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnxruntime_runner(layer: Layer, data: dict, threads: int, report: dict):
    """Run with io_binding: the input and a preallocated output bound once, as convgen's out=."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = networks.onnx_bytes(layer) if layer.kind == "network" else onnx_model(layer, data).SerializeToString()
    session = ort.InferenceSession(model, options,
                                   providers=["CPUExecutionProvider"])
    out = np.empty(output_shape(layer), np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("x", data["x"])
    binding.bind_output("y", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    return (lambda: session.run_with_iobinding(binding)), (lambda: out)


RUNNERS = {"torch": torch_runner, "onnxruntime": onnxruntime_runner}


def runner_for(framework: str):
    if framework.startswith("convgen-"):
        backend = framework.split("-", 1)[1]
        return lambda *args: convgen_runner(*args, backend=backend)
    return RUNNERS[framework]


def prime(framework: str, threads: int) -> dict:
    """Pay convgen's one-time costs in a process (imports, template parsing) on a throwaway graph, so
    that the first layer's cold compile time is like the others'."""
    if not framework.startswith("convgen-"):
        return {}
    import convgen
    from convgen import nn
    start = time.perf_counter()
    convgen.compile(nn.Sequential(nn.Conv2d(1, 1, 1), nn.MaxPool2d(1)).to_graph((1, 1, 1, 1), name="prime"),
                    backend=framework.split("-", 1)[1], threads=threads)
    return {"first_compile_in_process_s": time.perf_counter() - start}


def framework_version(framework: str) -> str:
    module = "convgen" if framework.startswith("convgen") else framework
    return getattr(__import__(module), "__version__", "?")


# -- workers: one process per framework, driven one command at a time ----------------------------
#
# The parent keeps every framework's worker alive and, per layer, alternates their timed loops
# (convgen, torch, onnxruntime, convgen, ...), so that load from other processes on a shared host
# falls on all of them alike instead of on whichever framework happened to be running.

def serve(framework: str, threads: int, outdir: Path) -> None:
    """The worker: read JSON commands on stdin, answer one JSON line each.  Stray output of the
    libraries (C or Python) goes to stderr, so it cannot corrupt the answers."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    make, state = runner_for(framework), {}
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = handle(command, state, make, threads, outdir, framework)
        except Exception as e:   # a framework that cannot run a layer: say so, keep going
            state.clear()
            answer = {"error": f"{type(e).__name__}: {e}"[:300]}
        answers.write(json.dumps(answer) + "\n")


def handle(command: dict, state: dict, make, threads: int, outdir: Path, framework: str) -> dict:
    """setup <layer>: build it and calibrate the loop; loop: time one loop; save: write the output."""
    if command["cmd"] == "hello":
        return {"version": framework_version(framework), **prime(framework, threads)}
    if command["cmd"] == "setup":
        state.clear()
        layer, report = ENTRIES[command["layer"]], {}
        run, result = make(layer, arrays(layer), threads, report)
        state.update(layer=layer, run=run, result=result, calls=calibrate(run))
        return {**report, "calls_per_loop": state["calls"]}
    if command["cmd"] == "loop":
        return {"seconds": timed_loop(state["run"], state["calls"])}
    if command["cmd"] == "save":
        np.save(outdir / f"{state['layer'].name}.npy", np.array(state["result"](), copy=True))
        state.clear()
        return {}
    raise ValueError(f"unknown command {command!r}")


class WorkerDied(Exception):
    pass


class Worker:
    """The parent's handle on one framework's worker process."""

    def __init__(self, framework: str, threads: int, tmp: Path, tune: bool = False) -> None:
        self.framework, self.threads, self.outdir = framework, threads, tmp / f"{framework}-t{threads}"
        self.outdir.mkdir(exist_ok=True)
        self.stderr_path = self.outdir / "stderr.txt"
        self.stderr = self.stderr_path.open("a")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               # a fresh, empty convgen cache: the first compile of each layer really compiles
               "CONVGEN_CACHE_DIR": tempfile.mkdtemp(prefix="cache-", dir=self.outdir),
               "CONVGEN_BENCH_TUNE": "1" if tune else "0"}
        self.tune = tune
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--threads", str(threads),
             "--outdir", str(self.outdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)

    def request(self, cmd: str, **args) -> dict:
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise WorkerDied(self.death())
        return json.loads(line)

    def death(self) -> str:
        code = self.proc.wait()
        status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        lines = self.stderr_path.read_text().strip().splitlines()
        return f"worker {status}" + (f": {lines[-1]}"[:300] if lines else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()
        self.stderr.close()


def bench_layer(layer: Layer, workers: dict[str, Worker], repeat: int) -> tuple[dict, dict]:
    """Time one layer on every framework, their loops interleaved; return (reports, outputs).
    A worker that dies is replaced (in `workers`) and its framework gets the error for this layer."""
    reports, outputs = {}, {}
    settle = SETTLE_SECONDS if all(w.threads == 1 for w in workers.values()) else SETTLE_SECONDS_THREADED
    live = []
    for framework, w in workers.items():
        reports[framework] = attempt(workers, framework, "setup", layer=layer.name)
        if "error" not in reports[framework]:
            reports[framework]["samples_s"] = []
            live.append(framework)
    for r in range(repeat if live else 0):
        for framework in live[r % len(live):] + live[:r % len(live)]:   # rotate who goes first
            if "error" in reports[framework]:   # died in an earlier loop
                continue
            time.sleep(settle)   # let the previous framework's spinning pool threads go to sleep
            answer = attempt(workers, framework, "loop")
            if "error" in answer:
                reports[framework] = answer
            else:
                reports[framework]["samples_s"].append(answer["seconds"])
    for framework in live:
        report = reports[framework]
        if "error" in report:
            continue
        report["time_s"] = float(np.median(report["samples_s"]))
        answer = attempt(workers, framework, "save")
        if "error" in answer:
            report.update(answer)
        else:
            outputs[framework] = np.load(workers[framework].outdir / f"{layer.name}.npy")
    return reports, outputs


def attempt(workers: dict[str, Worker], framework: str, cmd: str, **args) -> dict:
    """A request that turns a dead worker into an error answer, and starts a new worker for what follows."""
    w = workers[framework]
    try:
        return w.request(cmd, **args)
    except WorkerDied as e:
        w.close()
        workers[framework] = Worker(framework, w.threads, w.outdir.parent, w.tune)
        return {"error": str(e)}


# -- the machine's peak -----------------------------------------------------------------------

PEAK_KERNEL = r"""
typedef float vf __attribute__((vector_size(%(bytes)d)));
#define CHAINS(X) %(chain_list)s
/* %(chains)d independent chains of vector FMAs per thread: enough to cover the FMA latency on every port. */
double fma_peak(long iters, int threads) {
    double total = 0.0;
    #pragma omp parallel num_threads(threads) reduction(+:total)
    {
        vf b = (vf){0} + 0.999999f, c = (vf){0} + 1e-6f;
#define DECL(i) vf a##i = (vf){0} + (float)i;
        CHAINS(DECL)
        for (long k = 0; k < iters; k++) {
#define STEP(i) a##i = a##i * b + c;
            CHAINS(STEP)
        }
#define SUM(i) total += a##i[0];
        CHAINS(SUM)
    }
    return total;
}
"""
# Independent FMA chains to try: enough to cover latency x ports (10 measured best on Zen 3, 16 on AVX-512 Xeons), but
# chains + 2 must fit the register file (16 ymm without AVX-512: 16 chains spilled there, 59 vs 98 GFLOP/s).
PEAK_CHAINS = (4, 6, 8, 10, 12, 16)


def vector_widths() -> list[int]:
    """SIMD register widths (bytes) to try: 256-bit on x86-64, and 512-bit too where the CPU has AVX-512."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    if platform.machine() not in ("x86_64", "AMD64"):
        return [16]
    return [32, 64] if "avx512f" in flags else [32]


def measure_peak(threads: int, vector_bytes: int) -> float:
    """FP32 GFLOP/s of the generated FMA kernel on `threads` threads: the best over the chain counts."""
    return max(measure_peak_with(threads, vector_bytes, chains) for chains in PEAK_CHAINS)


def measure_peak_with(threads: int, vector_bytes: int, chains: int) -> float:
    """FP32 GFLOP/s of the generated FMA kernel with `chains` accumulators, FLOPs = 2*lanes*FMAs.  The best of
    many ~1 ms runs, so that time slices lost to other processes on a shared host do not lower the peak."""
    import cffi
    with tempfile.TemporaryDirectory() as tmp:
        source, library = Path(tmp) / "peak.c", Path(tmp) / "libpeak.so"
        chain_list = " ".join(f"X({i})" for i in range(chains))
        source.write_text(PEAK_KERNEL % {"bytes": vector_bytes, "chains": chains, "chain_list": chain_list})
        subprocess.run([os.environ.get("CC", "cc"), "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp",
                        "-fPIC", "-shared", "-o", str(library), str(source)], check=True)
        ffi = cffi.FFI()
        ffi.cdef("double fma_peak(long iters, int threads);")
        lib = ffi.dlopen(str(library))
        iters = 250_000
        for _ in range(10):
            lib.fma_peak(iters, threads)
        best = float("inf")
        for _ in range(60):
            start = time.perf_counter()
            lib.fma_peak(iters, threads)
            best = min(best, time.perf_counter() - start)
    return 2 * (vector_bytes // 4) * chains * iters * threads / best / 1e9


def peak_per_core() -> tuple[float, dict[int, float]]:
    """The best single-thread FMA rate over the vector widths, and the rate at each width."""
    by_width = {width: measure_peak(1, width) for width in vector_widths()}
    return max(by_width.values()), by_width


# -- comparing and reporting --------------------------------------------------------------------

def compare_layer(row: dict[str, dict], outputs: dict[str, np.ndarray]) -> None:
    """Add max_rel_err = max |y - ref| / max |ref| to every report, the reference being torch's output
    (onnxruntime's if torch has none); the reference itself gets reference=True."""
    ref_fw = next((f for f in REFERENCE_ORDER if f in outputs), None)
    if ref_fw is None:
        return
    reference = outputs[ref_fw].astype(np.float64)
    scale = max(1e-30, float(np.abs(reference).max()))
    row[ref_fw]["reference"] = True
    for framework, out in outputs.items():
        if framework != ref_fw:
            row[framework]["max_rel_err"] = (float(np.abs(out - reference).max() / scale)
                                             if out.shape == reference.shape else float("inf"))


def derive(layer: Layer, row: dict, peak: float) -> None:
    """Rates for every framework's report, and each convgen backend's ratio to the best peer."""
    for report in row.values():
        if "time_s" in report:
            t = report["time_s"]
            report["gflops"] = flops(layer) / t / 1e9
            report["pct_peak"] = 100 * report["gflops"] / peak
            report["noise_pct"] = 100 * (max(report["samples_s"]) - min(report["samples_s"])) / t
            if layer.memory_bound:
                report["gbps"] = traffic_bytes(layer) / t / 1e9
    peers = [r["time_s"] for f, r in row.items() if not f.startswith("convgen") and "time_s" in r]
    for framework, report in row.items():
        if framework.startswith("convgen") and "time_s" in report and peers:
            report["ratio_vs_best_peer"] = report["time_s"] / min(peers)


TABLE_HEADER = (f"{'layer':<28s} {'framework':<12s} {'time us':>10s} {'noise':>6s} {'GFLOP/s':>8s} {'%peak':>6s} "
                f"{'GB/s':>6s} {'max err':>9s} {'vs best':>8s} {'compile cold/warm':>18s}  algorithm")


def format_report(framework: str, r: dict) -> str:
    if "time_s" not in r:
        return f"{framework:<12s} {'ERROR' if 'error' in r else '-':>10s}"
    err = ("ref" if r.get("reference") else f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else "-")
    flag = "!" if r.get("max_rel_err", 0.0) > TOLERANCE else " "
    gbps = f"{r['gbps']:6.1f}" if "gbps" in r else f"{'':6s}"
    ratio = f"{r['ratio_vs_best_peer']:7.2f}x" if "ratio_vs_best_peer" in r else f"{'':8s}"
    compile_ = (f"{r['compile_cold_s'] * 1e3:7.0f} / {r['compile_warm_s'] * 1e3:4.1f} ms"
                if "compile_cold_s" in r else "")
    return (f"{framework:<12s} {r['time_s'] * 1e6:10.1f} {r['noise_pct']:5.0f}% {r['gflops']:8.1f} "
            f"{r['pct_peak']:5.1f}% {gbps} {err:>8s}{flag} {ratio} {compile_:>18s}  {r.get('algorithm', '')}").rstrip()


def print_table(threads: int, layers: list[Layer], results: dict, frameworks: list[str], peak: dict) -> None:
    print(f"\n== {threads} thread(s): FP32 FMA peak {peak['per_core']:.0f} GFLOP/s per core (measured), "
          f"x{threads} = {peak['per_core'] * threads:.0f} GFLOP/s for %peak"
          + (f"; measured on {threads} threads together: {peak['together']:.0f}" if threads > 1 else ""))
    print(TABLE_HEADER)
    print("-" * len(TABLE_HEADER))
    for layer in layers:
        labels = [layer.name, describe(layer)]
        for i, framework in enumerate(frameworks):
            label = labels[i] if i < len(labels) else ""
            print(f"{label[:28]:<28s} {format_report(framework, results[layer.name].get(framework, {}))}")
    print_summary(layers, results, frameworks)


LEGEND = """\
  time: median of the timed loops (each >= 20 ms); noise: (max - min) / median of those loops.
  convgen writes into a preallocated out=, onnxruntime into a bound preallocated output (io_binding);
  torch allocates its output on every call (F.conv*d has no out=).
  max err: max |y - ref| / max |ref| against torch's output ('!': above 1e-3).
  vs best: convgen time / the fastest peer's (< 1: convgen faster).  GB/s (input + output bytes): pools, depthwise.
  algorithm: convgen's kernel (direct RHxRWpx OCVxVWch: register tile rows x pixels x channel vectors x lanes)."""


def print_summary(layers: list[Layer], results: dict, frameworks: list[str]) -> None:
    for framework in (f for f in frameworks if f.startswith("convgen")):
        reports = [results[l.name].get(framework, {}) for l in layers]
        ratios = [r["ratio_vs_best_peer"] for r in reports
                  if "ratio_vs_best_peer" in r and r.get("max_rel_err", 0.0) <= TOLERANCE]
        if ratios:
            geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
            faster = sum(r < 1 for r in ratios)
            print(f"{framework}: geometric mean of time / best peer {geomean:.2f}x over {len(ratios)} layers "
                  f"(those with correct results); faster on {faster}")
    if any(r.get("pct_peak", 0) > 100 for l in layers for r in results[l.name].values()):
        print("  NOTE: above 100% of peak: the peak was measured while other processes had the core")
    for layer in layers:
        for framework, r in results[layer.name].items():
            if r.get("max_rel_err", 0.0) > TOLERANCE:
                print(f"  MISMATCH {layer.name} / {framework}: max rel error {r['max_rel_err']:.2e} > {TOLERANCE}")
            if "error" in r:
                print(f"  ERROR {layer.name} / {framework}: {r['error']}")
    print(LEGEND)


def plot(everything: dict, path: str) -> bool:
    """Bars of convgen-c time / best peer per layer, drawn from 1 on a log scale (left of 1: convgen faster),
    one bar per thread count; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    names = [layer["name"] for layer in everything["layers"]]
    runs = everything["runs"]
    height = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(names) * len(runs) + 1.5))
    for i, run in enumerate(runs):
        ratios = [run["results"][n].get("convgen-c", {}).get("ratio_vs_best_peer", float("nan")) for n in names]
        ax.barh([j + i * height for j in range(len(names))], [r - 1 for r in ratios], height, left=1,
                label=f"{run['threads']} thread(s)")
    ax.set_yticks([j + height * (len(runs) - 1) / 2 for j in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.set_xticks([t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20) if low <= t <= high], minor=False)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel("convgen-c time / best of torch and onnxruntime (left of 1x: convgen faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


# -- main ---------------------------------------------------------------------------------------

def check_load() -> float:
    """The 1-minute load average; warn when other processes compete for the cores."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs before starting: other processes "
              "compete for the cores, so times (and the 2-thread numbers most) are unreliable")
    return load


def host_info() -> dict:
    cc = subprocess.run([os.environ.get("CC", "cc"), "--version"], capture_output=True, text=True).stdout
    from convgen.target import host
    target = host()
    return {"cpu": target.name, "cpus": os.cpu_count(), "cc": cc.splitlines()[0] if cc else "?",
            "isa": target.isa, "fma_units": target.fma_units, "fma_bits": 8 * (target.fma_bytes or target.vector_bytes),
            "flops_per_cycle": target.flops_per_cycle, "l1d_kib": target.l1d_bytes // 1024,
            "l2_kib": target.l2_bytes // 1024, "python": platform.python_version(), "numpy": np.__version__}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["quick", "full"], default="quick",
                        help="quick: 3x3 64x56x56 and ResNet conv1; full: every layer")
    parser.add_argument("--layers", help="comma-separated layer names (overrides --suite)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=7, help="timed loops per layer; the median is reported")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated, from {FRAMEWORKS} (any convgen-<backend> works)")
    parser.add_argument("--tune", action="store_true",
                        help="compile convgen with tune=True (measured schedules; the cold compile time includes tuning)")
    parser.add_argument("--json", help="write all results here (and a ratio plot next to it if matplotlib is there)")
    parser.add_argument("--plot", help="write the ratio bar chart here (needs matplotlib)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--outdir", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_all(layers: list[Layer], frameworks: list[str], threads: int, repeat: int, tmp: Path,
            versions: dict, tune: bool = False) -> dict:
    """{layer: {framework: report}} for one thread count, outputs compared."""
    workers = {f: Worker(f, threads, tmp, tune) for f in frameworks}
    try:
        for framework in frameworks:
            versions[framework] = attempt(workers, framework, "hello").get("version", "?")
        results = {}
        for layer in layers:
            results[layer.name], outputs = bench_layer(layer, workers, repeat)
            compare_layer(results[layer.name], outputs)
        return results
    finally:
        for w in workers.values():
            w.close()


def main() -> None:
    args = parse_args()
    names = args.layers.split(",") if args.layers else list(ENTRIES) if args.suite == "full" else QUICK
    unknown = set(names) - set(ENTRIES)
    if unknown:
        sys.exit(f"unknown layers {sorted(unknown)}; known: {', '.join(ENTRIES)}")
    if args.worker:
        serve(args.worker, args.threads[0], Path(args.outdir))
        return
    frameworks = [f for f in args.frameworks.split(",") if f]
    layers = [l for name, l in ENTRIES.items() if name in names]
    load = check_load()
    per_core, by_width = peak_per_core()
    info = host_info()
    print(f"CPU: {info['cpu']}; ISA: {info['isa']}; L1d {info['l1d_kib']} KiB, L2 {info['l2_kib']} KiB per core")
    widest = max(by_width)
    print(f"FP32 FMA peak, 1 thread, measured by an FMA-throughput probe (generated kernel, {PEAK_CHAINS} chains): "
          f"{per_core:.0f} GFLOP/s ("
          + ", ".join(f"{8 * w}-bit vectors {g:.0f}" for w, g in by_width.items())
          + f"); the widest unit's {by_width[widest]:.0f} = {info['fma_units']} FMA pipes x {info['fma_bits'] // 32} lanes"
          f" x 2 x {by_width[widest] / info['flops_per_cycle']:.2f} GHz")
    everything = {"host": {**info, "load_average_at_start": load}, "tuned": args.tune,
                  "peak_gflops_per_core": per_core, "peak_by_vector_bits": {8 * w: g for w, g in by_width.items()},
                  "versions": {}, "tolerance": TOLERANCE,
                  "layers": [{**entry_facts(l), "spec": describe(l), "flops": flops(l), "bytes": traffic_bytes(l)}
                             for l in layers], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            together = measure_peak(threads, max(by_width, key=by_width.get)) if threads > 1 else per_core
            results = run_all(layers, frameworks, threads, args.repeat, Path(tmp), everything["versions"], args.tune)
            again, _ = peak_per_core()   # a peak is a maximum: measured again, in case others had the core before
            per_core = max(per_core, again)
            for layer in layers:
                derive(layer, results[layer.name], per_core * threads)
            print_table(threads, layers, results, frameworks, {"per_core": per_core, "together": together})
            everything["peak_gflops_per_core"] = per_core
            everything["runs"].append({"threads": threads, "peak_gflops": per_core * threads,
                                       "peak_measured_together_gflops": together, "results": results})
    print("versions: " + ", ".join(f"{f} {v}" for f, v in everything["versions"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
        print(f"wrote {args.json}")
    plot_path = args.plot or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if plot_path:
        print(f"wrote {plot_path}" if plot(everything, plot_path) else "matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()

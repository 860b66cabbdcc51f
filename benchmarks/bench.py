"""convgen side by side with PyTorch and onnxruntime, on the same layers, in one run.

    python benchmarks/bench.py                       # quick suite, 1 and 2 threads
    python benchmarks/bench.py --suite full --threads 1 --json results.json

Each framework runs in its own process (their thread pools would fight over the
cores otherwise) on the same seeded inputs and weights; outputs are compared so a
wrong kernel cannot post a fast time.  Reported per layer: median time, GFLOP/s,
% of the machine's FMA peak (measured here with a generated kernel), GB/s for
memory-bound layers, the ratio convgen/best peer (< 1: convgen is faster), and
convgen's cold and warm compile times.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str                      # "conv" | "max_pool" | "avg_pool" | "global_avg_pool"
    input_shape: tuple[int, ...]
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    memory_bound: bool = False

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
]
QUICK = ["3x3_64x56", "resnet_conv1"]
NETWORKS: dict = {}  # whole networks (LeNet-5, ResNet-18) join the suite with the near-peak work

CONVGEN_BACKENDS = ["c"]  # add "llvm" here when that backend lands
FRAMEWORKS = [f"convgen-{b}" for b in CONVGEN_BACKENDS] + ["torch", "onnxruntime"]


# -- layer facts ---------------------------------------------------------------------------

def out_size(i: int, layer: Layer) -> int:
    return (i + 2 * layer.padding - layer.dilation * (layer.kernel - 1) - 1) // layer.stride + 1


def output_shape(layer: Layer) -> tuple[int, ...]:
    n, c = layer.input_shape[:2]
    if layer.kind == "global_avg_pool":
        return (n, c) + (1,) * layer.ndim
    spatial = tuple(out_size(i, layer) for i in layer.input_shape[2:])
    return (n, layer.out_channels if layer.kind == "conv" else c) + spatial


def flops(layer: Layer) -> int:
    out = math.prod(output_shape(layer))
    if layer.kind == "conv":
        return 2 * out * (layer.input_shape[1] // layer.groups) * layer.kernel ** layer.ndim
    if layer.kind == "global_avg_pool":
        return math.prod(layer.input_shape)
    return out * layer.kernel ** layer.ndim


def traffic_bytes(layer: Layer) -> int:
    return 4 * (math.prod(layer.input_shape) + math.prod(output_shape(layer)))


def arrays(layer: Layer) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    data = {"x": rng.standard_normal(layer.input_shape).astype(np.float32)}
    if layer.kind == "conv":
        fan_in = layer.input_shape[1] // layer.groups * layer.kernel ** layer.ndim
        shape = (layer.out_channels, layer.input_shape[1] // layer.groups) + (layer.kernel,) * layer.ndim
        data["w"] = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
    return data


def median_time(fn, min_seconds: float = 0.02, repeat: int = 7) -> float:
    """Median over `repeat` timed loops, each long enough to last `min_seconds`."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    calls = max(calls, 1)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return float(np.median(samples))


# -- workers (each in its own process) ----------------------------------------------------------

def convgen_runner(layer: Layer, data: dict, threads: int, backend: str, report: dict):
    import convgen
    from convgen import nn
    dims = layer.ndim
    if layer.kind == "conv":
        module = getattr(nn, f"Conv{dims}d")(layer.input_shape[1], layer.out_channels, layer.kernel,
                                             stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                                             groups=layer.groups, bias=False)
        module.load_state_dict({"weight": data["w"]})
    elif layer.kind == "global_avg_pool":
        module = nn.GlobalAvgPool()
    else:
        cls = getattr(nn, f"{'Max' if layer.kind == 'max_pool' else 'Avg'}Pool{dims}d")
        module = cls(layer.kernel, layer.stride, layer.padding)
    graph = nn.Sequential(module).to_graph(layer.input_shape, name=layer.name)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        convgen.compile(graph, backend=backend, threads=threads, cache_dir=cache)
        report["compile_cold_s"] = time.perf_counter() - start
        start = time.perf_counter()
        model = convgen.compile(graph, backend=backend, threads=threads, cache_dir=cache)
        report["compile_warm_s"] = time.perf_counter() - start
    out = np.empty(model.output_shapes[0], np.float32)
    x = data["x"]
    return lambda: model(x, out=out), lambda: out


def torch_runner(layer: Layer, data: dict, threads: int, report: dict):
    import torch
    import torch.nn.functional as tf
    torch.set_num_threads(threads)
    x = torch.from_numpy(data["x"])
    if layer.kind == "conv":
        w = torch.from_numpy(data["w"])
        fn = getattr(tf, f"conv{layer.ndim}d")
        call = lambda: fn(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)  # noqa: E731
    elif layer.kind == "global_avg_pool":
        call = lambda: tf.adaptive_avg_pool2d(x, 1)  # noqa: E731
    else:
        fn = getattr(tf, f"{layer.kind}{layer.ndim}d")
        call = lambda: fn(x, layer.kernel, layer.stride, layer.padding)  # noqa: E731
    report["note"] = "allocates its output each call"
    holder = {}

    def run():
        with torch.no_grad():
            holder["y"] = call()
    return run, lambda: holder["y"].numpy()


def onnx_model(layer: Layer, data: dict):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(layer.input_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape(layer)))
    spatial = dict(kernel_shape=[layer.kernel] * layer.ndim, strides=[layer.stride] * layer.ndim,
                   pads=[layer.padding] * (2 * layer.ndim))
    initializers = []
    if layer.kind == "conv":
        node = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[layer.dilation] * layer.ndim,
                                group=layer.groups, **spatial)
        initializers.append(numpy_helper.from_array(data["w"], "w"))
    elif layer.kind == "global_avg_pool":
        node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    else:
        op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
        extra = {} if layer.kind == "max_pool" else {"count_include_pad": 1}
        node = helper.make_node(op, ["x"], ["y"], **spatial, **extra)
    graph = helper.make_graph([node], layer.name, [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnxruntime_runner(layer: Layer, data: dict, threads: int, report: dict):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_model(layer, data).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    out = np.empty(output_shape(layer), np.float32)
    binding.bind_cpu_input("x", data["x"])
    binding.bind_output("y", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    return lambda: session.run_with_iobinding(binding), lambda: out


def worker(framework: str, names: list[str], threads: int, repeat: int, outputs_path: str) -> None:
    results, outputs = {}, {}
    for layer in (l for l in SUITE if l.name in names):
        data, report = arrays(layer), {}
        try:
            if framework.startswith("convgen-"):
                run, result = convgen_runner(layer, data, threads, framework.split("-", 1)[1], report)
            elif framework == "torch":
                run, result = torch_runner(layer, data, threads, report)
            else:
                run, result = onnxruntime_runner(layer, data, threads, report)
            report["time_s"] = median_time(run, repeat=repeat)
            outputs[layer.name] = np.array(result(), copy=True)
        except Exception as e:  # a framework that cannot run a layer: say so, keep going
            report["error"] = f"{type(e).__name__}: {e}"[:200]
        results[layer.name] = report
    np.savez(outputs_path, **outputs)
    print(json.dumps(results))


# -- the machine's peak -------------------------------------------------------------------------

PEAK_KERNEL = r"""
typedef float vf __attribute__((vector_size(%(bytes)d)));
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
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


def measure_peak(threads: int, vector_bytes: int = 64) -> float:
    """FP32 GFLOP/s of 16 independent FMA chains per thread, from a kernel compiled here."""
    import cffi
    with tempfile.TemporaryDirectory() as tmp:
        source, library = Path(tmp) / "peak.c", Path(tmp) / "libpeak.so"
        source.write_text(PEAK_KERNEL % {"bytes": vector_bytes})
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-march=native", "-fopenmp", "-fPIC", "-shared",
                        "-o", str(library), str(source)], check=True)
        ffi = cffi.FFI()
        ffi.cdef("double fma_peak(long iters, int threads);")
        lib = ffi.dlopen(str(library))
        iters = 2_000_000
        lib.fma_peak(iters, threads)
        best = min(_timed(lambda: lib.fma_peak(iters, threads)) for _ in range(5))
    return 2 * (vector_bytes // 4) * 16 * iters * threads / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- the parent: run workers, compare, print --------------------------------------------------------

@dataclass
class Row:
    layer: str
    results: dict = field(default_factory=dict)  # framework -> report


def run_framework(framework: str, names: list[str], threads: int, repeat: int, tmp: Path):
    outputs = tmp / f"{framework}-{threads}.npz"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, "--worker", framework, "--threads", str(threads),
                           "--repeat", str(repeat), "--layers", ",".join(names), "--outputs", str(outputs)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {name: {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
                for name in names}, {}
    reports = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(outputs) as data:
        return reports, {k: data[k] for k in data.files}


def compare(rows: dict[str, Row], outputs: dict[str, dict]) -> None:
    """Max error of every framework's output, relative to the largest value torch (or any) produced."""
    for name, row in rows.items():
        reference = next((outputs[f][name] for f in ("torch", "onnxruntime", *outputs) if name in outputs.get(f, {})),
                         None)
        if reference is None:
            continue
        scale = max(1e-6, float(np.abs(reference).max()))
        for framework, report in row.results.items():
            if name in outputs.get(framework, {}):
                out = outputs[framework][name]
                report["max_rel_err"] = (float(np.abs(out - reference).max() / scale)
                                         if out.shape == reference.shape else float("inf"))


def fmt_row(layer: Layer, row: Row, peak: float) -> str:
    cells = [f"{layer.name:24s}"]
    peers = [r["time_s"] for f, r in row.results.items() if not f.startswith("convgen") and "time_s" in r]
    best_peer = min(peers) if peers else None
    for framework in FRAMEWORKS:
        r = row.results.get(framework, {})
        if "time_s" not in r:
            cells.append(f"{'error' if 'error' in r else '-':>28s}")
            continue
        t = r["time_s"]
        rate = (f"{traffic_bytes(layer) / t / 1e9:6.1f}GB/s" if layer.memory_bound
                else f"{flops(layer) / t / 1e9:6.1f}GF {100 * flops(layer) / t / 1e9 / peak:3.0f}%")
        flag = "!" if r.get("max_rel_err", 0.0) > 1e-3 else " "
        cells.append(f"{t * 1e6:10.1f}us {rate:>14s}{flag}")
    for framework in FRAMEWORKS:
        r = row.results.get(framework, {})
        if framework.startswith("convgen") and "time_s" in r and best_peer:
            cells.append(f"{r['time_s'] / best_peer:6.2f}x")
            cells.append(f"{r.get('compile_cold_s', 0) * 1e3:6.0f}/{r.get('compile_warm_s', 0) * 1e3:4.1f}ms")
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["quick", "full"], default="quick")
    parser.add_argument("--layers", help="comma-separated layer names (overrides --suite)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=7, help="timed loops per layer; the median is reported")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--plot", help="write a bar chart of the ratios (needs matplotlib)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--outputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.layers.split(",") if args.layers else ([l.name for l in SUITE] if args.suite == "full" else QUICK)
    unknown = set(names) - {l.name for l in SUITE}
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)}; known: {[l.name for l in SUITE]}")
    if args.worker:
        worker(args.worker, names, args.threads[0], args.repeat, args.outputs)
        return
    frameworks = [f for f in args.frameworks.split(",") if f]
    everything = {"layers": [asdict(l) for l in SUITE if l.name in names], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            peak = measure_peak(threads)
            rows = {name: Row(name) for name in names}
            outputs = {}
            for framework in frameworks:
                reports, outputs[framework] = run_framework(framework, names, threads, args.repeat, Path(tmp))
                for name, report in reports.items():
                    rows[name].results[framework] = report
            compare(rows, outputs)
            print(f"\n== {threads} thread(s); measured FP32 FMA peak {peak:.0f} GFLOP/s; "
                  "ratio = convgen time / best peer time (< 1: convgen faster); '!' marks max rel error > 1e-3")
            header = [f"{'layer':24s}"] + [f"{f:>28s}" for f in FRAMEWORKS]
            header += [f"{'ratio':>7s} {'compile cold/warm':>13s}"] * len(CONVGEN_BACKENDS)
            print(" ".join(header))
            for layer in (l for l in SUITE if l.name in names):
                print(fmt_row(layer, rows[layer.name], peak))
            for name, row in rows.items():
                for framework, r in row.results.items():
                    if "error" in r:
                        print(f"  {name} / {framework}: {r['error']}")
            everything["runs"].append({"threads": threads, "peak_gflops": peak,
                                       "results": {n: r.results for n, r in rows.items()}})
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
    if args.plot:
        plot(everything, args.plot)


def plot(everything: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    run = everything["runs"][0]
    names = list(run["results"])
    ratios = []
    for name in names:
        r = run["results"][name]
        peers = [v["time_s"] for f, v in r.items() if not f.startswith("convgen") and "time_s" in v]
        mine = r.get("convgen-c", {}).get("time_s")
        ratios.append(mine / min(peers) if mine and peers else float("nan"))
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.5))
    ax.barh(names, ratios)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel(f"convgen time / best of torch and onnxruntime ({run['threads']} thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

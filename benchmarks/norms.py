"""The normalization kernels beside torch and onnxruntime, one thread, on benchmark-sized layers.

    PYTHONPATH=. python benchmarks/norms.py [--repeats 15] [--only groupnorm] [--clock thread]

Each layer is a torch module exported with the TorchScript exporter at opset 17 (what onnxruntime runs
and convgen imports); the frameworks' loops interleave, and the median of the repeats is printed per
framework in microseconds (outputs preallocated for convgen and onnxruntime, checked against torch first).
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings

import numpy as np
import torch
from torch import nn

from convnext import ChannelsLastLayerNorm, ConvNeXtBlock


LAYERS = {
    "layernorm 3136x96 (last axis)": (lambda: nn.LayerNorm(96), (1, 3136, 96)),
    "layernorm 197x768 (ViT-B)": (lambda: nn.LayerNorm(768), (1, 197, 768)),
    "channels-last layernorm 96x56x56": (lambda: ChannelsLastLayerNorm(96), (1, 96, 56, 56)),
    "groupnorm 32 groups 128x56x56": (lambda: nn.GroupNorm(32, 128), (1, 128, 56, 56)),
    "instancenorm 64x112x112": (lambda: nn.InstanceNorm2d(64, affine=True), (1, 64, 112, 112)),
    "convnext block 96x56x56": (lambda: ConvNeXtBlock(96), (1, 96, 56, 56)),
}


def _export(module: nn.Module, x: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"])
    return buffer.getvalue()


def _loop(fn, seconds: float = 0.2, clock=time.perf_counter) -> float:
    fn()
    calls, start = 0, clock()
    while clock() - start < seconds:
        fn()
        calls += 1
    return (clock() - start) / calls


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}  # thread: CPU time, for a crowded host


def compare(layers: dict, repeats: int, only: str = "", x_scale: float = 1.0, clock: str = "wall") -> None:
    """Print one row per layer of `layers` (name -> (module builder, input shape)) whose name contains
    `only`: torch, onnxruntime (io_binding: a preallocated output, as convgen's out=), convgen C and LLVM
    medians of `repeats` interleaved loops, in us; inputs are x_scale * standard normal.  clock "thread"
    times the calling thread's CPU time (all four run on it at one thread), less moved by other processes."""
    import convgen
    import convgen.target
    import onnxruntime

    torch.set_num_threads(1)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    host = convgen.target.host()
    print(f"{host.name}, {host.isa}")
    print(f"{'layer':36} {'torch':>9} {'ort':>9} {'convgen C':>10} {'LLVM':>9}   (us, 1 thread, median of {repeats}, {clock} clock)")
    for name, (build, shape) in layers.items():
        if only not in name:
            continue
        torch.manual_seed(0)
        module = build().eval()
        x = x_scale * torch.randn(shape)
        data = _export(module, x)
        xn = x.numpy()
        with torch.no_grad():
            expected = module(x).numpy()
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        binding, ort_out = session.io_binding(), np.empty(expected.shape, np.float32)
        binding.bind_cpu_input("x", xn)
        binding.bind_output(session.get_outputs()[0].name, "cpu", 0, np.float32, list(ort_out.shape),
                            ort_out.ctypes.data)
        runs = {"torch": lambda: module(x), "ort": lambda: session.run_with_iobinding(binding)}
        graph = convgen.from_onnx(data)
        for backend in ("c", "llvm"):
            model = convgen.compile(graph, backend=backend, threads=1)
            out = np.empty(expected.shape, np.float32)
            got = model(xn)
            assert np.allclose(got, expected, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(expected).max())), name
            runs[backend] = (lambda m, o: lambda: m(xn, out=o))(model, out)
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.no_grad():
            for _ in range(repeats):
                for key, fn in runs.items():
                    times[key].append(_loop(fn, 0.05, CLOCKS[clock]) * 1e6)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:36} {med['torch']:9.1f} {med['ort']:9.1f} {med['c']:10.1f} {med['llvm']:9.1f}", flush=True)


def run_cli(layers: dict, x_scale: float = 1.0) -> None:
    """The command line of this table and its siblings (activations.py): --repeats, --only, --clock."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", default="", help="layers whose name contains this")
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    args = parser.parse_args()
    compare(layers, args.repeats, args.only, x_scale=x_scale, clock=args.clock)


def main() -> None:
    run_cli(LAYERS)


if __name__ == "__main__":
    main()

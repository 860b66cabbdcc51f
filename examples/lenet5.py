"""LeNet-5, end to end: describe it in the DSL, print its summary, compile it, run it.

    python examples/lenet5.py
    convgen summary examples/lenet5.py          # the CLI reads the module-level `graph`
    convgen show-code examples/lenet5.py --layer 0

If torch is installed, the same network in torch (same weights) checks the result.
(`convgen demo` runs this network with trained weights on real handwritten digits.)
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import convgen
from convgen import nn
from convgen.zoo import lenet5, torch_lenet5     # nn.Sequential(Conv2d(1, 6, 5), Tanh(), AvgPool2d(2), ...)

nn.manual_seed(0)
net = lenet5()
graph = net.to_graph((1, 1, 32, 32), name="lenet5")


def check_against_torch(x: np.ndarray, y: np.ndarray) -> None:
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the cross-check")
        return
    reference = torch_lenet5().eval()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    print(f"max |convgen - torch| = {np.abs(y - expected).max():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    backend = parser.parse_args().backend
    graph.summary()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        model = convgen.compile(graph, backend=backend, threads=1, cache_dir=cache)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model = convgen.compile(graph, backend=backend, threads=1, cache_dir=cache)
        warm = time.perf_counter() - start
    print(f"\ncompile: {cold * 1e3:.0f} ms cold, {warm * 1e3:.1f} ms from the cache")

    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    out = np.empty(model.output_shapes[0], np.float32)
    model(x, out=out)
    calls = 2000
    start = time.perf_counter()
    for _ in range(calls):
        model(x, out=out)
    per_call = (time.perf_counter() - start) / calls
    print(f"one forward call: {per_call * 1e6:.1f} us (1 thread, preallocated output)")
    print("scores:", np.array2string(out[0], precision=3))
    print("predicted class:", int(out.argmax()))
    check_against_torch(x, out)


if __name__ == "__main__":
    main()

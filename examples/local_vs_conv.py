"""Parameters of a fully connected, a locally connected and a convolution layer on the same input.

    python examples/local_vs_conv.py --out /tmp        # writes /tmp/local_vs_conv.png

The seed's comparison. On its 1-D example (6 inputs, 2-tap windows, 5 outputs) a fully connected
layer has 30 weights, a locally connected one (a window per output, no sharing) 10, a convolution 2.
The same three layers are built in convgen's DSL on small images, where the counts come from the
summary and each layer runs; the seed's 256x256 RGB motivation is counted by formula (a dense layer
there would hold 3.87e10 weights, 155 GB of float32).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import convgen  # noqa: E402
from convgen import nn  # noqa: E402
from convgen.summary import layer_stats  # noqa: E402


def layers_1d(length: int = 6, k: int = 2) -> dict[str, nn.Module]:
    out = length - k + 1
    return {"fully connected": nn.Sequential(nn.Flatten(), nn.Linear(length, out, bias=False)),
            "locally connected": nn.LocallyConnected1d(1, 1, k, length, bias=False),
            "convolution": nn.Conv1d(1, 1, k, bias=False)}


def layers_2d(size: int, channels: int, k: int = 3) -> dict[str, nn.Module]:
    out = size - k + 1
    features = channels * size * size
    return {"fully connected": nn.Sequential(nn.Flatten(), nn.Linear(features, channels * out * out)),
            "locally connected": nn.LocallyConnected2d(channels, channels, k, (size, size)),
            "convolution": nn.Conv2d(channels, channels, k)}


def by_formula(size: int, channels: int, k: int = 3) -> dict[str, int]:
    out = size - k + 1
    return {"fully connected": channels * size * size * channels * out * out + channels * out * out,
            "locally connected": out * out * channels * channels * k * k + channels * out * out,
            "convolution": channels * channels * k * k + channels}


def count(net: nn.Module, shape: tuple[int, ...], backend: str) -> int:
    """Parameters from convgen's summary; the layer is also compiled and run once."""
    graph = net.to_graph(shape)
    convgen.compile(graph, backend=backend, threads=1)(np.ones(shape, np.float32))
    return sum(s.params for s in layer_stats(graph))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for local_vs_conv.png")
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    args = parser.parse_args()

    def measured(layers: dict[str, nn.Module], shape: tuple[int, ...]) -> dict[str, int]:
        return {kind: count(layer, shape, args.backend) for kind, layer in layers.items()}

    rows = {"1-D, 6 inputs, k=2 (no bias)": measured(layers_1d(), (1, 1, 6)),
            "8x8x3, k=3": measured(layers_2d(8, 3), (1, 3, 8, 8)),
            "16x16x3, k=3": measured(layers_2d(16, 3), (1, 3, 16, 16)),
            "256x256x3, k=3 (formula)": by_formula(256, 3)}
    for name, size in (("8x8x3, k=3", 8), ("16x16x3, k=3", 16)):
        assert rows[name] == by_formula(size, 3), (rows[name], by_formula(size, 3))
    print(f"{'input':30s} {'fully connected':>16s} {'locally connected':>18s} {'convolution':>12s}")
    for name, counts in rows.items():
        print(f"{name:30s} {counts['fully connected']:>16,} {counts['locally connected']:>18,} "
              f"{counts['convolution']:>12,}")

    figure, axis = plt.subplots(figsize=(10, 4.5))
    width = 0.27
    for i, kind in enumerate(("fully connected", "locally connected", "convolution")):
        values = [counts[kind] for counts in rows.values()]
        axis.bar(np.arange(len(rows)) + (i - 1) * width, values, width, label=kind)
    axis.set_yscale("log")
    axis.set_xticks(range(len(rows)), list(rows), fontsize=8)
    axis.set(ylabel="parameters (log scale)",
             title="Sharing weights: parameters of one layer on the same input")
    axis.legend()
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "local_vs_conv.png"
    figure.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

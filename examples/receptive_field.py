"""How the receptive field grows layer by layer, read from convgen's summary, plotted.

    python examples/receptive_field.py --out /tmp       # writes /tmp/receptive_field.png

Three stacks on a 1-D signal and LeNet-5 on an image: 3-tap convolutions add 2 per layer (the seed's
example: h sees 3 inputs, g sees 5); a stride or pool doubles the step (jump) every later layer adds;
dilation 2^i grows the field exponentially with the same number of weights.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from convgen import nn, zoo  # noqa: E402
from convgen.summary import layer_stats  # noqa: E402

DEPTH = 6


def stacks() -> dict[str, nn.Module]:
    plain = [nn.Conv1d(1, 1, 3) for _ in range(DEPTH)]
    strided = [nn.Conv1d(1, 1, 3, stride=2 if i % 2 else 1) for i in range(DEPTH)]
    dilated = [nn.Conv1d(1, 1, 3, dilation=2 ** i) for i in range(DEPTH)]
    return {"3-tap convs": nn.Sequential(*plain), "3-tap, stride 2 every other": nn.Sequential(*strided),
            "3-tap, dilation 1, 2, 4, ...": nn.Sequential(*dilated)}


def fields(graph) -> list[tuple[str, int]]:
    """(layer, receptive field along the last axis) per windowed layer (activations do not change it)."""
    return [(f"{s.name}\n{s.op}", s.field[0][-1]) for s in layer_stats(graph)
            if s.field is not None and s.op != "activation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for receptive_field.png")
    args = parser.parse_args()

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for label, net in stacks().items():
        sizes = [size for _, size in fields(net.to_graph((1, 1, 512)))]
        print(f"{label:30s} receptive field per layer: {sizes}")
        left.plot(range(1, len(sizes) + 1), sizes, marker="o", label=label)
    left.set(xlabel="layer", ylabel="receptive field (input samples)", title="1-D stacks of 3-tap convolutions")
    left.legend()

    lenet = fields(zoo.lenet5().to_graph((1, 1, 32, 32), name="lenet5"))
    print("LeNet-5 receptive field per layer:", [f"{size}x{size}" for _, size in lenet])
    right.bar(range(len(lenet)), [size for _, size in lenet], color="tab:green")
    right.set_xticks(range(len(lenet)), [name for name, _ in lenet], fontsize=8)
    right.set(ylabel="receptive field (pixels per side)", title="LeNet-5 on 32x32: C5 sees the whole image")
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "receptive_field.png"
    figure.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""1-D convolution on a real signal: EEG traces smoothed, differentiated and pooled by convgen.

    python examples/conv1d_signal.py --out /tmp         # writes /tmp/conv1d_signal.png

First the seed's 1-D examples: 6 inputs, kernel [a, b] -> 5 outputs a*x1+b*x2, ...; stride 2 -> 3;
a 3-tap kernel -> 4: n = (m - k)/s + 1. Then four EEG channels (matplotlib's bundled sample, 800
samples each) through a depthwise 9-tap moving average, a central difference and a max pool,
checked against numpy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.cbook as cbook  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import convgen.functional as F  # noqa: E402


def seed_examples() -> None:
    x = np.arange(1, 7, dtype=np.float32)[None, None]                    # x1..x6
    a, b, c = 1.0, 10.0, 100.0
    for kernel, stride in (([a, b], 1), ([a, b], 2), ([a, b, c], 1)):
        w = np.array(kernel, np.float32)[None, None]
        y = F.conv1d(x, w, stride=stride)[0, 0]
        m, k = x.shape[-1], len(kernel)
        assert len(y) == (m - k) // stride + 1
        print(f"m=6, k={k}, s={stride}: n = (m-k)/s + 1 = {len(y)}: {y.tolist()}   (a=1, b=10, c=100)")


def eeg() -> np.ndarray:
    """(1, 4 channels, 800 samples) float32, each channel standardized."""
    with cbook.get_sample_data("eeg.dat") as f:
        data = np.frombuffer(f.read(), dtype=np.float64).reshape(800, 4).T
    data = (data - data.mean(axis=1, keepdims=True)) / data.std(axis=1, keepdims=True)
    return data.astype(np.float32)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for conv1d_signal.png")
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    args = parser.parse_args()
    seed_examples()

    x = eeg()
    channels = x.shape[1]
    average = np.full((channels, 1, 9), 1 / 9, np.float32)                      # one filter per channel
    smooth = F.conv1d(x, average, padding="same", groups=channels, backend=args.backend)
    slope = F.conv1d(smooth, np.tile(np.array([[[0.5, 0.0, -0.5]]], np.float32), (channels, 1, 1)),
                     padding=1, groups=channels, backend=args.backend)
    envelope = F.max_pool1d(np.abs(slope), 16, backend=args.backend)
    for i in range(channels):                 # np.convolve flips the kernel; the moving average is symmetric
        expected = np.convolve(np.pad(x[0, i].astype(np.float64), 4), np.full(9, 1 / 9), mode="valid")
        assert np.abs(smooth[0, i] - expected).max() < 1e-5
    print(f"EEG {channels}x{x.shape[2]}: smoothed {smooth.shape}, slope {slope.shape}, "
          f"max-pooled |slope| {envelope.shape}; moving average matches numpy")

    figure, axes = plt.subplots(channels, 1, figsize=(11, 7), sharex=True)
    t = np.arange(x.shape[2])
    for i, axis in enumerate(axes):
        axis.plot(t, x[0, i], color="0.7", lw=0.8, label="EEG" if i == 0 else None)
        axis.plot(t, smooth[0, i], color="tab:blue", label="9-tap average" if i == 0 else None)
        axis.plot(t, 4 * slope[0, i], color="tab:orange", lw=0.8, label="4 x slope" if i == 0 else None)
        axis.step(np.arange(envelope.shape[2]) * 16, 4 * envelope[0, i], where="post", color="tab:red",
                  label="max pool 16 of 4|slope|" if i == 0 else None)
        axis.set_ylabel(f"ch {i}")
    axes[0].legend(loc="upper right", ncol=4, fontsize=8)
    axes[-1].set_xlabel("sample")
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "conv1d_signal.png"
    figure.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

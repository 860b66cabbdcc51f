"""The seed's 3x3 kernels (blur, Laplacian, Sobel) run through convgen's conv2d on a real photograph.

    python examples/image_filters.py --out /tmp        # writes /tmp/image_filters.png

The photograph is matplotlib's bundled sample of Grace Hopper (no download). All three filters run
as one conv2d call with three output channels; numpy checks the result.
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

KERNELS = {
    "blur  (1/8) [[0,1,0],[1,4,1],[0,1,0]]": np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 8,
    "Laplacian [[0,-1,0],[-1,4,-1],[0,-1,0]]": np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
    "Sobel (vertical edges) [[1,0,-1],[2,0,-2],[1,0,-1]]": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]]),
}


def photograph() -> np.ndarray:
    """Grace Hopper, grey levels in [0, 1], as a (1, 1, H, W) float32 batch."""
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        rgb = plt.imread(f, format="jpeg").astype(np.float32) / 255
    grey = rgb[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey[None, None]


def numpy_filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The same cross-correlation (what deep learning calls convolution) with zero padding 1, in numpy."""
    padded = np.pad(image, 1)
    h, w = image.shape
    return sum(kernel[i, j] * padded[i:i + h, j:j + w] for i in range(3) for j in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for image_filters.png")
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    args = parser.parse_args()

    x = photograph()
    weight = np.stack([k for k in KERNELS.values()])[:, None].astype(np.float32)   # (3 filters, 1 channel, 3, 3)
    y = F.conv2d(x, weight, padding=1, backend=args.backend)                        # (1, 3, H, W)
    for i, kernel in enumerate(KERNELS.values()):
        error = np.abs(y[0, i] - numpy_filter(x[0, 0].astype(np.float64), kernel)).max()
        assert error < 1e-4, f"filter {i}: max error {error}"
    print(f"filtered a {x.shape[2]}x{x.shape[3]} photograph with {len(KERNELS)} kernels in one conv2d; "
          "matches numpy")

    figure, axes = plt.subplots(1, 4, figsize=(16, 5))
    panels = [("original", x[0, 0])] + [(name, y[0, i]) for i, name in enumerate(KERNELS)]
    for axis, (title, image) in zip(axes, panels):
        signed = title != "original" and "blur" not in title      # edge filters: grey is zero
        limit = np.percentile(np.abs(image), 99.5) if signed else 1.0
        axis.imshow(image, cmap="gray", vmin=-limit if signed else 0.0, vmax=limit)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "image_filters.png"
    figure.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

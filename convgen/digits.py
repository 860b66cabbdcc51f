"""The demo's data: held-out handwritten digits and LeNet-5 weights trained on the rest.

convgen/data/lenet5_digits.npz is written by scripts/train_lenet_digits.py from scikit-learn's
bundled digits (UCI optical recognition of handwritten digits: 8x8 images, 17 grey levels).
It holds the trained weights (torch state_dict names) and the held-out test images as uint8
8x8 arrays, so the demo needs neither scikit-learn nor torch.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

DATA_FILE = "lenet5_digits.npz"
SCALE = 4            # 8x8 -> 32x32, LeNet-5's input size
LEVELS = 16          # the digits' grey levels are 0..16


def upsample(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) grey levels 0..16 -> (N, 1, 32, 32) float32 in [0, 1], each pixel a 4x4 block."""
    images = np.asarray(images, np.float32) / LEVELS
    return images.repeat(SCALE, axis=1).repeat(SCALE, axis=2)[:, None]


def load() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(state_dict, test images (N, 1, 32, 32) float32, test labels (N,) int64)."""
    with resources.files("convgen.data").joinpath(DATA_FILE).open("rb") as f:
        data = np.load(f)
        state = {k[len("weight:"):]: data[k] for k in data.files if k.startswith("weight:")}
        return state, upsample(data["test_images"]), data["test_labels"].astype(np.int64)

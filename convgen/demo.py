"""`convgen demo`: LeNet-5 classifying real handwritten digits, compiled by convgen.

Builds LeNet-5 in the DSL, loads weights trained on scikit-learn's digits (convgen.digits), prints the
summary, compiles it (timing a cold compile and a warm one from the cache), classifies every held-out
digit one image per call, and reports the accuracy and the per-image latency.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np

from . import digits, zoo
from .runtime import compile as compile_graph

SHADES = " .:-=+*#%@"


def ascii_digit(image: np.ndarray) -> list[str]:
    """An (H, W) image in [0, 1] as text rows, two characters per pixel."""
    levels = np.clip((image * (len(SHADES) - 1)).round().astype(int), 0, len(SHADES) - 1)
    return ["".join(SHADES[v] * 2 for v in row) for row in levels]


def _timed_compile(graph, backend: str, threads: int | None, cache_dir: str):
    start = time.perf_counter()
    model = compile_graph(graph, backend=backend, threads=threads, cache_dir=cache_dir)
    return model, time.perf_counter() - start


def classify(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and per-call seconds, one image per call into a preallocated output."""
    out = np.empty(model.output_shapes[0], np.float32)
    predictions, seconds = np.empty(len(images), np.int64), np.empty(len(images))
    model(images[:1], out=out)                              # first call: page in, spawn threads
    for i in range(len(images)):
        start = time.perf_counter()
        model(images[i:i + 1], out=out)
        seconds[i] = time.perf_counter() - start
        predictions[i] = int(out.argmax())
    return predictions, seconds


def _show_examples(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, count: int = 4) -> None:
    columns = [ascii_digit(images[i, 0, ::4, ::4]) for i in range(count)]      # back to 8x8 for the terminal
    for row in zip(*columns):
        print("    " + "    ".join(row))
    print("    " + "    ".join(f"label {labels[i]} -> {predictions[i]}".ljust(16) for i in range(count)))


def run_demo(backend: str = "c", threads: int | None = 1, images: int | None = None) -> float:
    """Print the demo's report; returns the accuracy."""
    state, test_images, test_labels = digits.load()
    if images is not None:
        test_images, test_labels = test_images[:images], test_labels[:images]
    net = zoo.lenet5()
    net.load_state_dict(state)
    graph = net.to_graph((1, 1, 32, 32), name="lenet5")
    print("LeNet-5 on scikit-learn's handwritten digits (8x8 upsampled to 32x32), "
          "weights trained by scripts/train_lenet_digits.py\n")
    graph.summary()
    with tempfile.TemporaryDirectory(prefix="convgen-demo-") as cache:
        model, cold = _timed_compile(graph, backend, threads, cache)
        _, warm = _timed_compile(graph, backend, threads, cache)
    print(f"\ncompile ({backend} backend): {cold * 1e3:.0f} ms, {warm * 1e3:.1f} ms again from the cache")
    predictions, seconds = classify(model, test_images)
    accuracy = float((predictions == test_labels).mean())
    print(f"accuracy: {accuracy:.2%} ({int((predictions == test_labels).sum())} of {len(test_labels)} "
          "held-out digits)")
    print(f"latency per image: {np.median(seconds) * 1e6:.1f} us median, {np.percentile(seconds, 90) * 1e6:.1f} us "
          f"p90 (batch 1, {model.signature.get('threads', threads)} thread(s))\n")
    _show_examples(test_images, test_labels, predictions, min(4, len(test_labels)))
    return accuracy

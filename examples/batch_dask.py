"""Batch inference on a dask.distributed cluster: the demo's LeNet-5 over all held-out digits.

    pip install ".[dask]" && python examples/batch_dask.py --out /tmp     # writes /tmp/batch_dask.json

A CompiledModel pickles by reference (its graph and compile options), so it can be scattered to
the workers once; each worker process rebuilds it from the shared on-disk cache (a load, not a
compile) and classifies its chunks of images in a batched model. The result is checked against the
same model run locally.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import convgen
from convgen import digits, zoo

BATCH = 40


def classify(model, images: np.ndarray) -> np.ndarray:
    """Classes of `images` (a multiple of the model's batch), one batched call per BATCH images."""
    return np.concatenate([model(images[i:i + BATCH]).argmax(axis=1) for i in range(0, len(images), BATCH)])


def main() -> None:
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for batch_dask.json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    args = parser.parse_args()

    state, images, labels = digits.load()
    usable = len(images) // BATCH * BATCH
    images, labels = images[:usable], labels[:usable]
    net = zoo.lenet5()
    net.load_state_dict(state)
    model = convgen.compile(net.to_graph((BATCH, 1, 32, 32), name="lenet5_batch"), backend=args.backend, threads=1)

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        start = time.perf_counter()
        shared = client.scatter(model, broadcast=True)               # pickled once: graph + options
        chunks = [c[:len(c) // BATCH * BATCH] for c in np.array_split(images, usable // BATCH)]
        futures = client.map(classify, [shared] * len(chunks), chunks)
        predictions = np.concatenate(client.gather(futures))
        seconds = time.perf_counter() - start
        workers = len(client.scheduler_info()["workers"])

    assert np.array_equal(predictions, classify(model, images)), "workers disagree with the local model"
    accuracy = float((predictions == labels).mean())
    print(f"{len(images)} digits on {workers} dask workers in {len(chunks)} tasks: accuracy {accuracy:.2%}, "
          f"{seconds:.2f} s including shipping the model")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "batch_dask.json"
    path.write_text(json.dumps({"images": len(images), "workers": workers, "tasks": len(chunks),
                                "accuracy": accuracy, "seconds": seconds}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

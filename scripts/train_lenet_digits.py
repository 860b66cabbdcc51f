"""Train LeNet-5 on scikit-learn's handwritten digits and write convgen/data/lenet5_digits.npz.

    pip install scikit-learn torch==2.13.0 && python scripts/train_lenet_digits.py

The 1797 8x8 digits are split 80/20 (stratified, seeded); the 8x8 images are upsampled to 32x32
exactly as the demo does (convgen.digits.upsample). Trains in a few seconds on one core. The .npz
holds the weights under "weight:<torch state_dict name>" and the held-out images as uint8 8x8.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from convgen.digits import DATA_FILE, upsample
from convgen.zoo import torch_lenet5

OUTPUT = Path(__file__).resolve().parent.parent / "convgen" / "data" / DATA_FILE


def train(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            loss_fn(net(x[batch]), y[batch]).backward()
            optimizer.step()


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    digits = load_digits()
    images = digits.images.astype(np.uint8)        # grey levels 0..16
    train_images, test_images, train_labels, test_labels = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    net = torch_lenet5()
    x, y = torch.from_numpy(upsample(train_images)), torch.from_numpy(train_labels).long()
    start = time.perf_counter()
    train(net, x, y, args.epochs, args.seed)
    seconds = time.perf_counter() - start
    net.eval()
    test_accuracy = accuracy(net, torch.from_numpy(upsample(test_images)), torch.from_numpy(test_labels).long())
    print(f"trained {args.epochs} epochs on {len(x)} digits in {seconds:.1f} s; "
          f"train accuracy {accuracy(net, x, y):.4f}, test accuracy {test_accuracy:.4f} on {len(test_labels)}")
    weights = {f"weight:{k}": v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    np.savez_compressed(args.output, test_images=test_images, test_labels=test_labels.astype(np.uint8), **weights)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

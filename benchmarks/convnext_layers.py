"""The ConvNeXt stage of the network benchmark (networks.convnext_stage) layer by layer, beside torch and
onnxruntime, one thread.

    PYTHONPATH=. python benchmarks/convnext_layers.py [--repeats 15] [--only dw] [--clock thread]

Each row is the stage's layer on its own (exported with the TorchScript exporter at opset 17, as
networks.py exports the stage); the frameworks' loops interleave and the median of the repeats is printed
per framework in microseconds (norms.compare). The last rows are one block and the whole stage.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from activations import Lambda
from convnext import ChannelsLastLayerNorm, ConvNeXtBlock
from norms import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import zoo_models  # noqa: E402

CIN, C, SIZE = 96, 192, 28


def _scaled(module: nn.Module, channels: int) -> nn.Module:
    """module then ConvNeXt's layer scale (a per-channel multiply)."""
    gamma = torch.rand(channels, 1, 1) * 0.5 + 0.25
    return nn.Sequential(module, Lambda(lambda y: gamma * y))


LAYERS = {
    "layernorm 96x56x56 (stage input)": (lambda: ChannelsLastLayerNorm(CIN), (1, CIN, 2 * SIZE, 2 * SIZE)),
    "down 2x2/2 96->192": (lambda: nn.Conv2d(CIN, C, 2, 2), (1, CIN, 2 * SIZE, 2 * SIZE)),
    "depthwise 7x7 192x28x28": (lambda: nn.Conv2d(C, C, 7, padding=3, groups=C), (1, C, SIZE, SIZE)),
    "layernorm 192x28x28": (lambda: ChannelsLastLayerNorm(C), (1, C, SIZE, SIZE)),
    "pw1 192->768 + gelu": (lambda: nn.Sequential(nn.Conv2d(C, 4 * C, 1), nn.GELU()), (1, C, SIZE, SIZE)),
    "pw1 192->768": (lambda: nn.Conv2d(C, 4 * C, 1), (1, C, SIZE, SIZE)),
    "pw2 768->192 + scale": (lambda: _scaled(nn.Conv2d(4 * C, C, 1), C), (1, 4 * C, SIZE, SIZE)),
    "block 192x28x28": (lambda: ConvNeXtBlock(C, pointwise="conv"), (1, C, SIZE, SIZE)),
    "stage 96x56x56 -> 192x28x28 (3 blocks)": (lambda: zoo_models.ConvNeXtStage(CIN, C, depth=3),
                                               (1, CIN, 2 * SIZE, 2 * SIZE)),
}


def main() -> None:
    run_cli(LAYERS)


if __name__ == "__main__":
    main()

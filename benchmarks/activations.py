"""Elementwise activations beside torch and onnxruntime, one thread, on a benchmark-sized map.

    PYTHONPATH=. python benchmarks/activations.py [--repeats 15] [--only gelu] [--clock thread]

Each op is a torch module exported with the TorchScript exporter at opset 17 (what onnxruntime runs and
convgen imports; SiLU and GELU arrive as Sigmoid*Mul and the Erf/Tanh spellings that convgen's
match_activations folds into one kernel); the frameworks' loops interleave and the median of the repeats
is printed per framework in microseconds (outputs preallocated for convgen and onnxruntime, checked
against torch first; inputs 3 x standard normal).
Rows "conv3x3+..." fuse the activation into the conv's epilogue (its cost is the row minus "conv3x3").
"""
from __future__ import annotations

import torch
from torch import nn

from norms import run_cli


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _conv_then(act: nn.Module | None) -> nn.Module:
    conv = nn.Conv2d(64, 64, 3, padding=1)
    return conv if act is None else nn.Sequential(conv, act)


SHAPE = (1, 64, 56, 56)
LAYERS = {
    "exp": (lambda: Lambda(torch.exp), SHAPE),
    "sigmoid": (lambda: nn.Sigmoid(), SHAPE),
    "tanh": (lambda: nn.Tanh(), SHAPE),
    "silu": (lambda: nn.SiLU(), SHAPE),
    "gelu (erf)": (lambda: nn.GELU(), SHAPE),
    "gelu (tanh)": (lambda: nn.GELU(approximate="tanh"), SHAPE),
    "mish": (lambda: nn.Mish(), SHAPE),
    "elu": (lambda: nn.ELU(), SHAPE),
    "conv3x3 64x56": (lambda: _conv_then(None), SHAPE),
    "conv3x3+silu": (lambda: _conv_then(nn.SiLU()), SHAPE),
    "conv3x3+gelu": (lambda: _conv_then(nn.GELU()), SHAPE),
}


def main() -> None:
    run_cli(LAYERS, x_scale=3.0)


if __name__ == "__main__":
    main()

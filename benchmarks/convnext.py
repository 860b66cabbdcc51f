"""ConvNeXt's block in plain torch (no convgen, no test helpers), shared by the benchmarks and the tests.

Liu et al., 2022: depthwise 7x7, LayerNorm over the channels, pointwise to 4x + GELU, pointwise back, layer
scale, residual.  Two spellings, as torch users write it and exporters see different graphs:
pointwise="linear" (the reference code: permute to NHWC, LayerNorm and nn.Linear there, permute back -
MatMul in ONNX) and pointwise="conv" (the channels-first form: 1x1 convolutions, LayerNorm between permutes).
"""
from __future__ import annotations

import torch
from torch import nn


class ChannelsLastLayerNorm(nn.Module):
    """LayerNorm over channels of an NCHW map the way ConvNeXt writes it: permute to NHWC, normalize, back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """The block on an NCHW map of `channels`; the layer scale gamma is drawn from torch's generator."""

    def __init__(self, channels: int, pointwise: str = "linear") -> None:
        super().__init__()
        if pointwise not in ("linear", "conv"):
            raise ValueError(f"pointwise must be 'linear' or 'conv', not {pointwise!r}")
        self.linear = pointwise == "linear"
        self.dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.ln = nn.LayerNorm(channels, eps=1e-6) if self.linear else ChannelsLastLayerNorm(channels)
        wide = 4 * channels
        self.pw1, self.act = (nn.Linear(channels, wide) if self.linear else nn.Conv2d(channels, wide, 1)), nn.GELU()
        self.pw2 = nn.Linear(wide, channels) if self.linear else nn.Conv2d(wide, channels, 1)
        self.gamma = nn.Parameter(torch.rand((channels,) if self.linear else (channels, 1, 1)) * 0.5 + 0.25)

    def forward(self, x):
        if self.linear:
            y = self.ln(self.dw(x).permute(0, 2, 3, 1))
            return x + (self.gamma * self.pw2(self.act(self.pw1(y)))).permute(0, 3, 1, 2)
        return x + self.gamma * self.pw2(self.act(self.pw1(self.ln(self.dw(x)))))

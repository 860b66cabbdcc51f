"""The same small networks in convgen's DSL and in torch, with matching state_dict names."""
from __future__ import annotations

import numpy as np

from convgen import nn
from convgen.zoo import lenet5, torch_lenet5  # noqa: F401 (the DSL network and its torch twin)


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-bn-relu-conv-bn, plus the (downsampled) input, relu."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def torch_basic_block(in_channels: int, channels: int, stride: int = 1):
    import torch.nn as tnn

    class TorchBasicBlock(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(channels)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(channels)
            self.downsample = None
            if stride != 1 or in_channels != channels:
                self.downsample = tnn.Sequential(tnn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                                 tnn.BatchNorm2d(channels))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    return TorchBasicBlock()


def randomize_batch_norm(torch_module, seed: int = 0) -> None:
    """Give every torch BatchNorm non-trivial statistics and affine parameters."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    for m in torch_module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):  # 1-D, 2-D and 3-D
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def numpy_state(torch_module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in torch_module.state_dict().items()}


def resnet18(num_classes: int = 1000) -> nn.Module:
    """ResNet-18 (He et al., 2016) from BasicBlock: 7x7/2 stem, 3x3/2 max pool, four stages of two blocks."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                               nn.MaxPool2d(3, stride=2, padding=1)]
    channels = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(channels, width, stride), BasicBlock(width, width)]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)

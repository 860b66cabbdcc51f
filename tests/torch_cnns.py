"""Small versions of real CNN architectures in torch, for the ONNX import tests.

Each keeps the structure that matters to an importer (residual adds, depthwise convolutions
and ReLU6, dense concatenation, parallel branches, channel shuffle, 1-D and 3-D convolutions)
at a width and input size that compile and run in well under a second.
"""
from __future__ import annotations

import torch
from torch import nn

from models import randomize_batch_norm


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dims: int = 2) -> list[nn.Module]:
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    bn = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dims - 1]
    return [conv(cin, cout, k, stride, k // 2, groups=groups, bias=False), bn(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3))
        self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-18's layout at width 8: stem conv 7x7/2 + max pool 3x3/2, four stages of basic blocks."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.stages = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2), BasicBlock(16, 24, 2),
                                    BasicBlock(24, 32, 2))
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(*conv_bn(cin, hidden, 1), nn.ReLU6(),
                                  *conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(),
                                  *conv_bn(hidden, cout, 1))

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(*conv_bn(3, 8, 3, 2), nn.ReLU6(), InvertedResidual(8, 8, 1, 1),
                                      InvertedResidual(8, 12, 2, 6), InvertedResidual(12, 12, 1, 6),
                                      InvertedResidual(12, 16, 2, 6), *conv_bn(16, 64, 1), nn.ReLU6())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.view(x.size(0), -1))


class DenseBlock(nn.Module):
    """DenseNet: each layer (BN-ReLU-conv1x1-BN-ReLU-conv3x3) sees the concatenation of all before it."""

    def __init__(self, cin: int = 8, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(cin + i * growth), nn.ReLU(), nn.Conv2d(cin + i * growth, 4 * growth, 1),
                          nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, padding=1))
            for i in range(layers))
        self.transition = nn.Sequential(nn.BatchNorm2d(cin + layers * growth), nn.ReLU(),
                                        nn.Conv2d(cin + layers * growth, 8, 1), nn.AvgPool2d(2))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return self.transition(x)


class Inception(nn.Module):
    """GoogLeNet's inception module: 1x1, 1x1-3x3, 1x1-5x5 and pool-1x1 branches, concatenated."""

    def __init__(self, cin: int = 8) -> None:
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(cin, 4, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(cin, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.b5 = nn.Sequential(nn.Conv2d(cin, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 5, padding=2), nn.ReLU())
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, 3, 1), nn.ReLU())
        self.avg = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)

    def forward(self, x):
        y = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)
        return self.avg(y)


class ShuffleUnit(nn.Module):
    """ShuffleNet: grouped 1x1 convs with a channel shuffle (reshape - transpose - reshape) between."""

    def __init__(self, channels: int = 12, groups: int = 3) -> None:
        super().__init__()
        self.groups = groups
        self.gconv1 = nn.Sequential(*conv_bn(channels, channels, 1, groups=groups), nn.ReLU())
        self.dwconv = nn.Sequential(*conv_bn(channels, channels, 3, groups=channels))
        self.gconv2 = nn.Sequential(*conv_bn(channels, channels, 1, groups=groups))

    def shuffle(self, x):
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    def forward(self, x):
        return torch.relu(x + self.gconv2(self.dwconv(self.shuffle(self.gconv1(x)))))


class Conv1dNet(nn.Module):
    """A 1-D CNN for sequences: conv-BN-ReLU-maxpool twice, global max pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(2, 8, 5, dims=1), nn.ReLU(), nn.MaxPool1d(2),
                                  *conv_bn(8, 16, 3, dims=1), nn.LeakyReLU(0.1), nn.MaxPool1d(2, ceil_mode=True),
                                  nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(16, 4), nn.Sigmoid())

    def forward(self, x):
        return self.body(x)


class Conv3dNet(nn.Module):
    """A 3-D CNN for volumes (video / medical): strided and dilated 3-D convolutions and pools."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(1, 4, 3, dims=3), nn.ReLU(), nn.MaxPool3d(2),
                                  nn.Conv3d(4, 6, 3, padding=2, dilation=2), nn.Tanh(), nn.AvgPool3d(2, 1),
                                  nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 3), nn.Softmax(1))

    def forward(self, x):
        return self.body(x)


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """Eval mode, with batch-norm statistics that are not the identity (else folding bugs hide)."""
    randomize_batch_norm(module, seed)
    return module.eval()

"""The CNN families people deploy, in plain torch (no torchvision), at widths and input sizes that compile
and run in a fraction of a second: each keeps the structure that matters to an importer and to the
kernels (squeeze-excitation, Hardswish, SiLU, depthwise 7x7 + LayerNorm + GELU + layer scale,
transposed convolution, nearest upsampling, skip concatenation, PixelShuffle, factorized 1x7/7x1
convolutions, average pooling without the padding counted, grouped 3x3, adaptive pooling to 7x7 with
uneven bins, dilated causal 1-D convolutions, factorized (1,3,3)/(3,1,1) 3-D convolutions).

ZOO maps a name to (constructor, input shape); `build(name)` gives the module in eval mode with seeded
weights and non-trivial batch-norm statistics, and its input.
"""
from __future__ import annotations

import torch
from torch import nn

from convnext import ChannelsLastLayerNorm, ConvNeXtBlock  # benchmarks/convnext.py, on the path by conftest
from models import randomize_batch_norm


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class SqueezeExcitation(nn.Module):
    """Global average pool, 1x1 reduce + ReLU, 1x1 expand + a gate, times the input (per channel)."""

    def __init__(self, channels: int, squeezed: int, gate: type[nn.Module] = nn.Hardsigmoid) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.act = nn.ReLU() if gate is nn.Hardsigmoid else nn.SiLU()
        self.gate = gate()

    def forward(self, x):
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(scale))))


class MobileNetV3Block(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, optional squeeze-excitation, 1x1 project."""

    def __init__(self, cin: int, k: int, hidden: int, cout: int, se: bool, act: type[nn.Module],
                 stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [conv_bn_act(cin, hidden, 1, act=act)] if hidden != cin else []
        layers += [conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=act)]
        layers += [SqueezeExcitation(hidden, max(8, hidden // 4))] if se else []
        layers += [conv_bn_act(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


# MobileNetV3-Small's block table (Howard et al., 2019): kernel, expanded width, output width,
# squeeze-excitation, activation, stride.
MOBILENET_V3_SMALL = [(3, 16, 16, True, nn.ReLU, 2), (3, 72, 24, False, nn.ReLU, 2), (3, 88, 24, False, nn.ReLU, 1),
                      (5, 96, 40, True, nn.Hardswish, 2), (5, 240, 40, True, nn.Hardswish, 1),
                      (5, 240, 40, True, nn.Hardswish, 1), (5, 120, 48, True, nn.Hardswish, 1),
                      (5, 144, 48, True, nn.Hardswish, 1), (5, 288, 96, True, nn.Hardswish, 2),
                      (5, 576, 96, True, nn.Hardswish, 1), (5, 576, 96, True, nn.Hardswish, 1)]


class MobileNetV3Small(nn.Module):
    """MobileNetV3-Small at a width multiplier: stem 3x3/2 Hardswish, the eleven blocks, 1x1 to 6x the
    last width + Hardswish, global pool, classifier (Linear-Hardswish-Linear)."""

    def __init__(self, width: float = 1.0, classes: int = 1000) -> None:
        super().__init__()

        def scaled(c: int) -> int:
            return max(8, int(c * width + 4) // 8 * 8)

        cin = scaled(16)
        blocks: list[nn.Module] = [conv_bn_act(3, cin, 3, 2, act=nn.Hardswish)]
        for k, hidden, cout, se, act, stride in MOBILENET_V3_SMALL:
            blocks.append(MobileNetV3Block(cin, k, scaled(hidden), scaled(cout), se, act, stride))
            cin = scaled(cout)
        blocks.append(conv_bn_act(cin, 6 * cin, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(6 * cin, 1024 if width >= 1 else 64), nn.Hardswish(),
                                        nn.Linear(1024 if width >= 1 else 64, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class MBConv(nn.Module):
    """EfficientNet-B0's MBConv: 1x1 expand + SiLU, depthwise + SiLU, squeeze-excitation with a sigmoid
    gate, 1x1 project, residual when the shape allows."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [conv_bn_act(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4), gate=nn.Sigmoid), conv_bn_act(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetBlocks(nn.Module):
    """EfficientNet-B0's stem and its first three stages (MBConv1 3x3, MBConv6 3x3 x2, MBConv6 5x5 x2)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_act(3, 16, 3, 2, act=nn.SiLU), MBConv(16, 8, 3, 1, 1),
                                  MBConv(8, 12, 3, 2, 6), MBConv(12, 12, 3, 1, 6),
                                  MBConv(12, 20, 5, 2, 6), MBConv(20, 20, 5, 1, 6))

    def forward(self, x):
        return self.body(x)


class ConvNeXtStage(nn.Module):
    """A ConvNeXt stage: downsampling (LayerNorm + 2x2/2 conv) then `depth` blocks."""

    def __init__(self, cin: int = 16, channels: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.down = nn.Sequential(ChannelsLastLayerNorm(cin), nn.Conv2d(cin, channels, 2, 2))
        self.blocks = nn.Sequential(*[ConvNeXtBlock(channels, pointwise="conv") for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.down(x))


class UNet(nn.Module):
    """A two-level U-Net: encoder conv-ReLU pairs with max-pool downsampling, one decoder step by
    transposed convolution and one by nearest upsampling, skip connections concatenated."""

    def __init__(self, cin: int = 3, width: int = 8, classes: int = 2) -> None:
        super().__init__()

        def double(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(conv_bn_act(a, b, 3), conv_bn_act(b, b, 3))

        self.enc1, self.enc2, self.bottom = double(cin, width), double(width, 2 * width), double(2 * width, 4 * width)
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.dec2 = double(4 * width, 2 * width)
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * width, width, 1))
        self.dec1 = double(2 * width, width)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        b = self.bottom(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


class ESPCN(nn.Module):
    """ESPCN super-resolution (Shi et al., 2016): 5x5 and 3x3 convolutions with tanh, a 3x3 to
    upscale^2 channels and PixelShuffle."""

    def __init__(self, channels: int = 1, upscale: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 16, 5, padding=2), nn.Tanh(),
                                  nn.Conv2d(16, 8, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(8, channels * upscale ** 2, 3, padding=1), nn.PixelShuffle(upscale))

    def forward(self, x):
        return self.body(x)


class InceptionBlock(nn.Module):
    """Inception-v3's 17x17 block (InceptionC) at small width: 1x1; 1x1 -> 1x7 -> 7x1; 1x1 -> 7x1 -> 1x7 ->
    7x1 -> 1x7; 3x3 average pool (padding not counted) -> 1x1; concatenated."""

    def __init__(self, cin: int = 12, c7: int = 6, cout: int = 8) -> None:
        super().__init__()

        def cba(a: int, b: int, k: tuple[int, int]) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, k, padding=(k[0] // 2, k[1] // 2), bias=False), nn.BatchNorm2d(b),
                                 nn.ReLU())

        self.branch1 = cba(cin, cout, (1, 1))
        self.branch7 = nn.Sequential(cba(cin, c7, (1, 1)), cba(c7, c7, (1, 7)), cba(c7, cout, (7, 1)))
        self.branch77 = nn.Sequential(cba(cin, c7, (1, 1)), cba(c7, c7, (7, 1)), cba(c7, c7, (1, 7)),
                                      cba(c7, c7, (7, 1)), cba(c7, cout, (1, 7)))
        self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), cba(cin, cout, (1, 1)))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch7(x), self.branch77(x), self.pool(x)], 1)


class ResNeXtBlock(nn.Module):
    """ResNeXt's bottleneck (Xie et al., 2017): 1x1, grouped 3x3 (cardinality 4), 1x1, projected shortcut."""

    def __init__(self, cin: int = 16, width: int = 16, cout: int = 32, groups: int = 4, stride: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_act(cin, width, 1), conv_bn_act(width, width, 3, stride, groups=groups),
                                  conv_bn_act(width, cout, 1, act=None))
        self.shortcut = conv_bn_act(cin, cout, 1, stride, act=None)

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class VGGHead(nn.Module):
    """VGG's last stage and classifier: 3x3 convolutions, 2x2 max pool, adaptive average pool to 7x7
    (from 14x14: even bins; from 10x10: uneven, overlapping bins), flatten, Linear-ReLU-Dropout-Linear."""

    def __init__(self, cin: int = 8, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(width * 49, 32), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class CausalConv1d(nn.Module):
    """A 1-D convolution that sees only the past: left padding (k-1)*dilation, none on the right."""

    def __init__(self, cin: int, cout: int, k: int, dilation: int) -> None:
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv = nn.Conv1d(cin, cout, k, dilation=dilation)

    def forward(self, x):
        return self.conv(nn.functional.pad(x, (self.pad, 0)))


class AudioTCN(nn.Module):
    """A WaveNet/TCN-style audio CNN: dilated causal convolutions (dilation 1, 2, 4, 8) with tanh*sigmoid
    gates and residual adds, then a 1x1 to the outputs."""

    def __init__(self, cin: int = 1, width: int = 8, outputs: int = 4) -> None:
        super().__init__()
        self.inp = nn.Conv1d(cin, width, 1)
        self.filters = nn.ModuleList([CausalConv1d(width, width, 2, d) for d in (1, 2, 4, 8)])
        self.gates = nn.ModuleList([CausalConv1d(width, width, 2, d) for d in (1, 2, 4, 8)])
        self.out = nn.Conv1d(width, outputs, 1)

    def forward(self, x):
        x = self.inp(x)
        for f, g in zip(self.filters, self.gates):
            x = x + torch.tanh(f(x)) * torch.sigmoid(g(x))
        return self.out(torch.relu(x))


class Video3d(nn.Module):
    """A (2+1)-D video CNN (R(2+1)D, Tran et al., 2018): each 3x3x3 factorized into a (1,3,3) spatial and
    a (3,1,1) temporal convolution, BN + ReLU, a 3-D max pool, global pool, linear."""

    def __init__(self, cin: int = 3, width: int = 8, classes: int = 5) -> None:
        super().__init__()

        def factorized(a: int, b: int, stride: int) -> list[nn.Module]:
            return [nn.Conv3d(a, b, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False), nn.BatchNorm3d(b), nn.ReLU(),
                    nn.Conv3d(b, b, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False), nn.BatchNorm3d(b), nn.ReLU()]

        self.body = nn.Sequential(*factorized(cin, width, 1), nn.MaxPool3d((1, 2, 2)),
                                  *factorized(width, 2 * width, 2), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                  nn.Linear(2 * width, classes))

    def forward(self, x):
        return self.body(x)


ZOO = {
    "mobilenet_v3_small": (lambda: MobileNetV3Small(width=0.25, classes=10), (1, 3, 64, 64)),
    "efficientnet_b0_blocks": (EfficientNetBlocks, (1, 3, 32, 32)),
    "convnext_stage": (ConvNeXtStage, (1, 16, 14, 14)),
    "unet": (UNet, (1, 3, 16, 16)),
    "espcn": (ESPCN, (1, 1, 12, 12)),
    "inception_block": (InceptionBlock, (1, 12, 9, 9)),
    "resnext_block": (ResNeXtBlock, (1, 16, 12, 12)),
    "vgg_head": (VGGHead, (1, 8, 28, 28)),
    "vgg_head_uneven": (VGGHead, (1, 8, 20, 20)),
    "audio_tcn": (AudioTCN, (1, 1, 64)),
    "video3d": (Video3d, (1, 3, 6, 12, 12)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The module (eval mode, seeded weights, non-trivial batch-norm statistics) and a seeded input."""
    constructor, shape = ZOO[name]
    torch.manual_seed(seed)
    module = constructor()
    randomize_batch_norm(module, seed)
    return module.eval(), torch.randn(shape)

"""Whole networks for the benchmark: LeNet-5 and ResNet-18, in convgen's DSL and in torch with the
same state_dict names, so one set of weights (torch's seeded init, non-trivial batch-norm statistics)
runs in every framework; MobileNetV3-Small and a ConvNeXt stage from the test zoo (tests/zoo_models.py)
in torch only, which convgen imports from the same ONNX export onnxruntime runs."""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import zoo_models  # noqa: E402
from models import (BasicBlock, lenet5, numpy_state, randomize_batch_norm,  # noqa: E402
                    torch_basic_block, torch_lenet5)

from convgen import nn  # noqa: E402

SEED = 0


class ResNet18(nn.Module):
    """ResNet-18 (He et al., 2016) for 224x224 ImageNet inputs, torchvision's layer names."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i, (cin, cout, stride) in enumerate([(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)], 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def torch_resnet18(classes: int = 1000):
    import torch.nn as tnn

    class TorchResNet18(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, stride=2, padding=1)
            for i, (cin, cout, stride) in enumerate([(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)], 1):
                setattr(self, f"layer{i}", tnn.Sequential(torch_basic_block(cin, cout, stride),
                                                          torch_basic_block(cout, cout)))
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.flatten = tnn.Flatten()
            self.fc = tnn.Linear(512, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.flatten(self.avgpool(x)))

    return TorchResNet18()


@dataclass(frozen=True)
class Network:
    name: str
    input_shape: tuple[int, ...]
    convgen: Callable[[], nn.Module] | None   # None: convgen imports the torch module's ONNX export
    torch: Callable[[], object]
    flops: int    # multiply-adds count 2: convolutions and linear layers
    output_shape: tuple[int, ...]
    kind: str = "network"
    memory_bound: bool = False

    @property
    def spec(self) -> str:
        return f"{self.name} " + "x".join(map(str, self.input_shape))


def torch_model(net: Network):
    """The torch module with seeded weights and batch-norm statistics, in eval mode."""
    import torch
    torch.manual_seed(SEED)
    module = net.torch()
    randomize_batch_norm(module, SEED)
    return module.eval()


def convgen_graph(net: Network):
    """The network as a convgen Graph: the DSL module with torch's weights, or the ONNX export imported."""
    if net.convgen is None:
        import convgen
        return convgen.from_onnx(onnx_bytes(net))
    module = net.convgen()
    module.load_state_dict(numpy_state(torch_model(net)))
    return module.to_graph(net.input_shape, name=net.name)


def onnx_bytes(net: Network) -> bytes:
    import torch
    buffer = io.BytesIO()
    torch.onnx.export(torch_model(net), torch.zeros(net.input_shape), buffer, input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    return buffer.getvalue()


def _resnet18_flops() -> int:
    """2 * MACs of the convolutions and the classifier at 224x224 (1.82 GFLOP x 2 = ~3.6 GFLOP)."""
    total, size = 2 * 64 * 112 * 112 * 3 * 49, 56
    for cin, cout, stride in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]:
        size //= stride
        total += 2 * cout * size * size * 9 * (cin + cout)          # first block: conv1, conv2
        total += 2 * cout * size * size * 9 * cout * 2              # second block
        if stride != 1 or cin != cout:
            total += 2 * cout * size * size * cin                   # 1x1 downsample
    return total + 2 * 512 * 1000


def module_flops(build: Callable[[], object], input_shape: tuple[int, ...]) -> int:
    """2 * MACs of every convolution and linear layer of a torch module, counted in one forward pass."""
    import torch
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += 2 * output.numel() * module.in_features
        else:
            total += 2 * output.numel() * (module.in_channels // module.groups) * module.weight[0, 0].numel()
    module = build()
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    with torch.no_grad():
        module(torch.zeros(input_shape))
    return total


def mobilenet_v3_small():
    return zoo_models.MobileNetV3Small(width=1.0, classes=1000)


def convnext_stage():
    """ConvNeXt-T's second stage: LayerNorm + 2x2/2 conv 96 -> 192 on 56x56, three blocks at 28x28."""
    return zoo_models.ConvNeXtStage(96, 192, depth=3)


# module_flops(mobilenet_v3_small, (1, 3, 224, 224)) (56 M MACs, as published) and
# module_flops(convnext_stage, (1, 96, 56, 56)); module_flops gives _resnet18_flops() for ResNet-18.
MOBILENET_V3_SMALL_FLOPS, CONVNEXT_STAGE_FLOPS = 113_009_856, 1_547_126_784

NETWORKS = {
    "lenet5": Network("lenet5", (1, 1, 32, 32), lenet5, torch_lenet5,
                      2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 84 * 120 + 10 * 84), (1, 10)),
    "resnet18": Network("resnet18", (1, 3, 224, 224), ResNet18, torch_resnet18, _resnet18_flops(), (1, 1000)),
    "mobilenet_v3_small": Network("mobilenet_v3_small", (1, 3, 224, 224), None, mobilenet_v3_small,
                                  MOBILENET_V3_SMALL_FLOPS, (1, 1000)),
    "convnext_stage": Network("convnext_stage", (1, 96, 56, 56), None, convnext_stage, CONVNEXT_STAGE_FLOPS,
                              (1, 192, 28, 28)),
}

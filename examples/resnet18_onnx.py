"""ResNet-18 from ONNX: export from torch, import with convgen.from_onnx, compile, check, time.

    python examples/resnet18_onnx.py --out /tmp          # writes /tmp/resnet18.onnx
    convgen summary /tmp/resnet18.onnx                   # the CLI takes the same file

ResNet-18 (He et al., 2016; torchvision's layout, 11.7M parameters) is built in torch with seeded
weights and non-trivial batch-norm statistics, exported with a symbolic batch axis (the file any
exporter would produce), imported with that axis fixed to 1, and compiled: batch-norms fold into the
convolutions, ReLUs and residual adds fuse. The scores are checked against torch and onnxruntime
on the same image, and the per-image latency is compared with onnxruntime's.
"""
from __future__ import annotations

import argparse
import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import convgen


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        self.stages = nn.Sequential(*[nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout))
                                      for cin, cout, stride in stages])
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def seeded_resnet18() -> nn.Module:
    torch.manual_seed(0)
    net = ResNet18()
    for module in net.modules():                 # trained-looking batch-norm statistics, not 0 and 1
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def export(net: nn.Module, size: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), buffer, dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["scores"],
                          dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}})
    return buffer.getvalue()


def per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def race(ours, theirs, calls: int, rounds: int = 3) -> tuple[float, float]:
    """Best per-call time of each over alternating rounds, so a busy moment hits both alike."""
    ours(), theirs()
    times = [(per_call(ours, calls), per_call(theirs, calls)) for _ in range(rounds)]
    return min(t[0] for t in times), min(t[1] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for resnet18.onnx")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--backend", choices=["c", "llvm"], default="c")
    parser.add_argument("--calls", type=int, default=5, help="calls per timed round")
    parser.add_argument("--threads", type=int, default=1, help="threads for convgen and onnxruntime (default 1)")
    args = parser.parse_args()

    net = seeded_resnet18()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "resnet18.onnx"
    path.write_bytes(export(net, args.size))
    print(f"exported {path} ({path.stat().st_size / 2 ** 20:.1f} MiB)")

    shape = (1, 3, args.size, args.size)
    graph = convgen.from_onnx(path, input_shapes={"image": shape})
    print(f"imported {graph!r}")
    start = time.perf_counter()
    model = convgen.compile(graph, backend=args.backend, threads=args.threads)
    print(f"compiled in {time.perf_counter() - start:.1f} s ({args.backend} backend)")

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    scores = model(x)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ort_scores = session.run(None, {"image": x})[0]
    scale = np.abs(expected).max()
    print(f"max |convgen - torch| / max |torch| = {np.abs(scores - expected).max() / scale:.1e}, "
          f"vs onnxruntime {np.abs(scores - ort_scores).max() / scale:.1e}; "
          f"top-1 class {int(scores.argmax())} (torch {int(expected.argmax())})")
    assert np.abs(scores - expected).max() <= 1e-3 * scale

    out = np.empty_like(scores)
    ours, theirs = race(lambda: model(x, out=out), lambda: session.run(None, {"image": x}), args.calls)
    print(f"per image: convgen {ours * 1e3:.2f} ms, onnxruntime {theirs * 1e3:.2f} ms "
          f"({args.threads} thread(s), best of 3 alternating rounds of {args.calls} calls)")


if __name__ == "__main__":
    main()

"""Networks that ship with convgen, written in its DSL."""
from __future__ import annotations

from . import nn


def lenet5() -> nn.Sequential:
    """LeNet-5 (LeCun et al., 1998) for 1x32x32 images: C1 conv 6@5x5, S2 avg pool, C3 conv 16@5x5, S4,
    C5 conv 120@5x5, F6 84, 10 outputs, tanh throughout; parameters named like the same torch.nn.Sequential.

    >>> from convgen import zoo
    >>> zoo.lenet5().to_graph((1, 1, 32, 32), name="lenet5").output_types[0].shape
    (1, 10)
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, kernel_size=5), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10))


def torch_lenet5():
    """The same LeNet-5 as a torch.nn.Sequential (needs torch): `load_state_dict` moves weights either way."""
    import torch.nn as t
    return t.Sequential(
        t.Conv2d(1, 6, 5), t.Tanh(), t.AvgPool2d(2),
        t.Conv2d(6, 16, 5), t.Tanh(), t.AvgPool2d(2),
        t.Conv2d(16, 120, 5), t.Tanh(), t.Flatten(),
        t.Linear(120, 84), t.Tanh(),
        t.Linear(84, 10))

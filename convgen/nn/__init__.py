"""The DSL: layers in the style of torch.nn, traced into a convgen Graph.

    from convgen import nn
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 5)
            self.pool = nn.MaxPool2d(2)
        def forward(self, x):
            return self.pool(nn.relu(self.conv(x)))
    graph = Net().to_graph((1, 1, 32, 32))

Parameters are float32 numpy arrays, initialised from a seeded generator
(`nn.manual_seed`) the way torch initialises them, and named like torch's
state_dict, so `load_state_dict({k: v.numpy() for k, v in torch_sd.items()})`
works for the same architecture.  A DAG without a Module class:

    x = nn.Input((1, 3, 32, 32))
    y = nn.relu(nn.Conv2d(3, 8, 3, padding=1)(x) + x)   # needs 8 == 3: a ShapeError says so
    graph = nn.graph(y, name="block")

The layer families live in modules of their own (conv, pool, activations, elementwise, tensor_ops, linear,
batch_norm, norm, reductions, resize; params and module hold what they share); everything public is
reached as nn.<name>, as torch.nn has it.
"""
from __future__ import annotations


# The DSL's namespace (re-exports; the families import their siblings, never this module).
from .params import manual_seed, MAX_PARAMETER_ELEMENTS  # noqa: F401
from .module import Input, graph, trace, Module, Sequential  # noqa: F401
from .conv import (  # noqa: F401
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, LocallyConnected1d,
    LocallyConnected2d)
from .pool import (  # noqa: F401
    MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, LPPool1d, LPPool2d, LPPool3d, GlobalLpPool,
    GlobalAvgPool, GlobalMaxPool)
from .activations import (  # noqa: F401
    relu, relu6, clip, leaky_relu, sigmoid, tanh, hardsigmoid, hardswish, prelu, ReLU, Hardtanh, ReLU6, Clip,
    LeakyReLU, Sigmoid, Tanh, Hardsigmoid, Hardswish, Softmax, PReLU, _ActivationLayer)
from .elementwise import (  # noqa: F401
    SiLU, GELU, Mish, ELU, SELU, CELU, Softplus, Softsign, silu, gelu, mish, elu, selu, celu, softplus, softsign,
    exp, log, sqrt, pow, abs, neg, reciprocal, erf, sign, minimum, maximum, mean_n)
from .tensor_ops import (  # noqa: F401
    add, sub, mul, div, matmul, add_n, TORCH_PAD_MODES, pad, reshape, permute, transpose, channel_shuffle, cat,
    flatten, Flatten, ChannelShuffle, Identity, Dropout, ConstantPad1d, ConstantPad2d, ConstantPad3d, ZeroPad1d,
    ZeroPad2d, ZeroPad3d, ReflectionPad1d, ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d,
    ReplicationPad3d, CircularPad1d, CircularPad2d, CircularPad3d)
from .linear import Linear  # noqa: F401
from .batch_norm import BatchNorm1d, BatchNorm2d, BatchNorm3d, LocalResponseNorm  # noqa: F401
from .norm import (  # noqa: F401
    LayerNorm, GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, layer_norm, group_norm, instance_norm)
from .reductions import mean, sum, amax, amin, prod, logsumexp  # noqa: F401
from .resize import (  # noqa: F401
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d,
    AdaptiveMaxPool3d, adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d,
    adaptive_max_pool2d, adaptive_max_pool3d, interpolate, Upsample, UpsamplingNearest2d, UpsamplingBilinear2d,
    pixel_shuffle, pixel_unshuffle, PixelShuffle, PixelUnshuffle)
from ..ops.lp_pool import check_norm  # noqa: F401
from ..trace import Tensor, Tracer  # noqa: F401

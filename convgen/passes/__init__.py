"""Graph -> Graph passes, run in the order PIPELINE lists them."""
from __future__ import annotations

from typing import Callable

from ..ir import Graph
from .channels_last_norm import channels_last_norm
from .dead_code import eliminate_dead_nodes
from .fold_batch_norm import fold_batch_norm
from .fold_scale_shift import fold_scale_shift
from .fuse_activation import fuse_activations
from .fuse_group_norm import fuse_group_norm
from .fuse_residual import fuse_residual_adds
from .match_activations import match_activations
from .verify import verify_types

Pass = Callable[[Graph], Graph]

PIPELINE: tuple[Pass, ...] = (
    verify_types,        # declared types are what the ops infer (hand-built and imported graphs)
    eliminate_dead_nodes,
    match_activations,   # x * sigmoid(x), GELU's erf and tanh forms... => one activation
    channels_last_norm,  # permute -> layer_norm(C) [-> linear...] -> permute back => NCHW, 1x1 convs
    fuse_group_norm,     # reshape -> instance_norm -> reshape [-> * w + b] => group_norm (torch's GroupNorm)
    fold_batch_norm,     # conv -> bn          => conv
    fold_scale_shift,    # conv -> * s + t     => conv (per-channel constants)
    fuse_residual_adds,  # conv -> + skip      => conv with a residual input (before its activation fuses)
    fuse_activations,    # conv/linear/bn/arithmetic -> act => one layer with an epilogue
    eliminate_dead_nodes,
)


def optimize(graph: Graph, pipeline: tuple[Pass, ...] = PIPELINE) -> Graph:
    for step in pipeline:
        graph = step(graph)
    return graph

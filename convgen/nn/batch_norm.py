"""BatchNorm1d/2d/3d and LocalResponseNorm (the other norms: nn.norm)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..trace import Tensor
from .module import Module, _emit
from .params import _int, _parameter_shape


class _BatchNorm(Module):
    """torch.nn.BatchNorm1d/2d/3d in inference (eval) mode, over axis 1:
    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.

    weight, bias, running_mean and running_var start at torch's 1, 0, 0, 1 (load trained values with
    load_state_dict); momentum is accepted and unused; affine=False keeps weight 1 and bias 0.  The
    compiler folds it into a convolution before it.

    >>> bn = nn.BatchNorm2d(4)
    >>> list(bn.state_dict())
    ['weight', 'bias', 'running_mean', 'running_var']
    >>> bn.load_state_dict({"weight": np.full(4, 2), "bias": np.ones(4), "running_mean": np.ones(4),
    ...                     "running_var": np.full(4, 4)}, strict=True)
    >>> model = convgen.compile(nn.Sequential(bn).to_graph((1, 4, 2, 2)))
    >>> np.round(model(np.full((1, 4, 2, 2), 3, np.float32))[0, 0, 0], 3)   # (3 - 1) / 2 * 2 + 1
    array([3., 3.], dtype=float32)
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps = _int(num_features), float(eps)
        _parameter_shape(type(self).__name__, (self.num_features,))
        self.register_parameter("weight", np.ones(num_features, np.float32))
        self.register_parameter("bias", np.zeros(num_features, np.float32))
        self.register_parameter("running_mean", np.zeros(num_features, np.float32))
        self.register_parameter("running_var", np.ones(num_features, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "batch_norm", ops.BatchNormAttrs(self.eps),
                     ("weight", "bias", "running_mean", "running_var"))


class BatchNorm1d(_BatchNorm):
    pass


class BatchNorm2d(_BatchNorm):
    pass


class BatchNorm3d(_BatchNorm):
    pass


class LocalResponseNorm(Module):
    """torch.nn.LocalResponseNorm: its window puts size // 2 channels before c (ONNX LRN: (size - 1) // 2)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = _int(size), float(alpha), float(beta), float(k)

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "lrn", ops.LRNAttrs(self.size, self.alpha, self.beta, self.k, before=self.size // 2))

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

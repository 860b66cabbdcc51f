"""The fully connected layer, as torch.nn.Linear."""
from __future__ import annotations

from .. import ops
from ..trace import Tensor
from .module import Module, _emit
from .params import _int, _uniform


class Linear(Module):
    """torch.nn.Linear: y = x @ weight.T + bias over the last axis; weight (out_features, in_features),
    bias (out_features,) unless bias=False, initialised as torch does.  ShapeError for an input whose last
    axis is not in_features.

    >>> nn.manual_seed(0)
    >>> fc = nn.Linear(16, 4)
    >>> fc(nn.Input((2, 16))).shape
    (2, 4)
    >>> fc.parameter_count()
    68
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = _int(in_features), _int(out_features)
        self.register_parameter("weight", _uniform(type(self).__name__, (out_features, in_features), in_features))
        self.register_parameter("bias", _uniform(type(self).__name__, (out_features,), in_features) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "linear", ops.LinearAttrs(), ("weight", "bias"))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

"""The DSL's reductions as functions under torch's names (reached as convgen.nn.X); each is the Tensor
method of the same name (x.mean(dim, keepdim), x.sum, x.amax, x.amin, x.prod, x.logsumexp), one
"reduce" node (ops/reduce.py).  `dim` is an int, a tuple of ints, or None for every axis.

>>> x = nn.Input((2, 8, 5, 5))
>>> [t.shape for t in (nn.mean(x, 1, keepdim=True), x.amax((1, 3)), x.sum(-1), nn.logsumexp(x, 0))]
[(2, 1, 5, 5), (2, 5), (2, 8, 5), (8, 5, 5)]
>>> model = convgen.compile(nn.graph(nn.Input((2, 3)).sum(1), name="sum"))
>>> model(np.array([[1, 2, 3], [4, 5, 6]], np.float32))
array([ 6., 15.], dtype=float32)
"""
from __future__ import annotations

from ..trace import Tensor


__all__ = ["mean", "sum", "amax", "amin", "prod", "logsumexp"]


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """torch.mean."""
    return x.mean(dim, keepdim)


def sum(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001 (torch's name)
    """torch.sum."""
    return x.sum(dim, keepdim)


def amax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """torch.amax: the maximum, NaN if any element is NaN."""
    return x.amax(dim, keepdim)


def amin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """torch.amin: the minimum, NaN if any element is NaN."""
    return x.amin(dim, keepdim)


def prod(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """torch.prod (over several axes too)."""
    return x.prod(dim, keepdim)


def logsumexp(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """torch.logsumexp: log(sum(exp(x))), shifted by the maximum so large values do not overflow."""
    return x.logsumexp(dim, keepdim)

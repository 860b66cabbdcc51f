"""More of the DSL's activations and elementwise math, under torch's names (reached as convgen.nn.X).

Each is one "activation" node (ops.activation holds the formulas and the numpy references), which
the compiler fuses into the convolution or linear layer before it; minimum, maximum and mean_n are
the broadcasting binary ops.

>>> x = nn.Input((1, 8, 4, 4))
>>> [f(x).shape for f in (nn.SiLU(), nn.GELU(approximate="tanh"), nn.Softplus(beta=2.0))]
[(1, 8, 4, 4), (1, 8, 4, 4), (1, 8, 4, 4)]
>>> model = convgen.compile(nn.graph(nn.gelu(nn.Input((1, 3))), name="gelu"))
>>> np.round(model(np.array([[-1, 0, 2]], np.float32)), 4)
array([[-0.1587,  0.    ,  1.9545]], dtype=float32)
"""
from __future__ import annotations

from typing import Sequence

from .. import ops
from ..errors import ConvgenError
from .activations import _activation, _ActivationLayer
from ..ops.activation import SELU_ALPHA, SELU_GAMMA
from ..trace import Tensor


__all__ = ["SiLU", "GELU", "Mish", "ELU", "SELU", "CELU", "Softplus", "Softsign", "silu", "gelu", "mish", "elu",
           "selu", "celu", "softplus", "softsign", "exp", "log", "sqrt", "pow", "abs", "neg", "reciprocal", "erf",
           "sign", "minimum", "maximum", "mean_n"]


def _gelu_kind(approximate: str) -> str:
    if approximate not in ("none", "tanh"):
        raise ConvgenError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


class SiLU(_ActivationLayer):
    """torch.nn.SiLU (swish): x * sigmoid(x)."""
    kind = "silu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()


class GELU(_ActivationLayer):
    """torch.nn.GELU: x * Phi(x) with the erf (approximate='none') or its tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.kind = _gelu_kind(approximate)


class Mish(SiLU):
    """torch.nn.Mish: x * tanh(softplus(x))."""
    kind = "mish"


class ELU(_ActivationLayer):
    """torch.nn.ELU: x > 0 ? x : alpha * (exp(x) - 1)."""
    kind = "elu"

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def params(self) -> tuple[float, ...]:
        return (self.alpha,)


class CELU(ELU):
    """torch.nn.CELU: x > 0 ? x : alpha * (exp(x / alpha) - 1); ConvgenError for alpha 0."""
    kind = "celu"

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        if alpha == 0:
            raise ConvgenError("CELU: alpha must not be 0")
        super().__init__(alpha)


class SELU(SiLU):
    """torch.nn.SELU: scale * elu(x; alpha) with torch's fixed alpha and scale."""
    kind = "selu"

    def params(self) -> tuple[float, ...]:
        return SELU_ALPHA, SELU_GAMMA


class Softplus(_ActivationLayer):
    """torch.nn.Softplus: log(1 + exp(beta * x)) / beta, x itself where beta * x > threshold."""
    kind = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if beta == 0:
            raise ConvgenError("Softplus: beta must not be 0")
        self.beta, self.threshold = float(beta), float(threshold)

    def params(self) -> tuple[float, ...]:
        return self.beta, self.threshold


class Softsign(SiLU):
    """torch.nn.Softsign: x / (1 + |x|)."""
    kind = "softsign"


def silu(x: Tensor) -> Tensor:
    """torch's silu: x * sigmoid(x)."""
    return _activation(x, "silu")


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """torch's gelu: x * Phi(x), exactly (erf) or by the tanh approximation."""
    return _activation(x, _gelu_kind(approximate))


def mish(x: Tensor) -> Tensor:
    """torch's mish: x * tanh(softplus(x))."""
    return _activation(x, "mish")


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """torch's elu."""
    return _activation(x, "elu", alpha)


def selu(x: Tensor) -> Tensor:
    """torch's selu."""
    return _activation(x, "selu", SELU_ALPHA, SELU_GAMMA)


def celu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """torch's celu."""
    return _activation(x, "celu", alpha)


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """torch's softplus."""
    return _activation(x, "softplus", beta, threshold)


def softsign(x: Tensor) -> Tensor:
    """torch's softsign: x / (1 + |x|)."""
    return _activation(x, "softsign")


def exp(x: Tensor) -> Tensor:
    """torch.exp."""
    return _activation(x, "exp")


def log(x: Tensor) -> Tensor:
    """torch.log (NaN below 0, -inf at 0)."""
    return _activation(x, "log")


def sqrt(x: Tensor) -> Tensor:
    """torch.sqrt."""
    return _activation(x, "sqrt")


def pow(x: Tensor, exponent) -> Tensor:  # noqa: A001 (torch's name)
    """torch.pow: a number exponent is one activation, a Tensor or array one broadcasts elementwise."""
    if isinstance(exponent, (int, float)):
        return _activation(x, "pow", exponent)
    return x._arithmetic("pow", exponent)


def abs(x: Tensor) -> Tensor:  # noqa: A001
    """torch.abs."""
    return _activation(x, "abs")


def neg(x: Tensor) -> Tensor:
    """torch.neg."""
    return _activation(x, "neg")


def reciprocal(x: Tensor) -> Tensor:
    """torch.reciprocal: 1 / x."""
    return _activation(x, "reciprocal")


def erf(x: Tensor) -> Tensor:
    """torch.erf."""
    return _activation(x, "erf")


def sign(x: Tensor) -> Tensor:
    """torch.sign: -1, 0 or 1; 0 for NaN, as torch's kernel gives it (ONNX Sign keeps the NaN)."""
    return _activation(x, "sign", 0.0)


def _variadic(op: str, tensors: Sequence[Tensor]) -> Tensor:
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise ConvgenError(f"{op} takes one or more Tensors")
    tracer = tensors[0].tracer
    return tracer.emit(tracer.auto_name(op), op, ops.BinaryAttrs(), list(tensors))


def minimum(a: Tensor, b: Tensor) -> Tensor:
    """torch.minimum: elementwise, broadcasting, NaN where either is NaN."""
    return _variadic("min", [a, b])


def maximum(a: Tensor, b: Tensor) -> Tensor:
    """torch.maximum: elementwise, broadcasting, NaN where either is NaN."""
    return _variadic("max", [a, b])


def mean_n(*tensors: Tensor) -> Tensor:
    """The elementwise mean of several tensors (ONNX Mean; torch.stack(tensors).mean(0)), broadcasting."""
    total = _variadic("sum", tensors)
    return total if len(tensors) == 1 else _activation(total, "scale", 1.0 / len(tensors))

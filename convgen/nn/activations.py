"""The piecewise activations (ReLU, ReLU6/Hardtanh, LeakyReLU, Sigmoid, Tanh, Hardsigmoid, Hardswish,
PReLU) and Softmax, as functions and as layers; each is one "activation" node the compiler fuses into
the layer before it.  The smooth ones and elementwise math are in nn.elementwise."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import ConvgenError, ShapeError
from ..ops import Activation
from ..trace import Tensor
from .module import Module, _emit
from .params import _int, _parameter_shape


def _activation(x: Tensor, kind: str, *params: float, layer: Module | None = None) -> Tensor:
    name = layer.layer_name(x.tracer) if layer else None
    return x.tracer.emit(name, "activation", Activation(kind, params), [x], default_name=kind,
                         kind=type(layer).__name__ if layer else None)


def relu(x: Tensor) -> Tensor:
    """torch's relu: max(x, 0)."""
    return _activation(x, "relu")


def relu6(x: Tensor) -> Tensor:
    """torch's relu6: min(max(x, 0), 6)."""
    return _activation(x, "clip", 0.0, 6.0)


def clip(x: Tensor, min: float, max: float) -> Tensor:  # noqa: A002 (torch's names)
    """torch's clamp (ONNX Clip): min(max(x, min), max)."""
    return _activation(x, "clip", min, max)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """torch's leaky_relu: x < 0 ? x * negative_slope : x."""
    return _activation(x, "leaky_relu", negative_slope)


def sigmoid(x: Tensor) -> Tensor:
    """torch's sigmoid: 1 / (1 + exp(-x))."""
    return _activation(x, "sigmoid")


def tanh(x: Tensor) -> Tensor:
    """torch's tanh."""
    return _activation(x, "tanh")


def hardsigmoid(x: Tensor) -> Tensor:
    """torch's hardsigmoid: relu6(x + 3) / 6 = clip(x/6 + 1/2, 0, 1)."""
    return _activation(x, "hard_sigmoid", 1.0 / 6.0, 0.5)


def hardswish(x: Tensor) -> Tensor:
    """torch's hardswish: x * relu6(x + 3) / 6."""
    return _activation(x, "hard_swish")


def prelu(x: Tensor, weight: np.ndarray, name: str | None = None) -> Tensor:
    """torch's prelu: x < 0 ? x * weight : x, the weight one slope or one per channel (axis 1)."""
    weight = np.asarray(weight, np.float32).reshape(-1)
    name = name or x.tracer.auto_name("prelu")
    if weight.size != 1 and (x.ndim < 2 or weight.size != x.shape[1]):
        raise ShapeError(f"layer {name!r} (PReLU): {weight.size} slopes for an input of shape {x.shape}: "
                         "one, or one per channel (axis 1)")
    slope = weight.reshape((-1,) + (1,) * max(x.ndim - 2, 0)) if weight.size > 1 else weight
    constant = x.tracer.constant(f"{name}.weight", slope)
    return x.tracer.emit(name, "prelu", ops.BinaryAttrs(), [x, constant], kind="PReLU")



class _ActivationLayer(Module):
    """An elementwise activation layer, as its torch.nn namesake (inplace is accepted and ignored).
    The compiler fuses it into the layer before it where it can.

    >>> x = nn.Input((1, 4, 8, 8))
    >>> [layer(x).shape for layer in (nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.1), nn.Tanh())]
    [(1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8)]
    >>> g = nn.Sequential(nn.Hardtanh(-0.5, 0.5), nn.Sigmoid()).to_graph((1, 3))
    >>> np.round(convgen.compile(g)(np.array([[-2, 0, 2]], np.float32)), 3)
    array([[0.378, 0.5  , 0.622]], dtype=float32)
    """
    kind = ""

    def params(self) -> tuple[float, ...]:
        return ()

    def forward(self, x: Tensor) -> Tensor:
        return _activation(x, self.kind, *self.params(), layer=self)


class ReLU(_ActivationLayer):
    """torch.nn.ReLU: max(x, 0)."""
    kind = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()


class Hardtanh(_ActivationLayer):
    """torch.nn.Hardtanh (ONNX Clip): min(max(x, min_val), max_val); ConvgenError if min_val > max_val."""
    kind = "clip"

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0) -> None:
        super().__init__()
        if min_val > max_val:
            raise ConvgenError(f"Hardtanh: min_val {min_val} > max_val {max_val}")
        self.min_val, self.max_val = float(min_val), float(max_val)

    def params(self) -> tuple[float, ...]:
        return self.min_val, self.max_val


class ReLU6(Hardtanh):
    """torch.nn.ReLU6: min(max(x, 0), 6)."""
    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0)


Clip = Hardtanh


class LeakyReLU(_ActivationLayer):
    """torch.nn.LeakyReLU: x < 0 ? x * negative_slope : x."""
    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def params(self) -> tuple[float, ...]:
        return (self.negative_slope,)


class Sigmoid(_ActivationLayer):
    """torch.nn.Sigmoid: 1 / (1 + exp(-x))."""
    kind = "sigmoid"


class Tanh(_ActivationLayer):
    """torch.nn.Tanh."""
    kind = "tanh"


class Hardsigmoid(_ActivationLayer):
    """torch.nn.Hardsigmoid; ONNX HardSigmoid's alpha and beta are the other parameters."""
    kind = "hard_sigmoid"

    def __init__(self, inplace: bool = False, alpha: float = 1.0 / 6.0, beta: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)

    def params(self) -> tuple[float, ...]:
        return self.alpha, self.beta


class Hardswish(_ActivationLayer):
    """torch.nn.Hardswish: x * relu6(x + 3) / 6."""
    kind = "hard_swish"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()


class Softmax(Module):
    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "softmax", ops.SoftmaxAttrs(self.dim))


class PReLU(Module):
    """torch.nn.PReLU: one slope, or one per channel (axis 1)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        super().__init__()
        self.num_parameters = _int(num_parameters)
        self.register_parameter("weight", np.full(_parameter_shape(type(self).__name__, (self.num_parameters,)), init, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return prelu(x, self.param("weight"), name=self.layer_name(x.tracer))

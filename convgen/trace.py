"""Symbolic tensors and the tracer that turns DSL calls into a Graph.

Calling a layer on a symbolic Tensor infers the output shape at once (so a
ShapeError names the layer where the mistake is) and records one Node.
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from . import ops, shapes
from .errors import ConvgenError, ShapeError
from .ir import Graph, Node, TensorType
from .names import identifier  # noqa: F401 (its old home)


class Tensor:
    """A symbolic value during tracing: a name, a type, and the tracer that owns it."""

    def __init__(self, tracer: "Tracer", value: str, type: TensorType):
        self.tracer, self.value, self.type = tracer, value, type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def ndim(self) -> int:
        return self.type.ndim

    # numpy arrays on the left of + - * / defer to the reflected methods below
    __array_ufunc__ = None

    def _arithmetic(self, op: str, other, reflected: bool = False) -> "Tensor":
        """self OP other (other OP self when reflected); other is a Tensor, or an array or scalar
        that becomes a graph constant.  Shapes broadcast as in numpy."""
        name = self.tracer.auto_name(op)
        operand = self._operand(other, name)
        return self.tracer.emit(name, op, ops.BinaryAttrs(), [operand, self] if reflected else [self, operand])

    def _operand(self, other, layer: str):
        """A Tensor as it is; an array or number as a graph constant named after the layer."""
        if isinstance(other, Tensor):
            return other
        return self.tracer.constant(f"{layer}.constant", _constant_array(other, layer))

    def __add__(self, other) -> "Tensor":
        return self._arithmetic("add", other)

    def __radd__(self, other) -> "Tensor":
        return self._arithmetic("add", other, reflected=True)

    def __sub__(self, other) -> "Tensor":
        return self._arithmetic("sub", other)

    def __rsub__(self, other) -> "Tensor":
        return self._arithmetic("sub", other, reflected=True)

    def __mul__(self, other) -> "Tensor":
        return self._arithmetic("mul", other)

    def __rmul__(self, other) -> "Tensor":
        return self._arithmetic("mul", other, reflected=True)

    def __truediv__(self, other) -> "Tensor":
        return self._arithmetic("div", other)

    def __rtruediv__(self, other) -> "Tensor":
        return self._arithmetic("div", other, reflected=True)

    def __pow__(self, other) -> "Tensor":
        if isinstance(other, (int, float)):  # one number: the pow activation
            return self._unary("pow", float(other))
        return self._arithmetic("pow", other)

    def __abs__(self) -> "Tensor":
        return self._unary("abs")

    def _unary(self, kind: str, *params: float) -> "Tensor":
        return self.tracer.emit(None, "activation", ops.Activation(kind, params), [self], default_name=kind)

    def __matmul__(self, other) -> "Tensor":
        return self._product(other)

    def __rmatmul__(self, other) -> "Tensor":
        return self._product(other, reflected=True)

    def _product(self, other, reflected: bool = False) -> "Tensor":
        """torch.matmul; a constant operand becomes a graph constant (packed at compile time when it is B)."""
        name = self.tracer.auto_name("matmul")
        operand = self._operand(other, name)
        return self.tracer.emit(name, "matmul", ops.MatMulAttrs(), [operand, self] if reflected else [self, operand])

    def __neg__(self) -> "Tensor":
        return self._arithmetic("mul", -1.0)

    def flatten(self, start_dim: int = 1) -> "Tensor":
        """torch's flatten from start_dim to the last axis (a view)."""
        return self.tracer.emit(None, "flatten", ops.FlattenAttrs(start_dim), [self], default_name="flatten")

    def reshape(self, *shape) -> "Tensor":
        """torch's reshape: sizes, one of which may be -1 (as varargs or one tuple); a view."""
        target = _sizes(shape)
        if any(d == 0 for d in target):
            raise ShapeError(f"reshape {self.shape} to {target}: convgen tensors have no zero-size axes")
        return self.tracer.emit(None, "reshape", ops.ReshapeAttrs(target), [self], default_name="reshape")

    view = reshape

    def permute(self, *dims) -> "Tensor":
        """torch's permute: the axes in the order `dims` (as varargs or one tuple), as a copy."""
        return self.tracer.emit(None, "transpose", ops.TransposeAttrs(_sizes(dims)), [self],
                                default_name="transpose")

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        """Swap two axes (torch.transpose), as a copy."""
        perm = list(range(self.ndim))
        a, b = (d + self.ndim if d < 0 else d for d in (dim0, dim1))
        if not (0 <= a < self.ndim and 0 <= b < self.ndim):
            raise ShapeError(f"transpose({dim0}, {dim1}): dimension out of range for shape {self.shape}")
        perm[a], perm[b] = perm[b], perm[a]
        return self.permute(*perm)

    # reductions (torch's names; ops/reduce.py): dim an int, a tuple, or None for every axis
    def mean(self, dim=None, keepdim: bool = False) -> "Tensor":
        return self._reduce("mean", dim, keepdim)

    def sum(self, dim=None, keepdim: bool = False) -> "Tensor":
        return self._reduce("sum", dim, keepdim)

    def amax(self, dim=None, keepdim: bool = False) -> "Tensor":
        return self._reduce("max", dim, keepdim)

    def amin(self, dim=None, keepdim: bool = False) -> "Tensor":
        return self._reduce("min", dim, keepdim)

    def prod(self, dim=None, keepdim: bool = False) -> "Tensor":
        return self._reduce("prod", dim, keepdim)

    def logsumexp(self, dim=None, keepdim: bool = False) -> "Tensor":
        return self._reduce("log_sum_exp", dim, keepdim)

    def _reduce(self, kind: str, dim, keepdim: bool) -> "Tensor":
        name = self.tracer.auto_name(kind)
        axes = shapes.normalize_axes(f"layer {name!r} ({kind})", dim, self.ndim)
        return self.tracer.emit(name, "reduce", ops.ReduceAttrs(kind, axes, bool(keepdim)), [self])

    def __repr__(self) -> str:
        return f"Tensor({self.value!r}, shape={self.shape})"


class Tracer:
    """Records a trace: the graph inputs, the nodes layers emit and the constants they read, with unique
    names.  nn.Input makes one; every Tensor knows its tracer, and tracer.graph(outputs) (what
    nn.graph calls) freezes the record into a Graph.  Layers and ops go through emit(), which infers
    the output types at once, so a ShapeError names the layer that causes it."""

    def __init__(self) -> None:
        self.inputs: list[tuple[str, TensorType]] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self._names: set[str] = set()
        self._counters: dict[str, itertools.count] = {}

    def unique(self, base: str) -> str:
        if base not in self._names:
            self._names.add(base)
            return base
        for i in itertools.count(1):
            name = f"{base}_{i}"
            if name not in self._names:
                self._names.add(name)
                return name
        raise AssertionError("unreachable")

    def auto_name(self, kind: str) -> str:
        """A fresh name `kind<i>`, reserved only when a node takes it (through unique)."""
        counter = self._counters.setdefault(kind, itertools.count())
        while True:
            name = f"{kind}{next(counter)}"
            if name not in self._names:
                return name

    def input(self, shape: Sequence[int], name: str, dtype: str = "float32") -> Tensor:
        if not shape or any(int(d) < 1 for d in shape):
            raise ShapeError(f"input {name!r}: every dimension must be >= 1, got {tuple(shape)}")
        name = self.unique(name)
        t = TensorType(tuple(shape), dtype)
        self.inputs.append((name, t))
        return Tensor(self, name, t)

    def constant(self, name: str, array: np.ndarray) -> str:
        existing = self.constants.get(name)
        if existing is None:
            self.constants[name] = np.asarray(array, dtype=np.float32)
        elif existing is not array and not np.array_equal(existing, array):
            raise ConvgenError(f"two different constants are both named {name!r}")
        return name

    def emit(self, layer: str | None, op: str, attrs: Any, inputs: list, default_name: str = "layer",
             kind: str | None = None) -> Tensor | tuple[Tensor, ...]:
        """Record one node; `inputs` are Tensors or constant names. Returns its output Tensor(s).

        Errors name the layer as "layer 'NAME' (KIND)", KIND being the DSL class or else the op.
        """
        name = self.unique(layer) if layer else self.auto_name(default_name)
        values, types = [], []
        for item in inputs:
            if isinstance(item, Tensor):
                if item.tracer is not self:
                    raise ConvgenError(f"{name}: an input comes from a different trace")
                values.append(item.value)
                types.append(item.type)
            else:
                values.append(item)
                types.append(TensorType(self.constants[item].shape))
        out_types = ops.get(op).infer(f"layer {name!r} ({kind or op})", attrs, types)
        # A node's later outputs are <name>:<i>; an input (a file's name can be anything) may already
        # be called that, so such a node takes a fresh name, and its values are reserved.
        while len(out_types) > 1 and any(f"{name}:{i}" in self._names for i in range(1, len(out_types))):
            name = self.unique(f"{name}_")
        out_values = tuple(name if i == 0 else f"{name}:{i}" for i in range(len(out_types)))
        self._names.update(out_values[1:])
        self.nodes.append(Node(name, op, attrs, tuple(values), out_values, tuple(out_types)))
        result = tuple(Tensor(self, v, t) for v, t in zip(out_values, out_types))
        return result[0] if len(result) == 1 else result

    def graph(self, outputs: Sequence[Tensor], name: str) -> Graph:
        for t in outputs:
            if not isinstance(t, Tensor) or t.tracer is not self:
                raise ConvgenError(f"graph {name!r}: outputs must be Tensors of this trace, got {t!r}")
        used = {v for n in self.nodes for v in n.inputs}
        constants = {k: v for k, v in self.constants.items() if k in used}
        return Graph(name=name, inputs=tuple(self.inputs), nodes=tuple(self.nodes),
                     outputs=tuple(t.value for t in outputs), constants=constants)


def _constant_array(value, layer: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"{layer}: the other operand must be a Tensor, a number or a numeric array, "
                        f"got {type(value).__name__}") from None
    if array.size == 0:
        raise ShapeError(f"{layer}: the constant operand is empty (shape {array.shape})")
    return array


def _sizes(args: tuple) -> tuple[int, ...]:
    """torch's `f(*sizes)` or `f(sizes)`."""
    items = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
    if not all(isinstance(d, int) or hasattr(d, "__index__") for d in items):
        raise TypeError(f"sizes must be ints, got {items!r}")
    return tuple(int(d) for d in items)


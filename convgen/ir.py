"""The layer-graph IR: immutable values, nodes and graphs.

A Graph is a topologically ordered tuple of Nodes over named values.  A value
is a graph input, a constant (weights: numpy arrays the compiler may pack at
compile time) or the output of a node.  Nothing here knows about backends.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from . import dtypes
from .errors import ConvgenError, DTypeError, ShapeError

DTYPES = dtypes.NAMES


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.dtype not in DTYPES:
            raise ConvgenError(f"unsupported dtype {self.dtype!r}; convgen's element types are {DTYPES}")

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * dtypes.get(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


@dataclass(frozen=True)
class Node:
    """One layer: `op` names the registry entry, `attrs` is that op's frozen attribute dataclass."""
    name: str
    op: str
    attrs: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    types: tuple[TensorType, ...]

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def type(self) -> TensorType:
        return self.types[0]


def _frozen_array(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.float32, copy=True, order="C")
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Graph:
    """A network, immutable: named, typed inputs, nodes in topological order, output value names and
    constants (weights, frozen float32 arrays).  Made by Module.to_graph, nn.graph, nn.trace or
    convgen.from_onnx, compiled by convgen.compile.  Raises ConvgenError when ill-formed (a value read
    before it is defined, a name defined twice, no outputs).

    >>> g = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).to_graph((1, 1, 8, 8), name="net")
    >>> g
    Graph('net', inputs=[input: float32[1, 1, 8, 8]], 2 layers, outputs=['1'])
    >>> [(node.name, node.op, node.type.shape) for node in g.nodes]
    [('0', 'conv', (1, 4, 6, 6)), ('1', 'activation', (1, 4, 6, 6))]
    >>> sorted(g.constants)
    ['0.bias', '0.weight']
    """
    name: str
    inputs: tuple[tuple[str, TensorType], ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)
    # What callers call the outputs (an ONNX file's graph output names), one per output; None: the
    # output values' names.  Not identifiers: the C code only ever sees lower's sanitized ones.
    output_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        frozen = {k: v if not v.flags.writeable and v.dtype == np.float32 and v.flags.c_contiguous
                  else _frozen_array(v) for k, v in self.constants.items()}
        object.__setattr__(self, "constants", MappingProxyType(frozen))
        self._check_well_formed()

    def __reduce__(self):
        # The constants sit in a read-only mapping proxy, which does not pickle; rebuild from a dict.
        return Graph, (self.name, self.inputs, self.nodes, self.outputs, dict(self.constants), self.output_names)

    # -- queries ---------------------------------------------------------
    def type_of(self, value: str) -> TensorType:
        return self._types()[value]

    def _types(self) -> dict[str, TensorType]:
        cached = self.__dict__.get("_type_table")
        if cached is None:
            cached = dict(self.inputs)
            cached.update({k: TensorType(v.shape) for k, v in self.constants.items()})
            for node in self.nodes:
                cached.update(zip(node.outputs, node.types))
            object.__setattr__(self, "_type_table", cached)
        return cached

    def producer(self, value: str) -> Node | None:
        for node in self.nodes:
            if value in node.outputs:
                return node
        return None

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"graph {self.name!r} has no layer {name!r}; layers: {[n.name for n in self.nodes]}")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inputs)

    @property
    def output_types(self) -> tuple[TensorType, ...]:
        return tuple(self.type_of(v) for v in self.outputs)

    def with_nodes(self, nodes: Iterable[Node], constants: Mapping[str, np.ndarray] | None = None,
                   outputs: tuple[str, ...] | None = None) -> "Graph":
        return replace(self, nodes=tuple(nodes),
                       constants=dict(self.constants if constants is None else constants),
                       outputs=self.outputs if outputs is None else outputs)

    def with_read_constants(self, nodes: Iterable[Node], constants: Mapping[str, np.ndarray] | None = None) -> "Graph":
        """with_nodes, keeping of `constants` (default: this graph's) only those some node reads: a pass that
        drops or rewrites nodes leaves no dead weights behind."""
        nodes = tuple(nodes)
        used = {v for n in nodes for v in n.inputs}
        pool = self.constants if constants is None else constants
        return self.with_nodes(nodes, constants={k: v for k, v in pool.items() if k in used})

    def summary(self, print_fn=print) -> str:
        """The per-layer table: output shape, parameters, FLOPs, receptive field (size and jump per
        spatial axis) and output memory, with totals and the peak of live activations.  Prints it with
        `print_fn` (None: do not print) and returns it.

        >>> nn.manual_seed(0)
        >>> g = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)).to_graph((1, 1, 8, 8), name="net")
        >>> _ = g.summary()
        Graph "net"
        layer  op     output shape  params  FLOPs  receptive field  jump  memory
        ------------------------------------------------------------------------
        input  input  [1, 1, 8, 8]  0       0      1x1              1x1   256 B
        0      conv   [1, 4, 6, 6]  40      2.74k  3x3              1x1   576 B
        1      relu   [1, 4, 6, 6]  0       144    3x3              1x1   576 B
        2      pool   [1, 4, 3, 3]  0       144    4x4              2x2   144 B
        ------------------------------------------------------------------------
        total params: 40 (0.2 KiB float32)   total FLOPs: 3.02k (3,024)
        memory: each layer's output; peak of live activations 1.1 KiB (in graph order, before fusion and buffer reuse)
        """
        from .summary import summarize
        text = summarize(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {t}" for n, t in self.inputs)
        return f"Graph({self.name!r}, inputs=[{ins}], {len(self.nodes)} layers, outputs={list(self.outputs)})"

    # -- validation ------------------------------------------------------
    def _check_well_formed(self) -> None:
        defined: set[str] = set(self.input_names) | set(self.constants)
        if len(defined) != len(self.inputs) + len(self.constants):
            raise ConvgenError(f"graph {self.name!r}: input and constant names must be unique")
        names: set[str] = set()
        for node in self.nodes:
            if node.name in names:
                raise ConvgenError(f"graph {self.name!r}: duplicate layer name {node.name!r}")
            names.add(node.name)
            missing = [v for v in node.inputs if v not in defined]
            if missing:
                raise ConvgenError(f"graph {self.name!r}: layer {node.name!r} reads {missing}, "
                                   "which no earlier layer, input or constant defines (cycle or dangling edge)")
            for out in node.outputs:
                if out in defined:
                    raise ConvgenError(f"graph {self.name!r}: value {out!r} is defined twice")
                defined.add(out)
        undefined = [v for v in self.outputs if v not in defined]
        if undefined:
            raise ConvgenError(f"graph {self.name!r}: outputs {undefined} are not defined")
        if not self.outputs:
            raise ConvgenError(f"graph {self.name!r} has no outputs")
        names = self.output_names
        if names is not None and (len(names) != len(self.outputs) or len(set(names)) != len(names)
                                  or not all(isinstance(n, str) for n in names)):
            raise ConvgenError(f"graph {self.name!r}: output_names {names!r} must be {len(self.outputs)} distinct "
                               "strings, one per output")


def check_input_types(layer: str, types: list[TensorType], count: int | tuple[int, int]) -> None:
    """Every op reads float32 values; check that and the number of inputs."""
    low, high = (count, count) if isinstance(count, int) else count
    if not low <= len(types) <= high:
        raise ShapeError(f"{layer}: expects {low if low == high else f'{low} to {high}'} inputs, got {len(types)}")
    for i, t in enumerate(types):
        if t.dtype != "float32":
            raise DTypeError(f"{layer}: input {i} is {t.dtype} (max-pool indices?); the layer computes on float32")

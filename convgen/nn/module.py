"""Module and Sequential as torch.nn has them, and the tracing entry points (Input, graph, trace)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ConvgenError, ShapeError
from ..ir import Graph
from ..trace import Tensor, Tracer


def Input(shape: Sequence[int], name: str = "input", tracer: Tracer | None = None) -> Tensor:
    """A graph input of a fixed shape (N, C, *spatial): a symbolic Tensor that layers, operators and
    the functions of this module build on; nn.graph(outputs) turns the result into a Graph.

    Each call without `tracer` starts a new trace; pass `tracer=x.tracer` for a second input of the
    same graph.  Raises ShapeError for an empty shape or a dimension < 1.

    >>> image = nn.Input((1, 3, 16, 16), name="image")
    >>> mask = nn.Input((1, 1, 16, 16), name="mask", tracer=image.tracer)
    >>> y = nn.Conv2d(3, 8, 3, padding=1)(image) * mask
    >>> y.shape
    (1, 8, 16, 16)
    >>> nn.graph(y, name="masked").input_names
    ('image', 'mask')
    """
    return (tracer or Tracer()).input(shape, name)


def graph(*outputs: Tensor, name: str = "model") -> Graph:
    """The Graph computing `outputs` (several: a graph with several outputs, in that order) from the
    Inputs they were traced from.  Raises ConvgenError without outputs or for Tensors of another trace.

    >>> x = nn.Input((1, 8, 32, 32), name="image")
    >>> y = nn.cat([nn.Conv2d(8, 8, 1)(x), nn.MaxPool2d(3, stride=1, padding=1)(x)], dim=1)
    >>> nn.graph(y, name="branches")
    Graph('branches', inputs=[image: float32[1, 8, 32, 32]], 3 layers, outputs=['concat0'])
    """
    if not outputs:
        raise ConvgenError("nn.graph needs at least one output Tensor")
    return outputs[0].tracer.graph(outputs, name)


def trace(fn: Callable, *input_shapes: Sequence[int], name: str | None = None,
          input_names: Sequence[str] | None = None) -> Graph:
    """Trace a Module (or any function of Tensors) on inputs of the given shapes into a Graph.

    Inputs are named "input" (one) or "input0", "input1", ... unless `input_names` are given; the graph
    is named after the Module's class or the function.  A function returning a tuple or list gives a
    graph with several outputs.  Raises ConvgenError without shapes or for a wrong number of names,
    ShapeError where a layer does not fit its input.  Module.to_graph is this method-style.

    >>> def block(x, skip):
    ...     return nn.relu(nn.Conv2d(4, 4, 3, padding=1)(x) + skip)
    >>> g = convgen.trace(block, (1, 4, 8, 8), (1, 4, 8, 8), input_names=["x", "skip"])
    >>> g
    Graph('block', inputs=[x: float32[1, 4, 8, 8], skip: float32[1, 4, 8, 8]], 3 layers, outputs=['relu0'])
    >>> convgen.compile(g)(np.ones((1, 4, 8, 8), np.float32), np.ones((1, 4, 8, 8), np.float32)).shape
    (1, 4, 8, 8)
    """
    if not input_shapes:
        raise ConvgenError("trace needs the shape of every input, e.g. trace(model, (1, 3, 32, 32))")
    names = list(input_names) if input_names else (["input"] if len(input_shapes) == 1
                                                   else [f"input{i}" for i in range(len(input_shapes))])
    if len(names) != len(input_shapes):
        raise ConvgenError(f"{len(input_shapes)} input shapes but {len(names)} input names")
    tracer = Tracer()
    inputs = [tracer.input(shape, n) for shape, n in zip(input_shapes, names)]
    if isinstance(fn, Module):
        fn._assign_names()
    try:
        result = fn(*inputs)
    finally:
        if isinstance(fn, Module):
            fn._assign_names(clear=True)  # names hold for this trace only
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    graph_name = name or (type(fn).__name__ if isinstance(fn, Module) else getattr(fn, "__name__", "model"))
    return tracer.graph(outputs, graph_name)



class Module:
    """Base class of layers and of user networks, as torch.nn.Module: children and parameters are
    registered by attribute, forward() says what the network computes on symbolic Tensors, and
    to_graph(shape) traces it into a Graph to compile.  state_dict() / load_state_dict() use torch's
    names.  Raises ConvgenError when an attribute is set before super().__init__(), or when called on
    arrays instead of Tensors (compile the graph to run on arrays).

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(1, 6, 5)
    ...         self.pool = nn.MaxPool2d(2)
    ...     def forward(self, x):
    ...         return self.pool(nn.relu(self.conv(x)))
    >>> nn.manual_seed(0)
    >>> net = Net()
    >>> [(name, value.shape) for name, value in net.state_dict().items()]
    [('conv.weight', (6, 1, 5, 5)), ('conv.bias', (6,))]
    >>> graph = net.to_graph((1, 1, 32, 32))
    >>> [node.name for node in graph.nodes]
    ['conv', 'relu0', 'pool']
    >>> model = convgen.compile(graph)
    >>> model(np.ones((1, 1, 32, 32), np.float32)).shape
    (1, 6, 14, 14)
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_qualname", "")

    def __setattr__(self, name: str, value) -> None:
        if "_modules" not in self.__dict__:
            raise ConvgenError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, value: np.ndarray | None) -> None:
        """A parameter (or buffer, like batch-norm running statistics) named as in torch's state_dict."""
        self._params[name] = None if value is None else np.ascontiguousarray(value, dtype=np.float32)

    def param(self, name: str) -> np.ndarray | None:
        """This module's own parameter `name` (None for an absent bias); KeyError if it has none so named."""
        return self._params[name]

    def forward(self, *inputs: Tensor):
        """What the module computes on symbolic Tensors; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs: Tensor):
        if not inputs or not all(isinstance(t, Tensor) for t in inputs):
            raise ConvgenError(f"{type(self).__name__} is called on symbolic Tensors (from nn.Input or "
                               "trace); to run on arrays, compile the graph: convgen.compile(model.to_graph(shape))")
        return self.forward(*inputs)

    def to_graph(self, *input_shapes: Sequence[int], name: str | None = None,
                 input_names: Sequence[str] | None = None) -> Graph:
        """This module traced on inputs of the given shapes into a Graph: nn.trace(self, ...)."""
        return trace(self, *input_shapes, name=name, input_names=input_names)

    # -- naming and state ------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(qualified name, module) for this module ("") and every descendant, as torch's."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def _assign_names(self, clear: bool = False) -> None:
        for qualname, module in self.named_modules():
            object.__setattr__(module, "_qualname", "" if clear else qualname)

    def layer_name(self, tracer: Tracer) -> str:
        return self._qualname or tracer.auto_name(type(self).__name__.lower())

    def label(self, name: str) -> str:
        """How errors name this layer: its graph name and its class."""
        return f"layer {name!r} ({type(self).__name__})"

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Every parameter and buffer by torch's state_dict name ("conv1.weight"); the arrays themselves."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            for name, value in module._params.items():
                if value is not None:
                    state[f"{prefix}.{name}" if prefix else name] = value
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Load arrays by torch-style name; torch's `num_batches_tracked` counters are ignored."""
        own = self.state_dict()
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise ConvgenError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        modules = dict(self.named_modules())
        for key, value in state.items():
            if key not in own:
                continue
            prefix, _, name = key.rpartition(".")
            array = np.asarray(value, dtype=np.float32)
            if array.shape != own[key].shape:
                raise ShapeError(f"load_state_dict: {key} has shape {array.shape}, the layer expects {own[key].shape}")
            modules[prefix].register_parameter(name, array)

    def parameter_count(self) -> int:
        """The number of values in the state_dict (batch-norm running statistics included)."""
        return sum(v.size for v in self.state_dict().values())

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


class Sequential(Module):
    """Layers applied in order, as torch.nn.Sequential; children are named "0", "1", ...

    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    >>> len(net), type(net[1]).__name__
    (4, 'ReLU')
    >>> list(net.state_dict())
    ['0.weight', '0.bias', '3.weight', '3.bias']
    >>> net.to_graph((1, 1, 8, 8)).output_types[0].shape
    (1, 10)
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self._modules.values():
            x = layer(x)
        return x


def _emit(module: Module, x: Tensor, op: str, attrs, params: Sequence[str] = (), name: str | None = None):
    """Emit one node reading x and the module's named parameters (skipping absent ones)."""
    name = name or module.layer_name(x.tracer)
    inputs: list = [x]
    for p in params:
        value = module.param(p)
        if value is not None:
            inputs.append(x.tracer.constant(f"{name}.{p}", value))
    return x.tracer.emit(name, op, attrs, inputs, kind=type(module).__name__)

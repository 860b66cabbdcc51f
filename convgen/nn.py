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
"""
from __future__ import annotations

import math
import operator
from collections import OrderedDict
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from . import ops, shapes
from .errors import ConvgenError, ShapeError, UnsupportedError
from .ir import Graph
from .ops import Activation
from .ops.lp_pool import check_norm
from .trace import Tensor, Tracer

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the generator that initialises new layers' parameters."""
    global _rng
    _rng = np.random.default_rng(seed)


# The most elements one parameter array may have (4 GiB of float32): a constructor given an absurd size
# (Linear(2**31, 1), BatchNorm2d(10**12)) must fail clearly rather than allocate until the OS kills it.
MAX_PARAMETER_ELEMENTS = 1 << 30


def _int(value) -> int:
    """A count or size argument as int(): TypeError or ValueError for what is none (inf too, which int()
    turns into OverflowError)."""
    try:
        return int(value)
    except OverflowError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _parameter_shape(owner: str, shape: Sequence[int]) -> tuple[int, ...]:
    """`shape` as ints (TypeError for floats, as numpy), ShapeError past MAX_PARAMETER_ELEMENTS (negative
    sizes: numpy's ValueError later)."""
    shape = tuple(operator.index(d) for d in shape)
    count = math.prod(shape)
    if count > MAX_PARAMETER_ELEMENTS:
        raise ShapeError(f"{owner}: a parameter of shape {shape} would have {count:,} elements; "
                         f"the limit is {MAX_PARAMETER_ELEMENTS:,} (4 GiB of float32)")
    return shape


def _uniform(owner: str, shape: Sequence[int], fan_in: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(max(fan_in, 1))  # torch's default (kaiming_uniform with a=sqrt(5))
    return _rng.uniform(-bound, bound, size=_parameter_shape(owner, shape)).astype(np.float32)


# -- tracing entry points -------------------------------------------------------

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


# -- Module ----------------------------------------------------------------------

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


# -- convolution ----------------------------------------------------------------------

class _ConvNd(Module):
    """torch.nn.Conv1d / Conv2d / Conv3d: weight (out_channels, in_channels/groups, *kernel), bias
    (out_channels,) unless bias=False, initialised as torch does from nn.manual_seed's generator.

    padding is an int, one per axis, per-side (begin, end) pairs per axis, "valid" or "same" (ONNX
    SAME_UPPER, at any stride); stride, dilation and groups (depthwise: groups == in_channels) as in
    torch.  Raises ShapeError for channels < 1 or not divisible by groups, and when called on an input
    of the wrong rank or channel count, or smaller than the dilated kernel.

    >>> nn.manual_seed(0)
    >>> conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    >>> conv.param("weight").shape
    (8, 3, 3, 3)
    >>> conv(nn.Input((1, 3, 16, 16))).shape
    (1, 8, 8, 8)
    >>> nn.Conv1d(4, 4, 3, padding="same", groups=4)(nn.Input((1, 4, 10))).shape
    (1, 4, 10)
    >>> nn.Conv3d(2, 4, 3, padding=((0, 0), (1, 1), (2, 0)))(nn.Input((1, 2, 5, 5, 5))).shape
    (1, 4, 3, 5, 5)
    >>> nn.Conv2d(3, 8, 3)(nn.Input((1, 4, 16, 16)))
    Traceback (most recent call last):
    ...
    convgen.errors.ShapeError: layer 'conv2d0' (Conv2d): axis 1 (channels): input has 4 channels, the layer expects 3
    """
    ndim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        label = type(self).__name__
        self.in_channels, self.out_channels, self.groups = _int(in_channels), _int(out_channels), _int(groups)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = shapes.as_tuple(stride, self.ndim, "stride", label)
        self.dilation = shapes.as_tuple(dilation, self.ndim, "dilation", label)
        self.padding = padding
        if self.in_channels < 1 or self.out_channels < 1:
            raise ShapeError(f"{label}: channels must be >= 1, got in={in_channels}, out={out_channels}")
        shapes.check_groups(label, self.in_channels, self.out_channels, self.groups)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        self.register_parameter("weight", _uniform(label,
            (self.out_channels, self.in_channels // self.groups) + self.kernel_size, fan_in))
        self.register_parameter("bias", _uniform(label, (self.out_channels,), fan_in) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        pads = shapes.resolve_padding(self.padding, x.shape[2:], self.kernel_size, self.stride, self.dilation, label)
        attrs = ops.ConvAttrs(self.kernel_size, self.stride, pads, self.dilation, self.groups)
        return _emit(self, x, "conv", attrs, ("weight", "bias"), name=name)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, dilation={self.dilation}, groups={self.groups}")


class Conv1d(_ConvNd):
    ndim = 1


class Conv2d(_ConvNd):
    ndim = 2


class Conv3d(_ConvNd):
    ndim = 3


class _ConvTransposeNd(Module):
    """torch's ConvTransposeNd: weight (in_channels, out_channels/groups, *kernel), bias (out_channels,).

    padding crops the full result (an int, one per axis, or (begin, end) pairs); output_padding adds
    outputs at the end and must be smaller than the stride or the dilation.  Called as
    layer(x, output_size=...), output_padding is chosen to give that spatial size, as in torch.
    Raises UnsupportedError for a padding_mode other than "zeros", ShapeError for a string padding,
    bad channels or groups, or an output_padding that is too large.

    >>> up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1)
    >>> x = nn.Input((1, 8, 5, 5))
    >>> up(x).shape, up(x, output_size=(10, 10)).shape
    ((1, 4, 9, 9), (1, 4, 10, 10))
    >>> nn.ConvTranspose1d(2, 2, 4, stride=2)(nn.Input((1, 2, 6))).shape
    (1, 2, 14)
    """
    ndim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros") -> None:
        super().__init__()
        label = type(self).__name__
        if padding_mode != "zeros":
            raise UnsupportedError(f"{label}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if isinstance(padding, str):
            raise ShapeError(f"{label}: padding must be an int or a tuple, got {padding!r}")
        self.in_channels, self.out_channels, self.groups = _int(in_channels), _int(out_channels), _int(groups)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = shapes.as_tuple(stride, self.ndim, "stride", label)
        self.dilation = shapes.as_tuple(dilation, self.ndim, "dilation", label)
        self.output_padding = shapes.as_tuple(output_padding, self.ndim, "output_padding", label)
        self.padding = padding
        if self.in_channels < 1 or self.out_channels < 1:
            raise ShapeError(f"{label}: channels must be >= 1, got in={in_channels}, out={out_channels}")
        shapes.check_groups(label, self.in_channels, self.out_channels, self.groups)
        shapes.check_output_padding(label, self.output_padding, self.stride, self.dilation)
        fan_in = self.out_channels // self.groups * math.prod(self.kernel_size)  # torch: weight.size(1) * kernel
        self.register_parameter("weight", _uniform(label,
            (self.in_channels, self.out_channels // self.groups) + self.kernel_size, fan_in))
        self.register_parameter("bias", _uniform(label, (self.out_channels,), fan_in) if bias else None)

    def __call__(self, x: Tensor, output_size: Sequence[int] | None = None):
        if not isinstance(x, Tensor):
            return super().__call__(x)  # the usual error for arrays
        return self.forward(x, output_size)

    def forward(self, x: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        pads = shapes.resolve_padding(self.padding, x.shape[2:], self.kernel_size, self.stride, self.dilation, label)
        output_padding = self.output_padding
        if output_size is not None:
            size = tuple(output_size)[-self.ndim:]  # torch accepts the full shape or the spatial sizes
            output_padding = shapes.transposed_output_padding_for(label, x.shape[2:], size, self.kernel_size,
                                                                  self.stride, pads, self.dilation)
        attrs = ops.ConvTransposeAttrs(self.kernel_size, self.stride, pads, self.dilation, output_padding,
                                       self.groups)
        return _emit(self, x, "conv_transpose", attrs, ("weight", "bias"), name=name)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, output_padding={self.output_padding}, dilation={self.dilation}, "
                f"groups={self.groups}")


class ConvTranspose1d(_ConvTransposeNd):
    ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    ndim = 2


class ConvTranspose3d(_ConvTransposeNd):
    ndim = 3


class _LocallyConnectedNd(Module):
    """Like a convolution, but each output position has its own weights (the seed's "local connection").

    Weight shape: (*out_spatial, out_channels, in_channels, *kernel); bias: (out_channels, *out_spatial).
    The input's spatial size is needed up front, to size the weights.
    """
    ndim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, input_size, stride=1,
                 padding=0, bias: bool = True) -> None:
        super().__init__()
        label = type(self).__name__
        self.in_channels, self.out_channels = _int(in_channels), _int(out_channels)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = shapes.as_tuple(stride, self.ndim, "stride", label)
        self.input_size = shapes.as_tuple(input_size, self.ndim, "input_size", label)
        ones = (1,) * self.ndim
        self.pads = shapes.resolve_padding(padding, self.input_size, self.kernel_size, self.stride, ones, label)
        out_spatial = shapes.window_output_shape(label, self.input_size, self.kernel_size, self.stride,
                                                 self.pads, ones)
        fan_in = self.in_channels * math.prod(self.kernel_size)
        self.register_parameter("weight", _uniform(label,
            out_spatial + (self.out_channels, self.in_channels) + self.kernel_size, fan_in))
        self.register_parameter("bias", _uniform(label, (self.out_channels,) + out_spatial, fan_in) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        if x.shape[2:] != self.input_size:
            raise ShapeError(f"{label}: spatial input size {x.shape[2:]} differs from the input_size "
                             f"{self.input_size} the layer was built for")
        attrs = ops.LocallyConnectedAttrs(self.kernel_size, self.stride, self.pads)
        return _emit(self, x, "locally_connected", attrs, ("weight", "bias"), name=name)


class LocallyConnected1d(_LocallyConnectedNd):
    ndim = 1


class LocallyConnected2d(_LocallyConnectedNd):
    ndim = 2


# -- pooling -------------------------------------------------------------------------------

class _PoolNd(Module):
    """torch.nn.MaxPool1d/2d/3d and AvgPool1d/2d/3d, with torch's arguments: stride defaults to the
    kernel size; padding is as for convolutions ("same" and (begin, end) pairs included); ceil_mode
    rounds the output size up (the last window must still start inside the input or the left pad);
    AvgPool counts the zero padding unless count_include_pad=False, or divides by divisor_override;
    MaxPool takes dilation, and with return_indices=True gives (values, int64 flat indices within
    each (n, c) plane).  Raises ShapeError for a window larger than the padded input or a pad over
    half the (dilated) window.

    >>> x = nn.Input((1, 4, 9, 9))
    >>> nn.MaxPool2d(3, stride=2, padding=1)(x).shape
    (1, 4, 5, 5)
    >>> values, indices = nn.MaxPool2d(2, ceil_mode=True, return_indices=True)(x)
    >>> values.shape, indices.type.dtype
    ((1, 4, 5, 5), 'int64')
    >>> nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False)(nn.Input((1, 2, 7))).shape
    (1, 2, 7)
    >>> nn.AvgPool3d(2)(nn.Input((1, 2, 4, 4, 4))).shape
    (1, 2, 2, 2, 2)
    """
    ndim = 0
    kind = ""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None,
                 return_indices: bool = False) -> None:
        super().__init__()
        label = type(self).__name__
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = self.kernel_size if stride is None else shapes.as_tuple(stride, self.ndim, "stride", label)
        self.dilation = shapes.as_tuple(dilation, self.ndim, "dilation", label)
        self.padding, self.ceil_mode = padding, bool(ceil_mode)
        self.count_include_pad, self.divisor_override = bool(count_include_pad), divisor_override
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor):
        name = self.layer_name(x.tracer)
        label = self.label(name)
        shapes.check_rank(label, x.shape, self.ndim + 2)
        pads = shapes.resolve_padding(self.padding, x.shape[2:], self.kernel_size, self.stride, self.dilation, label)
        attrs = ops.PoolAttrs(self.kind, self.kernel_size, self.stride, pads, self.dilation, self.ceil_mode,
                              self.count_include_pad, self.divisor_override, self.return_indices)
        return _emit(self, x, "pool", attrs, name=name)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"


def _max_pool(ndim: int):
    class MaxPool(_PoolNd):
        kind = "max"

        def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                     ceil_mode: bool = False) -> None:
            super().__init__(kernel_size, stride, padding, dilation, ceil_mode, return_indices=return_indices)
    MaxPool.ndim = ndim
    MaxPool.__name__ = MaxPool.__qualname__ = f"MaxPool{ndim}d"
    return MaxPool


def _avg_pool(ndim: int):
    class AvgPool(_PoolNd):
        kind = "avg"

        def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                     count_include_pad: bool = True, divisor_override: int | None = None) -> None:
            super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    AvgPool.ndim = ndim
    AvgPool.__name__ = AvgPool.__qualname__ = f"AvgPool{ndim}d"
    return AvgPool


MaxPool1d, MaxPool2d, MaxPool3d = (_max_pool(n) for n in (1, 2, 3))
AvgPool1d, AvgPool2d, AvgPool3d = (_avg_pool(n) for n in (1, 2, 3))


class _LPPoolNd(Module):
    """torch's LPPoolNd: (sum over the window of x^p)^(1/p); no padding, windows as the other pools.

    >>> nn.LPPool2d(2, 3, stride=2)(nn.Input((1, 4, 9, 9))).shape
    (1, 4, 4, 4)
    """
    ndim = 0

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> None:
        super().__init__()
        label = type(self).__name__
        check_norm(label, norm_type)
        self.norm_type = float(norm_type)
        self.kernel_size = shapes.as_tuple(kernel_size, self.ndim, "kernel_size", label)
        self.stride = self.kernel_size if stride is None else shapes.as_tuple(stride, self.ndim, "stride", label)
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        attrs = ops.LpPoolAttrs(self.norm_type, self.kernel_size, self.stride, ((0, 0),) * self.ndim,
                                (1,) * self.ndim, self.ceil_mode)
        return _emit(self, x, "lp_pool", attrs)

    def extra_repr(self) -> str:
        return f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}"


class LPPool1d(_LPPoolNd):
    ndim = 1


class LPPool2d(_LPPoolNd):
    ndim = 2


class LPPool3d(_LPPoolNd):
    ndim = 3


class GlobalLpPool(Module):
    """(sum over every spatial position of |x|^p)^(1/p), keeping the spatial axes as size 1 (ONNX GlobalLpPool)."""

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        check_norm(type(self).__name__, p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "global_lp_pool", ops.GlobalLpPoolAttrs(self.p))


class _GlobalPool(Module):
    kind = ""

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "global_pool", ops.GlobalPoolAttrs(self.kind))


class GlobalAvgPool(_GlobalPool):
    """Mean over every spatial axis, keeping them as size 1 (ONNX GlobalAveragePool)."""
    kind = "avg"


class GlobalMaxPool(_GlobalPool):
    kind = "max"


# -- activations and other layers -----------------------------------------------------

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


def add(a: Tensor, b) -> Tensor:
    """a + b (torch.add): b a Tensor, an array (a constant) or a number; numpy broadcasting."""
    return a + b


def sub(a: Tensor, b) -> Tensor:
    """a - b (torch.sub), broadcasting as add."""
    return a - b


def mul(a: Tensor, b) -> Tensor:
    """a * b (torch.mul), broadcasting as add."""
    return a * b


def div(a: Tensor, b) -> Tensor:
    """a / b (torch.div), broadcasting as add."""
    return a / b


def matmul(a: Tensor, b) -> Tensor:
    """a @ b (torch.matmul); a constant b (an array) is packed at compile time.

    >>> (nn.Input((1, 16)) @ np.ones((16, 4), np.float32)).shape
    (1, 4)
    """
    return a @ b


def add_n(*tensors: Tensor) -> Tensor:
    """x0 + x1 + ... in one kernel (ONNX Sum, tf.math.add_n), broadcasting like numpy."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise ConvgenError("nn.add_n takes one or more Tensors")
    return tensors[0].tracer.emit(None, "sum", ops.BinaryAttrs(), list(tensors), default_name="sum")


TORCH_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_pairs(x: Tensor, pad: Sequence[int], label: str) -> tuple[tuple[int, int], ...]:
    """torch's flat pad list (last axis first: left, right, top, bottom, ...) -> (begin, end) per axis."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ShapeError(f"{label}: pad {pad} must be (begin, end) pairs for at most {x.ndim} axes")
    pairs = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return tuple(pairs)


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None,  # noqa: A002
        name: str | None = None) -> Tensor:
    """torch.nn.functional.pad: modes constant, reflect, replicate, circular; negative pads crop."""
    label = f"layer {name!r} (pad)" if name else f"pad of {x.shape}"
    if mode not in TORCH_PAD_MODES:
        raise ConvgenError(f"{label}: unknown mode {mode!r}; known: {sorted(TORCH_PAD_MODES)}")
    attrs = ops.PadAttrs(_pad_pairs(x, pad, label), TORCH_PAD_MODES[mode], value or 0.0)
    return x.tracer.emit(name, "pad", attrs, [x], default_name="pad")


def reshape(x: Tensor, *shape) -> Tensor:
    """torch's reshape (one size may be -1): a view, no copy; Tensor.reshape.

    >>> x = nn.reshape(nn.Input((1, 3, 8, 8)), 1, 3, -1)
    >>> x.shape, nn.transpose(x, 1, 2).shape, nn.flatten(nn.permute(x, 0, 2, 1)).shape
    ((1, 3, 64), (1, 64, 3), (1, 192))
    """
    return x.reshape(*shape)


def permute(x: Tensor, *dims) -> Tensor:
    """torch's permute (axes in their new order), as a copy; Tensor.permute."""
    return x.permute(*dims)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """torch's transpose: axes dim0 and dim1 swapped, as a copy."""
    return x.transpose(dim0, dim1)


def channel_shuffle(x: Tensor, groups: int, name: str | None = None) -> Tensor:
    """ShuffleNet's channel shuffle (torch.nn.functional.channel_shuffle): (N, g*k, ...) viewed as
    (N, g, k, ...), axes 1 and 2 swapped, viewed back as (N, k*g, ...)."""
    label = f"channel_shuffle of {x.shape}" if name is None else f"layer {name!r} (ChannelShuffle)"
    if x.ndim < 2 or groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"{label}: axis 1 (channels): {x.shape[1] if x.ndim > 1 else None} channels "
                         f"are not divisible by groups={groups}")
    c, spatial = x.shape[1], x.shape[2:]
    split = x.reshape(-1, groups, c // groups, *spatial)  # -1: the batch, so the graph takes any batch
    name = name or x.tracer.auto_name("channel_shuffle")
    swapped = x.tracer.emit(name, "transpose", ops.TransposeAttrs((0, 2, 1) + tuple(range(3, x.ndim + 1))),
                            [split], kind="ChannelShuffle")
    return swapped.reshape(-1, c, *spatial)


def cat(tensors: Sequence[Tensor], dim: int = 1) -> Tensor:
    """torch.cat of Tensors of one trace along `dim` (the channels by default); the other axes must
    match (ShapeError), and at least one Tensor is needed (ConvgenError).

    >>> x = nn.Input((1, 3, 8, 8))
    >>> nn.cat([x, nn.relu(x)], dim=1).shape
    (1, 6, 8, 8)
    """
    tensors = list(tensors)
    if not tensors:
        raise ConvgenError("cat needs at least one Tensor")
    return tensors[0].tracer.emit(None, "concat", ops.ConcatAttrs(dim), tensors, default_name="concat")


def flatten(x: Tensor, start_dim: int = 1) -> Tensor:
    """torch's flatten from start_dim to the last axis (a view)."""
    return x.flatten(start_dim)


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


class Flatten(Module):
    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "flatten", ops.FlattenAttrs(self.start_dim))


class Softmax(Module):
    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "softmax", ops.SoftmaxAttrs(self.dim))


class _PadNd(Module):
    """torch's ConstantPadNd / ZeroPadNd / ReflectionPadNd / ReplicationPadNd / CircularPadNd."""
    ndim = 0
    mode = "constant"

    def __init__(self, padding, value: float = 0.0) -> None:
        super().__init__()
        self.padding = shapes.as_tuple(padding, 2 * self.ndim, "padding", type(self).__name__)
        self.value = float(value)

    def forward(self, x: Tensor) -> Tensor:
        return pad(x, self.padding, self.mode, self.value, name=self.layer_name(x.tracer))

    def extra_repr(self) -> str:
        return f"padding={self.padding}" + (f", value={self.value}" if self.mode == "constant" else "")


def _pad_layer(prefix: str, mode: str, ndim: int, zero: bool = False) -> type:
    if mode == "constant" and not zero:
        def init(self, padding, value: float) -> None:
            _PadNd.__init__(self, padding, value)
    else:
        def init(self, padding) -> None:
            _PadNd.__init__(self, padding)
    return type(f"{prefix}Pad{ndim}d", (_PadNd,), {"ndim": ndim, "mode": mode, "__init__": init})


ConstantPad1d, ConstantPad2d, ConstantPad3d = (_pad_layer("Constant", "constant", n) for n in (1, 2, 3))
ZeroPad1d, ZeroPad2d, ZeroPad3d = (_pad_layer("Zero", "constant", n, zero=True) for n in (1, 2, 3))
ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = (_pad_layer("Reflection", "reflect", n) for n in (1, 2, 3))
ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = (_pad_layer("Replication", "replicate", n) for n in (1, 2, 3))
CircularPad1d, CircularPad2d, CircularPad3d = (_pad_layer("Circular", "circular", n) for n in (1, 2, 3))


class LocalResponseNorm(Module):
    """torch.nn.LocalResponseNorm: its window puts size // 2 channels before c (ONNX LRN: (size - 1) // 2)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = _int(size), float(alpha), float(beta), float(k)

    def forward(self, x: Tensor) -> Tensor:
        return _emit(self, x, "lrn", ops.LRNAttrs(self.size, self.alpha, self.beta, self.k, before=self.size // 2))

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class PReLU(Module):
    """torch.nn.PReLU: one slope, or one per channel (axis 1)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        super().__init__()
        self.num_parameters = _int(num_parameters)
        self.register_parameter("weight", np.full(_parameter_shape(type(self).__name__, (self.num_parameters,)), init, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return prelu(x, self.param("weight"), name=self.layer_name(x.tracer))


class ChannelShuffle(Module):
    """torch.nn.ChannelShuffle: a view, a transpose kernel, a view."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = _int(groups)

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups, name=self.layer_name(x.tracer))

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Dropout(Identity):
    """Identity at inference, as in torch's eval mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()


# Layer families in modules of their own, reached as nn.<name> (they import this module, so they
# load on first use rather than from here).
_FAMILIES = {"convgen.nn_activations", "convgen.nn_norm", "convgen.nn_reductions", "convgen.nn_resize"}


def __getattr__(name: str):
    import importlib
    for family in sorted(_FAMILIES):
        module = importlib.import_module(family)
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module 'convgen.nn' has no attribute {name!r}")

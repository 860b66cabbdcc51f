"""Single ops on numpy arrays, with the signatures and semantics of torch.nn.functional.

Each call compiles (once, then from an in-process and an on-disk cache) a kernel
specialized for the op, its parameters and the shapes of its arguments; weights
are runtime inputs, so new weights of the same shape reuse the kernel.  The
in-process cache is shared by all threads: a lock makes concurrent first calls
compile a kernel once, and compiled kernels run concurrently (per-thread workspaces).

    >>> import numpy as np, convgen.functional as F
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((1, 3, 32, 32), dtype=np.float32)
    >>> w = rng.random((8, 3, 3, 3), dtype=np.float32)
    >>> y = F.conv2d(x, w, bias=np.zeros(8, np.float32), stride=2, padding="same")
    >>> y.shape
    (1, 8, 16, 16)
    >>> values, indices = F.max_pool2d(y, 2, return_indices=True)
    >>> values.shape, indices.dtype
    ((1, 8, 8, 8), dtype('int64'))
    >>> F.avg_pool1d(np.arange(6, dtype=np.float32).reshape(1, 1, 6), 2)
    array([[[0.5, 2.5, 4.5]]], dtype=float32)

Beyond torch: `padding` also takes per-side (begin, end) pairs, and "same" works
at any stride (ONNX SAME_UPPER: the odd pad at the end).  Arguments that are not
arrays of real numbers raise TypeError; a wrong rank, or shapes no layer could
have, raise ShapeError / ValueError naming the op, the axis and the numbers.
The keyword-only `backend` ("c" or "llvm") and `threads` (None: OMP_NUM_THREADS
when set, else the cores this process may run on; see convgen.threads) choose how
the kernel is built.  The examples below assume `np` and `F`.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from . import ops, shapes
from .ir import Graph, Node, TensorType
from .ops.lp_pool import check_norm
from .runtime import CompiledModel, compile as compile_graph
from .threads import default_threads, resolve_threads

_kernels: dict[tuple, CompiledModel] = {}
_kernels_lock = threading.Lock()
# A second, cheaper index in front of _kernels: a call's arguments as given (see _signature) -> its
# kernel, so a repeated call skips the argument checks, the attrs and the lock (7.6 -> ~3 us a call
# on small pools); only the compiled model's own call checks run, as for any model.
_signatures: dict[tuple, Callable] = {}
_UNAMBIGUOUS = frozenset({int, str, type(None)})   # no two of these compare equal
_PLAIN = frozenset({int, float, bool, str, type(None)})
_FLOAT32 = np.dtype(np.float32)


def _signature(exact: tuple, checked: tuple, threads, x, *others) -> tuple | None:
    """The index key of a call whose arrays (x, then weight and bias; None: no bias) are float32
    ndarrays, one flat tuple (hashed on every call: nesting costs): `exact`, the op and its normalized
    arguments (the op's name first, so no two ops' keys line up); `checked`, the arguments whose checks
    depend on their types (True, 1.0 and 1 are equal but not the same argument, each must meet the
    checks), typed where they are not plain ints, strings or None; then the arrays' shapes and what
    threads=None means now.  None when an argument is not a plain value or an array needs
    converting: that call takes the full path every time."""
    if type(x) is not np.ndarray or x.dtype is not _FLOAT32:
        return None
    if not _UNAMBIGUOUS.issuperset(map(type, checked)):
        try:
            checked = tuple(map(_typed, checked))   # tuples, floats, bools: each item with its type
        except TypeError:
            return None
    resolved = default_threads() if threads is None else 0
    if not others:
        return (*exact, *checked, x.shape, resolved)
    arrays = [x.shape]
    for array in others:
        if array is None:
            arrays.append(None)
        elif type(array) is np.ndarray and array.dtype is _FLOAT32:
            arrays.append(array.shape)
        else:
            return None
    return (*exact, *checked, *arrays, resolved)


def _typed(value):
    """An argument with its type, and a tuple's or list's items with theirs (TypeError: not plain)."""
    kind = type(value)
    if kind in _PLAIN:
        return kind, value
    if kind is tuple or kind is list:
        return kind, tuple(map(_typed, value))
    raise TypeError(kind)


def _remember(key: tuple | None, model: CompiledModel) -> CompiledModel:
    if key is not None:
        _signatures[key] = _runner(model)
    return model


def _runner(model: CompiledModel) -> Callable:
    """What an index hit calls with the arrays: the model's C call path (what model(*arrays) runs,
    without the argument packing of a call), else a one-input, one-output model's closure, else the model."""
    if model._fast is not None:
        return model._fast
    return model if model._single is None else model._single


def _array(value, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected a float32 array (real numbers are converted), got dtype {array.dtype}")
    return array if array.dtype == np.float32 else array.astype(np.float32)


def _kernel(op: str, attrs: Any, arrays: list[np.ndarray], names: list[str], backend: str,
            threads: int | None) -> CompiledModel:
    threads = resolve_threads(threads)   # the resolved count: OMP_NUM_THREADS may change between calls
    key = (op, attrs, tuple(a.shape for a in arrays), backend, threads)
    with _kernels_lock:
        model = _kernels.get(key)
        if model is None:
            types = [TensorType(a.shape) for a in arrays]
            out_types = ops.get(op).infer(f"{op}", attrs, types)
            outputs = tuple("output" if i == 0 else f"output{i}" for i in range(len(out_types)))
            node = Node(op, op, attrs, tuple(names), outputs, tuple(out_types))
            graph = Graph(op, tuple(zip(names, types)), (node,), outputs)
            model = _kernels[key] = compile_graph(graph, backend=backend, threads=threads)
    return model


def _no_stride(stride) -> bool:
    """torch's stride=None (or [] / ()): the kernel size.  Not `stride == []`: a numpy int compares
    elementwise, and an empty comparison has no truth value."""
    return stride is None or type(stride) in (list, tuple) and len(stride) == 0


def _check_rank(x: np.ndarray, ndim: int, fn: str) -> None:
    if x.ndim != ndim + 2:
        raise ValueError(f"{fn}: input must have rank {ndim + 2} (N, C, {ndim} spatial), got shape {x.shape}")


def _conv(ndim: int, input, weight, bias, stride, padding, dilation, groups, backend, threads):
    key = _signature(("conv", ndim, backend), (stride, padding, dilation, groups, threads), threads, input, weight,
                     bias)
    run = _signatures.get(key)
    if run is not None:
        return run(input, weight) if bias is None else run(input, weight, bias)
    fn = f"conv{ndim}d"
    x, w = _array(input, f"{fn} input"), _array(weight, f"{fn} weight")
    _check_rank(x, ndim, fn)
    if w.ndim != ndim + 2:
        raise ValueError(f"{fn}: weight must have rank {ndim + 2} (OC, C/groups, *kernel), got shape {w.shape}")
    kernel = w.shape[2:]
    stride = shapes.as_tuple(stride, ndim, "stride", fn)
    dilation = shapes.as_tuple(dilation, ndim, "dilation", fn)
    pads = shapes.resolve_padding(padding, x.shape[2:], kernel, stride, dilation, fn)
    attrs = ops.ConvAttrs(tuple(kernel), stride, pads, dilation, int(groups))
    arrays, names = [x, w], ["input", "weight"]
    if bias is not None:
        arrays.append(_array(bias, f"{fn} bias"))
        names.append("bias")
    return _remember(key, _kernel("conv", attrs, arrays, names, backend, threads))(*arrays)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend="c", threads=None):
    """1-D convolution of (N, C, L) by (OC, C/groups, K), as torch.nn.functional.conv1d.

    >>> F.conv1d(np.ones((1, 2, 10), np.float32), np.ones((4, 2, 3), np.float32), padding=1).shape
    (1, 4, 10)
    """
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, backend, threads)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend="c", threads=None):
    """2-D convolution of (N, C, H, W) by (OC, C/groups, KH, KW), as torch.nn.functional.conv2d.

    >>> F.conv2d(np.ones((1, 2, 8, 8), np.float32), np.ones((4, 2, 3, 3), np.float32), padding=1).shape
    (1, 4, 8, 8)
    """
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, backend, threads)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend="c", threads=None):
    """3-D convolution of (N, C, D, H, W) by (OC, C/groups, KD, KH, KW), as torch.nn.functional.conv3d.

    >>> F.conv3d(np.ones((1, 2, 4, 6, 6), np.float32), np.ones((4, 2, 3, 3, 3), np.float32), stride=(1, 2, 2)).shape
    (1, 4, 2, 2, 2)
    """
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, backend, threads)


def _pool(ndim: int, kind: str, input, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad,
          divisor_override, return_indices, backend, threads):
    key = _signature((kind, ndim, bool(ceil_mode), bool(count_include_pad), bool(return_indices), backend),
                     (kernel_size, stride, padding, dilation, divisor_override, threads), threads, input)
    run = _signatures.get(key)
    if run is not None:
        return run(input)
    fn = f"{kind}_pool{ndim}d"
    x = _array(input, f"{fn} input")
    _check_rank(x, ndim, fn)
    kernel = shapes.as_tuple(kernel_size, ndim, "kernel_size", fn)
    stride = kernel if _no_stride(stride) else shapes.as_tuple(stride, ndim, "stride", fn)
    dilation = shapes.as_tuple(dilation, ndim, "dilation", fn)
    pads = shapes.resolve_padding(padding, x.shape[2:], kernel, stride, dilation, fn)
    attrs = ops.PoolAttrs(kind, kernel, stride, pads, dilation, bool(ceil_mode), bool(count_include_pad),
                          None if divisor_override is None else int(divisor_override), bool(return_indices))
    return _remember(key, _kernel("pool", attrs, [x], ["input"], backend, threads))(x)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               *, backend="c", threads=None):
    """As torch.nn.functional.max_pool1d; with return_indices, (values, int64 indices into each input row).

    >>> F.max_pool1d(np.array([[[1, 5, 2, 0, 3, 4]]], np.float32), 2, return_indices=True)
    (array([[[5., 2., 4.]]], dtype=float32), array([[[1, 2, 5]]]))
    """
    return _pool(1, "max", input, kernel_size, stride, padding, dilation, ceil_mode, True, None, return_indices,
                 backend, threads)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               *, backend="c", threads=None):
    """As torch.nn.functional.max_pool2d; indices are flat positions within each (n, c) input plane.

    >>> F.max_pool2d(np.ones((1, 2, 8, 8), np.float32), 3, stride=2, padding=1, ceil_mode=True).shape
    (1, 2, 5, 5)
    """
    return _pool(2, "max", input, kernel_size, stride, padding, dilation, ceil_mode, True, None, return_indices,
                 backend, threads)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
               *, backend="c", threads=None):
    """As torch.nn.functional.max_pool3d.

    >>> F.max_pool3d(np.ones((1, 2, 4, 8, 8), np.float32), 2).shape
    (1, 2, 2, 4, 4)
    """
    return _pool(3, "max", input, kernel_size, stride, padding, dilation, ceil_mode, True, None, return_indices,
                 backend, threads)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, backend="c", threads=None):
    """As torch.nn.functional.avg_pool1d (plus divisor_override, as the 2-D and 3-D forms have).

    >>> F.avg_pool1d(np.ones((1, 1, 4), np.float32), 3, stride=1, padding=1, count_include_pad=False)
    array([[[1., 1., 1., 1.]]], dtype=float32)
    """
    return _pool(1, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override,
                 False, backend, threads)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, backend="c", threads=None):
    """As torch.nn.functional.avg_pool2d.

    >>> F.avg_pool2d(np.ones((1, 2, 8, 8), np.float32), 2).shape
    (1, 2, 4, 4)
    """
    return _pool(2, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override,
                 False, backend, threads)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, backend="c", threads=None):
    """As torch.nn.functional.avg_pool3d.

    >>> F.avg_pool3d(np.ones((1, 2, 4, 8, 8), np.float32), 2, divisor_override=1)[0, 0, 0, 0]
    array([8., 8., 8., 8.], dtype=float32)
    """
    return _pool(3, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override,
                 False, backend, threads)


def _conv_transpose(ndim: int, input, weight, bias, stride, padding, output_padding, groups, dilation, backend,
                    threads):
    key = _signature(("conv_transpose", ndim, backend), (stride, padding, output_padding, groups, dilation, threads),
                     threads, input, weight, bias)
    run = _signatures.get(key)
    if run is not None:
        return run(input, weight) if bias is None else run(input, weight, bias)
    fn = f"conv_transpose{ndim}d"
    x, w = _array(input, f"{fn} input"), _array(weight, f"{fn} weight")
    _check_rank(x, ndim, fn)
    if w.ndim != ndim + 2:
        raise ValueError(f"{fn}: weight must have rank {ndim + 2} (C, OC/groups, *kernel), got shape {w.shape}")
    stride = shapes.as_tuple(stride, ndim, "stride", fn)
    dilation = shapes.as_tuple(dilation, ndim, "dilation", fn)
    output_padding = shapes.as_tuple(output_padding, ndim, "output_padding", fn)
    shapes.check_output_padding(fn, output_padding, stride, dilation)
    pads = tuple((p, p) for p in shapes.as_tuple(padding, ndim, "padding", fn))
    attrs = ops.ConvTransposeAttrs(tuple(w.shape[2:]), stride, pads, dilation, output_padding, int(groups))
    arrays, names = [x, w], ["input", "weight"]
    if bias is not None:
        arrays.append(_array(bias, f"{fn} bias"))
        names.append("bias")
    return _remember(key, _kernel("conv_transpose", attrs, arrays, names, backend, threads))(*arrays)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     backend="c", threads=None):
    """1-D transposed convolution of (N, C, L) by (C, OC/groups, K), as torch.nn.functional.conv_transpose1d.

    >>> F.conv_transpose1d(np.ones((1, 2, 5), np.float32), np.ones((2, 4, 3), np.float32), stride=2).shape
    (1, 4, 11)
    """
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation, backend,
                           threads)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     backend="c", threads=None):
    """2-D transposed convolution of (N, C, H, W) by (C, OC/groups, KH, KW), as
    torch.nn.functional.conv_transpose2d.  output_padding must be smaller than the stride or the
    dilation (ShapeError otherwise).

    >>> w = np.ones((2, 4, 3, 3), np.float32)
    >>> F.conv_transpose2d(np.ones((1, 2, 4, 4), np.float32), w, stride=2, padding=1, output_padding=1).shape
    (1, 4, 8, 8)
    """
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation, backend,
                           threads)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     backend="c", threads=None):
    """3-D transposed convolution of (N, C, D, H, W) by (C, OC/groups, KD, KH, KW), as
    torch.nn.functional.conv_transpose3d.

    >>> F.conv_transpose3d(np.ones((1, 2, 2, 3, 3), np.float32), np.ones((2, 4, 2, 2, 2), np.float32)).shape
    (1, 4, 3, 4, 4)
    """
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation, backend,
                           threads)


def _lp_pool(ndim: int, input, norm_type, kernel_size, stride, ceil_mode, backend, threads):
    key = _signature(("lp_pool", ndim, bool(ceil_mode), backend), (norm_type, kernel_size, stride, threads), threads,
                     input)
    run = _signatures.get(key)
    if run is not None:
        return run(input)
    fn = f"lp_pool{ndim}d"
    x = _array(input, f"{fn} input")
    _check_rank(x, ndim, fn)
    kernel = shapes.as_tuple(kernel_size, ndim, "kernel_size", fn)
    stride = kernel if _no_stride(stride) else shapes.as_tuple(stride, ndim, "stride", fn)
    check_norm(fn, norm_type)
    attrs = ops.LpPoolAttrs(float(norm_type), kernel, stride, ((0, 0),) * ndim, (1,) * ndim, bool(ceil_mode))
    return _remember(key, _kernel("lp_pool", attrs, [x], ["input"], backend, threads))(x)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, backend="c", threads=None):
    """As torch.nn.functional.lp_pool1d: (sum over the window of x^p)^(1/p), NaN where torch gives NaN
    (a negative window sum for p != 1, a negative x for non-integral p).  norm_type must be a number
    > 0 (ShapeError); inf gives the max of |x|.

    >>> F.lp_pool1d(np.array([[[3, 4, 6, 8]]], np.float32), 2, 2)
    array([[[ 5., 10.]]], dtype=float32)
    """
    return _lp_pool(1, input, norm_type, kernel_size, stride, ceil_mode, backend, threads)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, backend="c", threads=None):
    """As torch.nn.functional.lp_pool2d.

    >>> F.lp_pool2d(np.ones((1, 2, 8, 8), np.float32), 2, 3, stride=2, ceil_mode=True).shape
    (1, 2, 4, 4)
    """
    return _lp_pool(2, input, norm_type, kernel_size, stride, ceil_mode, backend, threads)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, backend="c", threads=None):
    """As torch.nn.functional.lp_pool3d.

    >>> F.lp_pool3d(np.ones((1, 2, 4, 8, 8), np.float32), 1, 2).shape
    (1, 2, 2, 4, 4)
    """
    return _lp_pool(3, input, norm_type, kernel_size, stride, ceil_mode, backend, threads)

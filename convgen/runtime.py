"""Compile graphs and run the libraries from Python through cffi.

Calls are zero-copy for aligned C-contiguous arrays of the declared element type and shape
(float32, unless the graph declares an input of another type: convgen/dtypes.py; such an input
takes exactly its type, any other dtype is a TypeError naming it).
The conversion rule for everything else (float32 inputs):
  - other real dtypes (float64, float16, big-endian, signed and unsigned ints) are cast to
    float32 (as numpy's astype: large integers round, out-of-range values become inf);
  - non-contiguous, Fortran-order, negatively strided or misaligned arrays are copied;
  - nested lists, torch tensors and anything np.asarray accepts are converted the same way;
  - bool, complex, string, object and datetime arrays are a TypeError; a wrong shape
    (including a zero-size batch) is a ValueError naming the input and both shapes.
out= arrays are never converted: they must be writeable, aligned, C-contiguous and exact.
cffi releases the GIL for the duration of the call.  Each Python thread gets its own
workspace (per-thread, allocated on its first call), so one CompiledModel may be called
from many threads at once with no lock.

A call whose arrays need nothing done (fixed batch; ndarrays of exactly the declared dtype,
the signature's shapes, C-contiguous and aligned; out= writeable too) takes a fast path that
checks just that.  It runs in C (convgen/callpath.py: a small CPython extension built once into
the cache; ~0.3 us a call around the kernels on Zen 4, where the Python path below took ~1.8 us).
Where the extension is unavailable (or CONVGEN_C_CALLS=0) the fast path is Python: it reuses
the cffi buffers of the thread's previous call when it passes the very same array objects (for
one input and one output, a closure prepared at load time does it), so the arrays of each
thread's last call stay referenced until its next call or until the model is collected.

A model compiled with batch=None takes any batch N >= 1 at call time: every input's
first axis is N (the same N for all inputs), every output's first axis is N, and the
workspace grows to N x the per-sample arena.  N = 0 is a ValueError.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import threading
import uuid
import weakref
from pathlib import Path
from typing import Protocol, Sequence

import cffi
import numpy as np

from . import backends, callpath, dtypes, lower, passes, progress
from .backends.c import environment, sanitizing, weights_checksum
from .batch import check_batch_axis, rebatch
from .dtypes import raw as raw_buffer
from .errors import ConvgenError
from .ir import Graph
from .target import host
from .threads import OPENMP_RUNTIME, resolve_threads
from .tune import tune_graph

_ffi_lock = threading.Lock()
_FLOAT32 = np.dtype(np.float32)


def compile(graph: Graph, backend: str = "c", threads: int | None = None,  # noqa: A001 (public API name)
            cache_dir: str | os.PathLike | None = None, batch: int | None | str = "graph",
            tune: bool = False, winograd: bool = True) -> "CompiledModel":
    """Optimize, lower and build `graph` into a shared library, and load it.

    batch: "graph" (default) keeps the batch the graph was built for, fixed at compile time; an int
    compiles for that batch instead; None compiles kernels whose batch loop bound is a run-time
    argument, so the model takes inputs of any batch N >= 1 (every value must have the batch as its
    first axis, else UnsupportedError).

    tune=True measures candidate schedules of every convolution on this machine (a progress bar on a
    terminal) and builds with the fastest; winners are cached per layer signature and CPU on disk
    (<cache>/tuning.json), so later compiles of the same layers cost nothing extra.

    threads: the kernels' OpenMP team size, fixed at compile time; None takes OMP_NUM_THREADS when it
    is set, else the cores this process may run on (affinity, cgroup CPU quota): convgen.threads.

    winograd=False keeps every 3x3 stride-1 layer on the direct path; by default the cost model runs
    those it estimates faster as Winograd F(m x m, 3 x 3) (float32 error within 1e-4 of the output's scale).

    Raises TypeError for anything but a Graph, ValueError for an unknown backend or a bad `threads`,
    CompileError when the C compiler or LLVM fails (ToolchainError when neither is usable), and
    UnsupportedError for a batch=None graph that mixes the batch into other axes.

    >>> g = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).to_graph((1, 1, 8, 8), name="net")
    >>> model = convgen.compile(g)
    >>> model(np.ones((1, 1, 8, 8), np.float32)).shape
    (1, 4, 6, 6)
    >>> any_batch = convgen.compile(g, batch=None)
    >>> any_batch(np.ones((5, 1, 8, 8), np.float32)).shape
    (5, 4, 6, 6)
    """
    # Every argument but the graph, as given: a pickled model is rebuilt from the graph and these.
    options = {name: value for name, value in locals().items() if name != "graph"}
    given = graph
    if not isinstance(graph, Graph):
        raise TypeError(f"convgen.compile takes a convgen.Graph, got {type(graph).__name__}; "
                        "build one with module.to_graph(shape) or convgen.from_onnx(path)")
    build = backends.get(backend)
    resolved_threads = resolve_threads(threads)
    if batch is None:
        check_batch_axis(graph)
        graph = rebatch(graph, 1)
    elif batch != "graph":
        graph = rebatch(graph, batch)
    # A bar on a terminal when a compile outlasts progress.DELAY (a big graph, a cold cache).
    with progress.bar(f"compiling {graph.name} ({len(graph.nodes)} layers)", total=3) as steps:
        steps.update(0, stage="optimize")
        optimized = passes.optimize(graph)
        steps.update(1, stage="lower")
        schedules = (tune_graph(optimized, host(), resolved_threads, backend, cache_dir, winograd=winograd,
                                load=_load_candidate) if tune else None)
        lowered = lower.lower(optimized, host(), resolved_threads, dynamic_batch=batch is None, schedules=schedules,
                              winograd=winograd)
        steps.update(1, stage=f"generate and build ({backend})")
        library, source = build(lowered, cache_dir=cache_dir)
        steps.update(1)
    model = CompiledModel(library, lowered.prefix, source=source, graph=optimized, lowered=lowered)
    model._recipe = (given, options)     # what a pickle carries (see CompiledModel.__reduce__)
    return model


def _load_candidate(library, lowered, source: str, graph: Graph) -> "CompiledModel":
    """A tuning candidate as a model (tune_graph's load=)."""
    return CompiledModel(library, lowered.prefix, source=source, graph=graph, lowered=lowered)


_rebuilt: "weakref.WeakValueDictionary[str, CompiledModel]" = weakref.WeakValueDictionary()
_rebuilt_lock = threading.Lock()


def _unpickled(token: str, make) -> "CompiledModel":
    """The model a pickle refers to, made once per process however often it is unpickled."""
    with _rebuilt_lock:
        model = _rebuilt.get(token)
        if model is None:
            model = make()
            model._token = token
            _rebuilt[token] = model
        return model


def _rebuild(token: str, graph: Graph, options: dict) -> "CompiledModel":
    # Compiling again is a cache hit when the cache is shared (same machine, or a shared CONVGEN_CACHE_DIR).
    return _unpickled(token, lambda: compile(graph, **options))


def _reload(token: str, path: str) -> "CompiledModel":
    return _unpickled(token, lambda: load(path))


def load(path: str | os.PathLike) -> "CompiledModel":
    """Load a model written by CompiledModel.save(format="shared") (its directory, or the .so itself);
    weights saved to a side file are read from <name>.weights beside the library and checked.

    The model keeps no graph or source (no show_code).  Raises ConvgenError for a directory without
    exactly one lib<name>.so, a file that is not a convgen library, or missing or mismatched weights.
    dlopen runs the library's code: load only libraries you trust.

    >>> import tempfile
    >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3)).to_graph((1, 1, 8, 8), name="net"))
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     _ = model.save(directory, weights="file")
    ...     loaded = convgen.load(directory)
    >>> x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    >>> np.array_equal(loaded(x), model(x))
    True
    """
    path = Path(path)
    if path.is_dir():
        libraries = sorted(path.glob("lib*.so"))
        if len(libraries) != 1:
            raise ConvgenError(f"{path}: expected exactly one lib<name>.so, found {[p.name for p in libraries]}")
        path = libraries[0]
    match = re.fullmatch(r"lib(\w+?)(-[0-9a-f]{32})?\.so", path.name)
    if not match or not path.is_file():
        raise ConvgenError(f"{path}: not a convgen model library (expected lib<name>.so)")
    try:   # dlopen runs the library's code: load only libraries you trust, as with any .so
        return CompiledModel(path, match.group(1))
    except (OSError, AttributeError, ValueError, KeyError, TypeError) as error:
        raise ConvgenError(f"{path}: not a loadable convgen model library ({type(error).__name__}: {error})") from None


# <prefix>_forward's status codes (templates/model.h.j2 names them)
_STATUS_ERRORS = {-1: MemoryError, -2: ValueError, -3: ConvgenError}
_STATUS_TEXT = {-1: "the workspace could not be allocated", -2: "bad batch size", -3: "the weights are missing"}


def _raise_status(prefix: str, status: int):
    raise _STATUS_ERRORS.get(status, ConvgenError)(f"{prefix}: {_STATUS_TEXT.get(status, status)}")


def _thread_workspace(ffi: cffi.FFI, local: threading.local, nbytes: int, exact: bool):
    """This thread's workspace of at least nbytes (one per thread, grown to the largest batch seen), or
    NULL: none needed, or exact-size arenas allocated by the library (under sanitizers)."""
    if nbytes == 0 or exact:
        return ffi.NULL
    buf = getattr(local, "workspace", None)
    if buf is None or buf[2] < nbytes:
        raw = np.empty(nbytes + 64, np.uint8)
        offset = (-raw.ctypes.data) % 64
        buf = local.workspace = (raw, ffi.from_buffer(raw[offset:offset + nbytes]), nbytes)
    return buf[1]


class Library(Protocol):
    """Where a model's entry points come from: a shared library on disk, or code JIT-compiled in process."""

    path: Path | None

    def function(self, ffi: cffi.FFI, name: str, pointer_type: str): ...

    def write(self, destination: Path) -> None: ...


_PINNED: list[ctypes.CDLL | None] = []


def _pin_openmp_runtime() -> None:
    """Keep libgomp mapped for the life of the process.

    A model library is dlclose'd when its CompiledModel is collected.  If it held the last
    reference to libgomp, libgomp is unloaded too, and the process crashed later with a
    segfault in a native frame (seen in about half the runs of tests/test_llvm.py under xdist,
    never since libgomp is pinned).  One extra reference, never dropped, rules that out."""
    if not _PINNED:
        try:
            _PINNED.append(ctypes.CDLL(OPENMP_RUNTIME, mode=ctypes.RTLD_GLOBAL))
        except OSError:  # no libgomp: libraries built without OpenMP need none
            _PINNED.append(None)


class SharedLibrary:
    """A model library file, opened with dlopen."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lib = None

    def function(self, ffi: cffi.FFI, name: str, pointer_type: str):
        if self._lib is None:
            _pin_openmp_runtime()
            self._lib = ffi.dlopen(str(self.path))
        return getattr(self._lib, name)

    def write(self, destination: Path) -> None:
        shutil.copyfile(self.path, destination)

    def close(self, ffi: cffi.FFI) -> None:
        """dlclose the library.  cffi's library object and its FFI refer to each other, so left to
        themselves they wait for a cyclic gc pass, and the .so stayed mapped that long (5 of 20 freed
        models' libraries still mapped in a compile loop).  Called when the model is collected."""
        if self._lib is not None:
            lib, self._lib = self._lib, None
            ffi.dlclose(lib)


class CompiledModel:
    """A compiled graph: call it with arrays, get arrays back (what convgen.compile and convgen.load return).

    Calling it runs the model (see __call__); save() writes it for C, summary() and show_code()
    inspect it; it pickles by reference.  Attributes: input_names/input_shapes,
    output_names/output_shapes, batch (None: any batch), backend, workspace_bytes, weights_bytes,
    graph (the optimized graph; None once loaded) and source (the generated code; None once loaded).

    >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).to_graph((1, 1, 8, 8), name="net"))
    >>> model
    CompiledModel('net', inputs=[input[1, 1, 8, 8]], outputs=[[1, 4, 6, 6]], library=...)
    >>> model.input_names, model.output_shapes
    (('input',), ((1, 4, 6, 6),))
    """

    def __init__(self, library: Path | Library, prefix: str, source: str | None = None, graph: Graph | None = None,
                 lowered=None) -> None:
        self._library = SharedLibrary(library) if isinstance(library, (str, os.PathLike)) else library
        self.library_path = self._library.path
        self.prefix = prefix
        self.source = source
        self.graph = graph
        self._lowered = lowered
        self._ffi = cffi.FFI()
        self._ffi.cdef(f"const char* {prefix}_signature(void);")
        signature_fn = self._library.function(self._ffi, f"{prefix}_signature", "const char*(*)(void)")
        self.signature = json.loads(self._ffi.string(signature_fn()).decode())
        self._ffi.cdef(environment().get_template("cdef.h.j2").render(
            prefix=prefix, inputs=self.signature["inputs"], outputs=self.signature["outputs"]), override=True)
        run_params = environment().get_template("common.c.j2").module.run_params(
            self.signature["inputs"], self.signature["outputs"], names=False)
        self._run = self._library.function(self._ffi, f"{prefix}_forward", f"int(*)({run_params})")
        self.backend = self.signature.get("backend", "c")
        self.batch: int | None = self.signature["batch"]  # None: any batch, given at call time
        self.input_names = tuple(i["name"] for i in self.signature["inputs"])
        self.input_shapes = tuple(tuple(i["shape"]) for i in self.signature["inputs"])
        self.output_names = tuple(o["name"] for o in self.signature["outputs"])
        self.output_shapes = tuple(tuple(o["shape"]) for o in self.signature["outputs"])
        self._input_dtypes = tuple(dtypes.numpy_dtype(i.get("dtype", "float32")) for i in self.signature["inputs"])
        self._input_ctypes = tuple(dtypes.get(i.get("dtype", "float32")).c_type + "[]" for i in self.signature["inputs"])
        self._output_dtypes = tuple(dtypes.numpy_dtype(o["dtype"]) for o in self.signature["outputs"])
        self._output_ctypes = tuple(dtypes.get(o["dtype"]).c_type + "[]" for o in self.signature["outputs"])
        # every input's and output's C type, looked up once (from_buffer parses a type name each call)
        self._array_ctypes = tuple(self._ffi.typeof(t) for t in self._input_ctypes + self._output_ctypes)
        self.workspace_bytes = int(self.signature["workspace_bytes"])  # per call; per sample if batch is None
        self.weights_bytes = int(self.signature["weights_bytes"])
        self._weights = self._find_weights()
        self._local = threading.local()
        self._recipe: tuple[Graph, dict] | None = None     # set by compile(): how to rebuild after pickling
        self._token = uuid.uuid4().hex                      # one rebuild per process per pickled model

        # Under CONVGEN_SANITIZE the library allocates an exact-size arena per call, so
        # AddressSanitizer sees a write past its end (our slack of 64 bytes would hide it).
        self._exact_workspace = sanitizing()
        self._fast = self._c_call()
        # The Python fast path, only where the C one is unavailable (__call__ tries the C one first).
        self._single = self._single_array_call() if self._fast is None else None
        # Unmap the library when the model goes (nothing else holds its functions), but not at exit,
        # when other threads may still be running.
        close = getattr(self._library, "close", None)
        if close is not None:
            weakref.finalize(self, close, self._ffi).atexit = False

    # -- pickling ---------------------------------------------------------------------
    def __reduce__(self):
        """Pickle by reference: the graph and compile options (or a saved library's path), not the code.

        The receiving process compiles the graph again, which the on-disk cache turns into a load
        when it shares the cache directory (same machine, or CONVGEN_CACHE_DIR on a shared file
        system); models loaded with convgen.load(path) are loaded from the same path. So
        multiprocessing, Dask and Ray workers can take a CompiledModel as an argument:

        >>> import pickle
        >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3)).to_graph((1, 1, 8, 8)))
        >>> clone = pickle.loads(pickle.dumps(model))
        >>> x = np.ones((1, 1, 8, 8), np.float32)
        >>> np.array_equal(clone(x), model(x))
        True
        """
        if self._recipe is not None:
            return _rebuild, (self._token, *self._recipe)
        if self.library_path is not None:
            return _reload, (self._token, str(self.library_path))
        raise TypeError(f"{self.prefix}: this model has neither a graph nor a library file to pickle by reference")

    def _find_weights(self):
        """The weights blob: embedded in the library, or the side file <name>.weights beside it."""
        embedded = self._library.function(self._ffi, f"{self.prefix}_embedded_weights", "const void*(*)(void)")()
        if embedded != self._ffi.NULL or self.weights_bytes == 0:
            return embedded
        path = self.library_path.parent / f"{self.prefix}.weights" if self.library_path else None
        if path is None or not path.is_file():
            raise ConvgenError(f"{self.prefix}: the weights are in a side file, but {path} does not exist")
        blob = path.read_bytes()
        if len(blob) != self.weights_bytes:
            raise ConvgenError(f"{path}: {len(blob)} bytes, but the library needs {self.weights_bytes}")
        if f"{weights_checksum(blob):016x}" != self.signature["weights_checksum"]:
            raise ConvgenError(f"{path}: checksum {weights_checksum(blob):016x} does not match the library's "
                               f"{self.signature['weights_checksum']} (weights of another model, or damaged)")
        raw = np.empty(len(blob) + 64, np.uint8)
        offset = (-raw.ctypes.data) % 64
        raw[offset:offset + len(blob)] = np.frombuffer(blob, np.uint8)
        self._weights_memory = raw
        return self._ffi.from_buffer(raw[offset:offset + len(blob)])

    # -- calling ------------------------------------------------------------------
    def _workspace(self, batch: int):
        nbytes = self.workspace_bytes * (batch if self.batch is None else 1)
        return _thread_workspace(self._ffi, self._local, nbytes, self._exact_workspace)

    def _shape_at(self, shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
        """A signature shape at call batch `batch` (the signature's own batch unless it is a run-time value)."""
        return shape if self.batch is not None else (batch, *shape[1:])

    def _as_input(self, index: int, value) -> np.ndarray:
        name, shape, dtype = self.input_names[index], self.input_shapes[index], self._input_dtypes[index]
        if type(value) is not np.ndarray:
            try:
                value = np.asarray(value)
            except ValueError as e:  # ragged nested lists
                raise ValueError(f"input {name!r}: not an array of shape {shape}: {e}") from None
        if dtype != _FLOAT32:
            if value.dtype != dtype:   # an input of another element type is taken as it is, never converted
                raise TypeError(f"input {name!r}: expected a {dtype} array (the model declares it {dtype}), "
                                f"got dtype {value.dtype}")
        elif value.dtype != np.float32:
            if value.dtype.kind not in "fiu":
                raise TypeError(f"input {name!r}: expected a float32 array (real numbers are converted), "
                                f"got dtype {value.dtype}")
            value = value.astype(np.float32)
        if self.batch is None and value.ndim == len(shape) and value.shape[1:] == shape[1:]:
            shape = value.shape  # any batch; _batch_of checks it
        if value.shape != shape:
            expected = shape if self.batch is not None else f"(N, {', '.join(map(str, shape[1:]))})"
            raise ValueError(f"input {name!r}: expected shape {expected}, got {value.shape}")
        if not value.flags.c_contiguous or not value.flags.aligned:
            value = np.array(value, order="C")   # a copy: contiguous, and 4-byte aligned for the kernels
        return value

    def _batch_of(self, arrays: list[np.ndarray]) -> int:
        """The call's batch: the fixed one, or the inputs' common first axis (at least 1)."""
        if self.batch is not None:
            return self.batch
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) > 1:
            raise ValueError(f"inputs {list(self.input_names)} have different batch sizes {[a.shape[0] for a in arrays]}")
        batch = sizes.pop()
        if batch < 1:
            raise ValueError("batch size 0: a model compiled with batch=None runs batches of 1 or more")
        return batch

    def _check_out(self, out, batch: int) -> list[np.ndarray]:
        outs = [out] if isinstance(out, np.ndarray) else list(out)
        if len(outs) != len(self.output_shapes):
            raise ValueError(f"out= needs {len(self.output_shapes)} array(s), got {len(outs)}")
        shapes = [self._shape_at(s, batch) for s in self.output_shapes]
        for o, shape, dtype, name in zip(outs, shapes, self._output_dtypes, self.output_names):
            if not isinstance(o, np.ndarray):
                raise TypeError(f"out= for output {name!r} must be a numpy array, got {type(o).__name__}")
            if (o.dtype != dtype or o.shape != shape or not o.flags.c_contiguous or not o.flags.writeable
                    or not o.flags.aligned):
                raise ValueError(f"out= for output {name!r} must be a writeable, aligned, C-contiguous {dtype} array of "
                                 f"shape {shape}, got {o.dtype} {o.shape}")
        return outs

    def _exact_inputs(self, args: tuple) -> bool:
        """Whether the positional inputs need nothing done (see the module docstring): exactly float32
        ndarrays of the signature's shapes, C-contiguous and aligned.  Every check of the general path
        holds then too."""
        if len(args) != len(self.input_shapes):
            return False
        for a, shape, dtype in zip(args, self.input_shapes, self._input_dtypes):
            if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != shape:
                return False
            flags = a.flags
            if not (flags.c_contiguous and flags.aligned):
                return False
        return True

    def _exact_outputs(self, outs: tuple) -> bool:
        """Whether out= arrays are exactly what the kernels write: the dtype and shape, writeable, aligned,
        C-contiguous."""
        if len(outs) != len(self.output_shapes):
            return False
        return all(type(o) is np.ndarray and o.dtype is dtype and o.shape == shape and o.flags.carray
                   for o, shape, dtype in zip(outs, self.output_shapes, self._output_dtypes))

    def _exact_buffers(self, args: tuple, outs: tuple) -> tuple:
        """The cffi buffers of checked exact arrays, reusing this thread's last ones for the very same
        array objects (held there, so their ids are unique), each on its own: fresh outputs for the
        same inputs wrap only the outputs."""
        arrays = args + outs
        ids = tuple(map(id, arrays))
        last = getattr(self._local, "buffers", None)
        if last is not None and last[0] == ids:
            return last[2]
        from_buffer, ctypes = self._ffi.from_buffer, self._array_ctypes
        if last is None:
            buffers = tuple([from_buffer(c_type, raw_buffer(a)) for c_type, a in zip(ctypes, arrays)])
        else:
            buffers = tuple([old if i == old_id else from_buffer(c_type, raw_buffer(a))
                             for i, old_id, old, c_type, a in zip(ids, last[0], last[2], ctypes, arrays)])
        self._local.buffers = (ids, arrays, buffers)
        return buffers

    def __call__(self, *args, out=None, **named):
        """Run the model: one array per graph input, by position or by name; returns one array, or a
        tuple for several outputs, in graph order.

        Inputs are converted as the module docstring says (zero-copy when already aligned
        C-contiguous float32).  Raises TypeError for a wrong number or names of inputs or a
        non-numeric dtype, ValueError for a wrong shape.  out= takes the preallocated output(s):
        writeable, aligned, C-contiguous, of the exact dtype and shape (never converted; ValueError
        otherwise), and returns them.

        >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).to_graph((1, 1, 8, 8)))
        >>> x = np.random.default_rng(0).random((1, 1, 8, 8))       # float64: cast to float32
        >>> y = model(input=x)
        >>> y.shape, y.dtype
        ((1, 4, 6, 6), dtype('float32'))
        >>> out = np.empty((1, 4, 6, 6), np.float32)
        >>> model(x, out=out) is out, np.array_equal(out, y)
        (True, True)
        >>> model(np.ones((1, 1, 9, 9)))
        Traceback (most recent call last):
        ...
        ValueError: input 'input': expected shape (1, 1, 8, 8), got (1, 1, 9, 9)
        """
        if named:
            return self._general_call(args, out, named)
        if self._fast is not None:
            return self._fast.run(args, out)
        if self._single is not None and len(args) == 1:
            return self._single(args[0], out)
        return self._general_call(args, out, named)

    def _general_call(self, args: tuple, out, named: dict):
        """A call with the checks and conversions of the module docstring (what __call__ runs unless the
        one-array closure takes it)."""
        fast = self._fast_buffers(args, out) if self.batch is not None and not named else None
        if fast is not None:   # arrays that need nothing done
            batch, (buffers, outs) = self.batch, fast
        else:
            arrays = self._bind(args, named)
            batch = self._batch_of(arrays)
            outs = (self._check_out(out, batch) if out is not None
                    else [np.empty(self._shape_at(s, batch), d) for s, d in zip(self.output_shapes, self._output_dtypes)])
            from_buffer = self._ffi.from_buffer
            buffers = [from_buffer(c_type, raw_buffer(a)) for c_type, a in zip(self._input_ctypes, arrays)] + [
                from_buffer(c_type, raw_buffer(o)) for c_type, o in zip(self._output_ctypes, outs)]
        status = self._run(self._weights, batch, *buffers, self._workspace(batch))
        if status != 0:
            _raise_status(self.prefix, status)
        if out is not None:
            return out
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _c_call(self):
        """The fast path in C (convgen/callpath.py) of a fixed-batch model: call(*inputs, out=None), or
        call.run(inputs, out), does what the Python fast path does, and hands arrays that need anything
        done to the general path; None where the extension is unavailable (the Python paths then)."""
        extension = callpath.module()
        if extension is None or self.batch is None or len(self.input_shapes) + len(self.output_shapes) > 8:
            return None
        model = weakref.ref(self)   # not self: the model holds the call, and no cycle keeps it alive

        def fallback(args: tuple, out):
            live = model()
            if live is None:
                raise ReferenceError("the compiled model of this call was collected (its library is closed)")
            return live._general_call(args, out, {})

        def error(status: int):
            _raise_status(self_prefix, status)

        self_prefix, address = self.prefix, lambda cdata: int(self._ffi.cast("uintptr_t", cdata))
        return extension.Call(   # ValueError / TypeError here is a bug in the call path: let the tests see it
            forward=address(self._run), weights=address(self._weights), batch=self.batch,
            inputs=tuple(zip(self._input_dtypes, self.input_shapes)),
            outputs=tuple(zip(self._output_dtypes, self.output_shapes)),
            workspace_bytes=self.workspace_bytes, exact=self._exact_workspace, model=model, fallback=fallback,
            error=error)

    def _single_array_call(self):
        """The fast path of a fixed-batch model with one input and one output as a closure (its
        lookups done once: a third of a small layer's call): call(x, out=None) runs and returns the
        output; arrays that need anything done go to the general path (_general_call)."""
        if self.batch is None or len(self.input_shapes) != 1 or len(self.output_shapes) != 1:
            return None
        run, weights, batch, local, ffi = self._run, self._weights, self.batch, self._local, self._ffi
        workspace_bytes, exact_workspace = self.workspace_bytes, self._exact_workspace
        in_shape, out_shape, out_dtype = self.input_shapes[0], self.output_shapes[0], self._output_dtypes[0]
        from_buffer, ndarray, in_dtype, empty = self._ffi.from_buffer, np.ndarray, self._input_dtypes[0], np.empty
        # C types looked up once (from_buffer("float[]", a) parses the name every call); no workspace
        # call when the model needs none; raw_buffer only for 16-bit floats (a view otherwise not needed).
        in_ctype, out_ctype = ffi.typeof(self._input_ctypes[0]), ffi.typeof(self._output_ctypes[0])
        in_raw = raw_buffer if raw_buffer(np.empty(0, in_dtype)).dtype != in_dtype else None
        out_raw = raw_buffer if raw_buffer(np.empty(0, out_dtype)).dtype != out_dtype else None
        no_workspace = ffi.NULL if workspace_bytes == 0 or exact_workspace else None
        prefix = self.prefix
        model = weakref.ref(self)   # not self: the model holds this closure, and no cycle keeps it alive

        def call(x, out=None):
            if type(x) is not ndarray or x.dtype is not in_dtype or x.shape != in_shape:
                return model()._general_call((x,), out, {})
            flags = x.flags
            if not (flags.c_contiguous and flags.aligned):
                return model()._general_call((x,), out, {})
            if out is None:
                y = empty(out_shape, out_dtype)
            elif type(out) is ndarray and out.dtype is out_dtype and out.shape == out_shape and out.flags.carray:
                y = out
            else:
                return model()._general_call((x,), out, {})
            # The buffers of this thread's last arrays, reused for the very same objects (held, so
            # their ids stay unique): a fresh output with the same input wraps only the output.  The
            # thread's workspace is kept beside them (its size is fixed: one batch).
            last = getattr(local, "single", None)
            if last is None or last[0] is not x or last[1] is not y:
                x_buffer = last[2] if last is not None and last[0] is x else from_buffer(
                    in_ctype, x if in_raw is None else in_raw(x))
                y_buffer = last[3] if last is not None and last[1] is y else from_buffer(
                    out_ctype, y if out_raw is None else out_raw(y))
                workspace = no_workspace if no_workspace is not None else _thread_workspace(
                    ffi, local, workspace_bytes, exact_workspace)
                last = local.single = (x, y, x_buffer, y_buffer, workspace)
            status = run(weights, batch, last[2], last[3], last[4])
            if status != 0:
                _raise_status(prefix, status)
            return y
        return call

    def _fast_buffers(self, args: tuple, out) -> tuple | None:
        """(cffi buffers, outputs) of a fixed-batch call whose arrays need nothing done, or None.  The
        inputs are checked first, so a call that takes the general path allocates its outputs once."""
        if not self._exact_inputs(args):
            return None
        if out is None:  # outputs allocated here are exact
            outs = tuple([np.empty(s, d) for s, d in zip(self.output_shapes, self._output_dtypes)])
        else:
            outs = (out,) if type(out) is np.ndarray else out if type(out) is tuple else ()
            if not self._exact_outputs(outs):
                return None
        return self._exact_buffers(args, outs), outs

    def _bind(self, args: Sequence, named: dict) -> list[np.ndarray]:
        if args and named:
            raise TypeError("pass inputs either by position or by name, not both")
        if named:
            unknown = sorted(set(named) - set(self.input_names))
            missing = [n for n in self.input_names if n not in named]
            if unknown or missing:
                raise TypeError(f"inputs are {list(self.input_names)}; unknown {unknown}, missing {missing}")
            args = [named[n] for n in self.input_names]
        if len(args) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} input(s) {list(self.input_names)}, got {len(args)}")
        return [self._as_input(i, a) for i, a in enumerate(args)]

    # -- inspection and deployment ---------------------------------------------------------
    def save(self, path: str | os.PathLike, format: str = "shared", weights: str = "embedded") -> Path:  # noqa: A002
        """Write the model into the directory `path` for use from C, with no Python:

        - format="shared": lib<name>.so (load it back with convgen.load(path));
          format="static": lib<name>.a (link with -fopenmp -lm);
          format="source": one self-contained <name>.c (C backend only; UnsupportedError on LLVM).
        - weights="embedded": the packed weights live inside the library / source;
          weights="file": they go to <name>.weights, read at <name>_create (or by convgen.load) and
          checked against the size and checksum compiled into the library.
        - always <name>.h: shapes as #define constants, status codes, and the API
          <name>_create(&ctx, [max_batch,] workspace_or_NULL, weights_path_or_NULL),
          <name>_run(ctx, [batch,] inputs..., outputs...), <name>_destroy(ctx), built on the
          library's <name>_forward / _workspace_size / _signature / _embedded_weights;
        - always main.c: an example that runs the model on raw float32 files.

        Returns the directory.  A model loaded with convgen.load can only be re-saved as it was.
        Raises ValueError for an unknown format or weights, UnsupportedError for format="source" on
        the LLVM backend.

        >>> import tempfile
        >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3)).to_graph((1, 1, 8, 8), name="net"))
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     sorted(path.name for path in model.save(directory).iterdir())
        ['libnet.so', 'main.c', 'net.h']
        """
        from .deploy import save
        return save(self, Path(path), format, weights)

    def summary(self, print_fn=print) -> str:
        """The graph's per-layer summary, then the compiled memory: weights blob, workspace arena, I/O.

        The graph is the optimized one (the ReLU below is fused into the conv).  Prints the text with
        `print_fn` (None: do not print) and returns it.

        >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).to_graph((1, 1, 8, 8), name="net"))
        >>> text = model.summary(print_fn=None)
        >>> print(text.splitlines()[-1])
        compiled: weights ... bytes (embedded), workspace arena ... bytes, inputs+outputs 832 bytes; batch 1
        """
        lines = [self.graph.summary(print_fn=None)] if self.graph is not None else [repr(self)]
        per = " per sample" if self.batch is None else ""
        io = sum(4 * math.prod(s) for s in self.input_shapes) + sum(
            d.itemsize * math.prod(s) for s, d in zip(self.output_shapes, self._output_dtypes))
        lines.append(f"compiled: weights {self.weights_bytes:,} bytes ({self.signature['weights']}), "
                     f"workspace arena {self.workspace_bytes:,} bytes{per}, inputs+outputs {io:,} bytes{per}; "
                     f"batch {'given at call time' if self.batch is None else self.batch}")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def show_code(self, layer: str | None = None) -> str:
        """The generated code (C, or LLVM IR for backend="llvm"): all of it, or the kernel of one layer.

        Layers are named as in graph.summary().  Raises ConvgenError for a model from convgen.load
        (its source is not kept).

        >>> model = convgen.compile(nn.Sequential(nn.Conv2d(1, 4, 3)).to_graph((1, 1, 8, 8)))
        >>> print(model.show_code("0").splitlines()[0])
        /* layer "0" (conv)
        """
        if self.source is None:
            raise ConvgenError("this model was loaded from a library; its source is not kept")
        if layer is None:
            return self.source
        return backends.layer_code(self.backend, self.source, layer)

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}{list(s)}" for n, s in zip(self.input_names, self.input_shapes))
        outs = ", ".join(f"{list(s)}" for s in self.output_shapes)
        library = str(self.library_path) if self.library_path else "JIT-compiled"
        return f"CompiledModel({self.prefix!r}, inputs=[{ins}], outputs=[{outs}], library={library!r})"

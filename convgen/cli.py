"""The `convgen` command: demo, summary, compile, run, show-code, bench, cache.

MODEL, for every verb that takes one, is
  - an ONNX file (``*.onnx``), imported with convgen.from_onnx, or
  - a Python file that builds a network with the DSL and leaves a ``convgen.Graph`` at module
    level: a variable named ``graph``, or a function ``graph()`` returning one, or else exactly one
    Graph among the module's globals; ``file.py:NAME`` picks the global NAME instead.
    The file runs with ``__name__ != "__main__"``, so a guarded ``main()`` does not run.
  - for ``run`` and ``show-code`` also a directory written by ``convgen compile -o DIR``.

    convgen demo
    convgen summary examples/lenet5.py
    convgen compile model.onnx -o build/ --backend llvm --threads 2
    convgen run examples/lenet5.py --input x.npy --output y.npy
    convgen show-code examples/lenet5.py --layer 0
    convgen cache info
"""
from __future__ import annotations

import argparse
import inspect
import os
import runpy
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__, progress
from .errors import ConvgenError
from .ir import Graph

VERBS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}   # verb -> adds its arguments
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


def verb(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):  # noqa: A002
    """Register `convgen NAME`: `arguments` adds its options, the decorated function runs it."""
    def register(handler: Callable[[argparse.Namespace], int]):
        VERBS[name] = arguments
        HANDLERS[name] = handler
        handler.help = help
        return handler
    return register


# -- MODEL ---------------------------------------------------------------------------------------
def load_graph(spec: str, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """The Graph a MODEL argument names (see the module docstring); `input_shapes` fix an ONNX model's
    symbolic dimensions."""
    path_text, _, name = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_text)
    if not path.exists():
        raise ConvgenError(f"{path}: no such file")
    if path.suffix == ".onnx":
        return _onnx_graph(path, input_shapes)
    if input_shapes:
        raise ConvgenError("--input-shape applies to ONNX models; a .py MODEL sets its shapes in to_graph(...)")
    if path.suffix == ".py":
        return _python_graph(path, name or None)
    raise ConvgenError(f"{path}: MODEL must be an .onnx file or a .py file that defines a convgen.Graph")


def _onnx_graph(path: Path, input_shapes: dict[str, tuple[int, ...]] | None) -> Graph:
    from .onnx import from_onnx
    return from_onnx(str(path), input_shapes=input_shapes)


def _input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """NAME=D0,D1,... (argparse type of --input-shape)."""
    name, equals, dims = text.partition("=")
    try:
        if not equals or not name:
            raise ValueError
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,... (like image=1,3,224,224), got {text!r}") from None


def _python_graph(path: Path, name: str | None) -> Graph:
    namespace = runpy.run_path(str(path), run_name=f"convgen_model_{path.stem}")
    if name is not None:
        if name not in namespace:
            raise ConvgenError(f"{path}: defines no {name!r}")
        return _as_graph(namespace[name], f"{path}:{name}")
    if "graph" in namespace:
        return _as_graph(namespace["graph"], f"{path}:graph")
    graphs = [k for k, v in namespace.items() if isinstance(v, Graph)]
    if len(graphs) == 1:
        return namespace[graphs[0]]
    raise ConvgenError(f"{path}: define `graph` (a convgen.Graph, or a function returning one) or name one "
                       f"with {path}:NAME; module-level Graphs found: {graphs}")


def _as_graph(value, where: str) -> Graph:
    if callable(value) and not isinstance(value, Graph):
        value = value()
    if not isinstance(value, Graph):
        raise ConvgenError(f"{where} is a {type(value).__name__}, not a convgen.Graph "
                           "(build one with module.to_graph(shape) or nn.graph(...))")
    return value


def _compile(graph: Graph, args: argparse.Namespace):
    import convgen
    options = {"backend": args.backend, "threads": args.threads}
    if getattr(args, "tune", False):
        if "tune" not in inspect.signature(convgen.compile).parameters:
            raise ConvgenError("--tune: this convgen's compile() has no autotuner (tune=True)")
        options["tune"] = True
    return convgen.compile(graph, **options)


def _graph(args: argparse.Namespace) -> Graph:
    return load_graph(args.model, dict(args.input_shape or []))


def _model(args: argparse.Namespace):
    """A CompiledModel: loaded from a `compile -o` directory, or compiled from MODEL."""
    import convgen
    if Path(args.model).is_dir():
        return convgen.load(args.model)
    return _compile(_graph(args), args)


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="an .onnx file, or a .py file defining `graph` (a convgen.Graph); file.py:NAME picks NAME")
    parser.add_argument("--input-shape", type=_input_shape, action="append", metavar="NAME=D0,D1,...",
                        help="fix an ONNX input's symbolic dimensions (repeat per input)")


def _build_options(parser: argparse.ArgumentParser, tune: bool = False, threads: int | None = None) -> None:
    parser.add_argument("--backend", choices=["c", "llvm"], default="c",
                        help="code generator: C templates + the system C compiler, or llvmlite (default: c)")
    parser.add_argument("--threads", type=int, default=threads, metavar="N",
                        help=f"threads per call (default: {threads or 'OMP_NUM_THREADS, else the cores this process may use'})")
    if tune:
        parser.add_argument("--tune", action="store_true",
                            help="measure candidate schedules per layer and keep the fastest (slower compile)")


# -- verbs ---------------------------------------------------------------------------------------
def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    _build_options(parser, threads=1)      # LeNet-5 is too small to split across cores
    parser.add_argument("--images", type=int, default=None, metavar="N", help="classify only the first N test images")


@verb("demo", "LeNet-5 on real handwritten digits: summary, compile time, accuracy, per-image latency",
      _demo_arguments)
def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(backend=args.backend, threads=args.threads, images=args.images)
    return 0


@verb("summary", "per-layer table: output shape, parameters, FLOPs, receptive field, memory", _model_argument)
def summary(args: argparse.Namespace) -> int:
    _graph(args).summary()
    return 0


def _compile_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="directory for lib<name>.so and <name>.h")
    _build_options(parser, tune=True)


@verb("compile", "compile MODEL into DIR: a shared library and its C header", _compile_arguments)
def compile_(args: argparse.Namespace) -> int:
    graph = _graph(args)
    start = time.perf_counter()
    model = _compile(graph, args)
    seconds = time.perf_counter() - start
    directory = model.save(args.output)
    files = ", ".join(sorted(p.name for p in directory.iterdir()))
    print(f"compiled {graph.name!r} ({len(graph.nodes)} layers, backend {args.backend}) in {seconds:.2f} s "
          f"-> {directory}/ [{files}]")
    return 0


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("--input", required=True, action="append", metavar="X.npy",
                        help="an input array (.npy); repeat for models with several inputs, in order")
    parser.add_argument("--output", metavar="Y.npy", help="write the output here (several outputs: Y.npz)")
    _build_options(parser)


@verb("run", "run MODEL on arrays from .npy files", _run_arguments)
def run(args: argparse.Namespace) -> int:
    model = _model(args)
    inputs = [np.load(path, allow_pickle=False) for path in args.input]   # a .npy never runs code
    outputs = model(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    if args.output:
        _save_outputs(Path(args.output), model.output_names, outputs)
    for name, value in zip(model.output_names, outputs):
        print(f"output {name!r}: {value.dtype}{list(value.shape)}")
        if value.size <= 64:
            print(np.array2string(value, precision=4, suppress_small=True))
    return 0


def _save_outputs(path: Path, names: Sequence[str], outputs: Sequence[np.ndarray]) -> None:
    if len(outputs) == 1:
        np.save(path, outputs[0])
    else:
        _save_npz(path, names, outputs)


def _save_npz(path: Path, names: Sequence[str], outputs: Sequence[np.ndarray]) -> None:
    """np.savez's layout, written here because its keyword form refuses outputs named `file` or
    `allow_pickle`; np.load(path)[name] reads each back under the model's own output name."""
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")          # as np.savez names it
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, value in zip(names, outputs):
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _show_code_arguments(parser: argparse.ArgumentParser) -> None:
    _model_argument(parser)
    parser.add_argument("--layer", metavar="NAME", help="only this layer's kernel (names as in `convgen summary`)")
    _build_options(parser)


@verb("show-code", "print the generated C (or LLVM IR with --backend llvm)", _show_code_arguments)
def show_code(args: argparse.Namespace) -> int:
    model = _model(args)
    try:
        print(model.show_code(args.layer), end="")
    except KeyError as e:
        raise ConvgenError(f"{e.args[0]}; layers with kernels: {_kernel_layers(model)}") from None
    return 0


def _kernel_layers(model) -> list[str]:
    if model.graph is None:
        return []
    names = []
    for node in model.graph.nodes:
        try:
            model.show_code(node.name)
            names.append(node.name)
        except KeyError:
            pass
    return names


def benchmark_program() -> Path:
    """benchmarks/bench.py of the checkout this convgen runs from (it is not part of the wheel)."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        candidate = root / "benchmarks" / "bench.py"
        if candidate.is_file():
            return candidate
    raise ConvgenError("convgen bench runs benchmarks/bench.py from a convgen source checkout; "
                       "run it from the repository's top directory")


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="...",
                        help="options for benchmarks/bench.py (see `convgen bench --help-bench`)")
    parser.add_argument("--help-bench", action="store_true", help="show the benchmark program's own options")


@verb("bench", "run the benchmark program (convgen vs PyTorch vs onnxruntime, side by side)", _bench_arguments)
def bench(args: argparse.Namespace) -> int:
    program = benchmark_program()
    extra = ["--help"] if args.help_bench else list(args.bench_args)
    environment = dict(os.environ)
    root = str(program.parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, environment.get("PYTHONPATH")]))
    return subprocess.call([sys.executable, str(program), *extra], env=environment)


def _cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["info", "clear"],
                        help="info: where the cache is, its libraries and size; clear: delete them")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="the cache directory (default: $CONVGEN_CACHE_DIR, else ~/.cache/convgen)")


@verb("cache", "the compiled-library cache: `cache info` or `cache clear`", _cache_arguments)
def cache_(args: argparse.Namespace) -> int:
    from . import cache
    if args.action == "clear":
        removed = cache.clear(args.dir)
        print(f"removed {removed} file(s) from {cache.info(args.dir)['path']}")
        return 0
    info = cache.info(args.dir)
    print(f"path:      {info['path']}\nlibraries: {info['libraries']} ({info['damaged']} damaged, rebuilt on use)\n"
          f"size:      {info['bytes'] / 1e6:.1f} MB\nwritable:  {'yes' if info['writable'] else 'no'}")
    return 0


# -- entry point ---------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="convgen", description="convgen: a code-generating compiler for CNN convolution and pooling kernels.",
        epilog="MODEL is an .onnx file, or a .py file that leaves a convgen.Graph named `graph` at module level "
               "(or a function graph() returning one; file.py:NAME picks another name). "
               "`convgen VERB --help` describes each verb.")
    top.add_argument("--version", action="version", version=f"convgen {__version__}")
    top.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    verbs = top.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, arguments in VERBS.items():
        sub = verbs.add_parser(name, help=HANDLERS[name].help, description=HANDLERS[name].help)
        sub.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
        arguments(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quiet:
        progress.set_quiet(True)
    try:
        return HANDLERS[args.verb](args)
    except BrokenPipeError:
        # `convgen show-code ... | head`: the reader left; stop quietly (as the Python docs advise).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ConvgenError, ValueError, TypeError, OSError) as e:
        print(f"convgen {args.verb}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

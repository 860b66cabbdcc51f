"""The C backend: render Jinja2 templates, compile with the system C compiler, cache the library."""
from __future__ import annotations

import functools
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__
from .. import cache, dtypes
from ..errors import CompileError, UnsupportedError
from ..lower import LoweredModel
from ..ops.activation import APPROXIMATIONS
from ..target import host

DEFAULT_CFLAGS = "-O3 -march=native"
REQUIRED_FLAGS = ("-std=gnu11", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno")
# CONVGEN_SANITIZE=1: kernels built with AddressSanitizer and UBSan, stopping at the first report.
# Loading such a library needs the ASan runtime first in the process (LD_PRELOAD=$(cc
# -print-file-name=libasan.so)); tests/sanitize_suite.py runs that way.
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all")


def template_dir() -> Path:
    """templates/ ships inside the wheel as convgen/templates; in a checkout it is beside convgen/."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "model.c.j2").is_file():
            return candidate
    raise CompileError(f"convgen's C templates are missing (looked in {package / 'templates'} "
                       f"and {package.parent / 'templates'}); reinstall convgen")


def _c_comment(text) -> str:
    """Text safe inside /* ... */ wherever a template puts it: it cannot close the comment, open a
    nested one, or end the line (line breaks and other unprintables become <0x..>; no ??/ trigraph,
    no trailing backslash to splice the next line)."""
    text = "".join(ch if ch.isprintable() else f"<0x{ord(ch):02x}>" for ch in str(text))
    text = text.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    return text + " " if text.endswith("\\") else text


def _c_float(value) -> str:
    value = float(value)
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return f"{value!r}f" if "e" in repr(value) or "." in repr(value) else f"{value!r}.0f"


def _c_string(text: str) -> str:
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _raise(message: str):
    raise CompileError(message)


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    bytecode = cache.template_bytecode_dir()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False,
                             bytecode_cache=jinja2.FileSystemBytecodeCache(str(bytecode)) if bytecode else None)
    env.filters.update(c_comment=_c_comment, c_float=_c_float, c_string=_c_string, product=math.prod,
                       c_type=lambda name: dtypes.get(name).c_type, itemsize=lambda name: dtypes.get(name).itemsize)
    env.globals["raise"] = _raise
    env.globals.update(APPROXIMATIONS)  # the exp, tanh and erf constants of templates/activation.c.j2
    return env


CHECKSUM_CHUNK_WORDS = 1 << 18


def weights_checksum(blob: bytes) -> int:
    """sum over the blob's little-endian 32-bit words w[i] of (i + 1) * w[i], modulo 2**64: cheap in numpy
    and in the generated header's loader, and it notices swapped, shifted or damaged words."""
    words, total = np.frombuffer(blob, "<u4"), np.uint64(0)
    with np.errstate(over="ignore"):
        # in chunks: whole-blob uint64 temporaries are 4x the weights (VGG-19: 1.1 GB and 6 s)
        for start in range(0, words.size, CHECKSUM_CHUNK_WORDS):
            chunk = words[start:start + CHECKSUM_CHUNK_WORDS].astype(np.uint64)
            chunk *= np.arange(start + 1, start + chunk.size + 1, dtype=np.uint64)
            total += chunk.sum(dtype=np.uint64)
    return int(total)


def signature(model: LoweredModel, backend: str, weights: str = "embedded") -> dict:
    """What the library says about itself (<prefix>_signature); `weights`: "embedded" or "file"."""
    io = lambda specs: [{"name": s.name, "ident": s.ident, "shape": list(s.shape), "dtype": s.dtype}  # noqa: E731
                        for s in specs]
    return {"convgen": __version__, "backend": backend, "graph": model.graph_name, "prefix": model.prefix,
            "inputs": io(model.inputs), "outputs": io(model.outputs), "workspace_bytes": model.workspace_bytes,
            "threads": model.threads, "batch": model.batch, "weights": weights if model.weights else "embedded",
            "weights_bytes": len(model.weights), "weights_checksum": f"{weights_checksum(model.weights):016x}"}


WEIGHTS_FILE = "weights.bin"
EMBEDDINGS = ("incbin", "array", "none")  # weights from the file beside the source, a C array, or not at all


def _c_bytes(blob: bytes, per_line: int = 64) -> str:
    """`blob` as C string literals of octal escapes, `per_line` bytes to a line."""
    table = np.array([b"\\%03o" % byte for byte in range(256)], dtype="S4")
    escaped = table[np.frombuffer(blob, np.uint8)]
    lines = [b'"' + escaped[i:i + per_line].tobytes() + b'"' for i in range(0, len(escaped), per_line)]
    return "\n        ".join(line.decode("ascii") for line in lines)


def render_source(model: LoweredModel, embed: str = "incbin") -> str:
    """The model's C: weights embedded from weights.bin (.incbin), as a C array (one self-contained
    file), or not at all (the caller passes them to <prefix>_forward)."""
    if embed not in EMBEDDINGS:
        raise ValueError(f"embed must be one of {EMBEDDINGS}, got {embed!r}")
    source = environment().get_template("model.c.j2").render(
        model=model, version=__version__, weights_file=WEIGHTS_FILE, embed=embed,
        weights_literal=_c_bytes(model.weights) if embed == "array" else "",
        signature=json.dumps(signature(model, "c", "file" if embed == "none" else "embedded"), sort_keys=True))
    _check_enum_constants(source)
    return source


ENUM_CONSTANT = re.compile(r"\b(\w+)\s*=\s*(\d+)\s*[,}]")


def _check_enum_constants(source: str) -> None:
    """The templates name single dimensions and window parameters as enum constants (int, usable in
    _Static_assert); products of dimensions are int64 literals or consts.  A single value past 2^31 - 1
    would not fit: refuse it rather than miscompile.  (The LLVM backend has no such limit.)"""
    for body in re.findall(r"\benum\s*\{([^}]*\})", source):
        for name, value in ENUM_CONSTANT.findall(body):
            if int(value) > 2 ** 31 - 1:
                raise UnsupportedError(f"the C backend holds {name} = {value} in an int constant, past 2^31 - 1: "
                                       "single dimensions, channel counts and window parameters must be below "
                                       "2^31 (whole tensors may be larger); the llvm backend has no such limit")


def render_header(model: LoweredModel, weights: str = "embedded") -> str:
    return environment().get_template("model.h.j2").render(
        model=model, version=__version__, weights=weights, checksum=f"{weights_checksum(model.weights):016x}")


def compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    return cc


def sanitizing() -> bool:
    return os.environ.get("CONVGEN_SANITIZE", "") not in ("", "0")


def cflags(shared: bool = True) -> list[str]:
    required = [f for f in REQUIRED_FLAGS if shared or f != "-shared"]
    sanitize = list(SANITIZE_FLAGS) if sanitizing() else []
    return shlex.split(os.environ.get("CFLAGS", DEFAULT_CFLAGS)) + required + sanitize


@functools.lru_cache(maxsize=8)
def compiler_identity(cc: str) -> str:
    """`cc --version`, part of the cache key; a missing compiler is a CompileError."""
    argv = shlex.split(cc)
    if not argv or shutil.which(argv[0]) is None:
        raise CompileError(f"no C compiler: {cc!r} was not found (set CC to a C compiler)")
    try:
        result = subprocess.run(argv + ["--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"cannot run the C compiler {cc!r}: {e}") from e
    return result.stdout + result.stderr


def _tool_env() -> dict[str, str] | None:
    """The compiler's environment: ours, minus a preloaded sanitizer runtime (it slows gcc 5x)."""
    if "LD_PRELOAD" not in os.environ:
        return None
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _run_tool(argv: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=_tool_env())
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"cannot run the {what}: {' '.join(argv)}: {e}") from e


def archive(objects: list[str], output: str, cwd: Path) -> None:
    """`ar rcs output objects...`: a static library (the archiver is $AR, default ar)."""
    ar = os.environ.get("AR") or "ar"
    if shutil.which(ar) is None:
        raise CompileError(f"no archiver: {ar!r} was not found (set AR); a static library needs one")
    result = _run_tool([ar, "rcs", output, *objects], cwd, "archiver")
    if result.returncode != 0:
        raise CompileError(f"{ar} failed (exit {result.returncode})", result.stderr)


def compile_source(source: str, weights: bytes, output: Path, static: bool = False) -> None:
    """Compile one translation unit (and its weights) into a shared library at `output`, or with
    static=True into a static library (an archive of one object), atomically."""
    cc = compiler()
    compiler_identity(cc)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".build-") as tmp:
        build = Path(tmp)
        (build / "model.c").write_text(source)
        (build / WEIGHTS_FILE).write_bytes(weights)
        if static:
            argv = shlex.split(cc) + cflags(shared=False) + ["-c", "-o", "model.o", "model.c"]
        else:
            argv = shlex.split(cc) + cflags() + ["-o", "model.so", "model.c", "-lm"]
        result = _run_tool(argv, build, "C compiler")
        if result.returncode != 0:
            kept = Path(tempfile.mkdtemp(prefix="convgen-failed-"))
            shutil.copy(build / "model.c", kept / "model.c")
            raise CompileError(f"C compiler failed (exit {result.returncode}): {' '.join(argv)}; "
                               f"source kept at {kept / 'model.c'}", result.stderr, str(kept / "model.c"))
        if static:
            archive(["model.o"], "model.a", build)
        os.replace(build / ("model.a" if static else "model.so"), output)


def build(model: LoweredModel, cache_dir=None) -> tuple[Path, str]:
    """The library for `model`, from the cache or freshly compiled. Returns (path, source)."""
    source = render_source(model)
    cc = compiler()
    key = cache.cache_key("c", source, model.weights, cc, compiler_identity(cc), " ".join(cflags()),
                          host().name, " ".join(host().features))
    path = cache.library(cache.cache_root(cache_dir), model.prefix, key,
                         lambda output: compile_source(source, model.weights, output))
    return path, source


def layer_code(source: str, layer: str) -> str:
    """The C of one layer's kernel: from its comment block to the end of its function."""
    match = re.search(r'/\* layer "%s" .*?\n}\n' % re.escape(_c_comment(layer)), source, re.S)
    if not match:
        raise KeyError(f"no kernel for layer {layer!r}")
    return match.group(0)

"""The LLVM backend: the C templates' loop nests built as LLVM IR with llvmlite.

The same LoweredModel the C backend renders becomes one LLVM module (module.py, with a module
per kernel family mirroring templates/*.c.j2), optimized for the host CPU and linked into a
shared library with the system linker, or JIT-compiled in process when there is none
(native.py).  Libraries are cached like the C backend's.
"""
from __future__ import annotations

from pathlib import Path

from ... import cache
from ...errors import ConvgenError
from ...lower import LoweredModel
from .module import build_module, layer_code, source_text, weights_symbol
from .native import JitLibrary, Weights, data_layout, find_linker, host_target, link_library, write_archive
from .parallel import uses_openmp

__all__ = ["build", "generate", "layer_code"]


def generate(model: LoweredModel, embed: bool = True) -> tuple[str, bool]:
    """The model's LLVM IR (without the weights' bytes), and whether it calls into OpenMP; embed=False
    for a library whose weights come from a side file."""
    target = host_target()
    module = build_module(model, target.triple, data_layout(), target.has_fma, embed)
    return source_text(model, module), uses_openmp(module)


def build(model: LoweredModel, cache_dir=None) -> tuple[Path | JitLibrary, str]:
    """The library for `model`: cached on disk when a linker exists, else JIT-compiled. Returns (library, IR)."""
    source, openmp = generate(model)
    linker = find_linker()
    if linker is None:
        return JitLibrary(source, _weights(model), openmp), source
    key = cache.cache_key("llvm", source, model.weights, *host_target().identity())
    path = cache.library(cache.cache_root(cache_dir), model.prefix, key,
                         lambda output: link_library(source, _weights(model), output, linker, openmp))
    return path, source


def write_library(model: LoweredModel, output: Path, static: bool, embed: bool) -> None:
    """A shared (static=False) or static library of `model` at `output`, with its weights embedded or not."""
    source, openmp = generate(model, embed)
    weights = _weights(model) if embed else None
    if static:
        write_archive(source, weights, output)
        return
    linker = find_linker()
    if linker is None:
        raise ConvgenError("saving an LLVM-backend model as a shared library needs a linker "
                           "(looked for $CC or cc, and $LD or ld)")
    link_library(source, weights, output, linker, openmp)


def _weights(model: LoweredModel) -> Weights | None:
    return Weights(weights_symbol(model), model.weights) if model.weights else None

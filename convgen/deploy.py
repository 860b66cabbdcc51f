"""Writing a compiled model out to run without Python: CompiledModel.save(directory, format, weights).

Every format comes with <name>.h (shapes as constants, the library's entry points, and the
create/run/destroy API as static inline functions over them, so that both backends expose the
same symbols) and main.c, an example program that runs the model on raw float32 files.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .backends import c as c_backend
from .cache import atomic_write
from .errors import ConvgenError, UnsupportedError
from .lower import LoweredModel

if TYPE_CHECKING:
    from .runtime import CompiledModel

FORMATS = ("shared", "static", "source")
WEIGHT_PLACES = ("embedded", "file")


def artifact_names(prefix: str) -> dict[str, str]:
    return {"shared": f"lib{prefix}.so", "static": f"lib{prefix}.a", "source": f"{prefix}.c",
            "header": f"{prefix}.h", "weights": f"{prefix}.weights", "example": "main.c"}


def save(model: "CompiledModel", directory: Path, format: str, weights: str) -> Path:  # noqa: A002
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if weights not in WEIGHT_PLACES:
        raise ValueError(f"weights must be one of {WEIGHT_PLACES}, got {weights!r}")
    directory.mkdir(parents=True, exist_ok=True)
    names = artifact_names(model.prefix)
    lowered: LoweredModel | None = model._lowered
    if lowered is None:
        return _copy_loaded(model, directory, format, weights, names)
    if format == "shared" and (weights == "embedded" or not lowered.weights):
        model._library.write(directory / names["shared"])  # the library already built (and cached)
    else:
        _write_library(model.backend, lowered, directory / names[format], format, embed=weights == "embedded")
    place = "file" if weights == "file" and lowered.weights else "embedded"
    (directory / names["header"]).write_text(c_backend.render_header(lowered, place))
    (directory / names["example"]).write_text(c_backend.environment().get_template("main.c.j2").render(
        model=lowered, version=__version__, weights=place))
    if place == "file":
        atomic_write(directory / names["weights"], lowered.weights)
    return directory


def _write_library(backend: str, lowered: LoweredModel, output: Path, format: str, embed: bool) -> None:  # noqa: A002
    if backend == "llvm":
        if format == "source":
            raise UnsupportedError("format='source' writes C, which only the C backend generates; "
                                   "save an LLVM-backend model as format='shared' or 'static'")
        from .backends import llvm
        llvm.write_library(lowered, output, static=format == "static", embed=embed)
        return
    if format == "source":
        atomic_write(output, c_backend.render_source(lowered, "array" if embed else "none").encode())
        return
    c_backend.compile_source(c_backend.render_source(lowered, "incbin" if embed else "none"),
                             lowered.weights if embed else b"", output, static=format == "static")


def _copy_loaded(model: "CompiledModel", directory: Path, format: str, weights: str,  # noqa: A002
                 names: dict[str, str]) -> Path:
    """A model loaded from a library has no generated code left: it can only be copied as it is."""
    place = model.signature["weights"]
    if format != "shared" or (weights != place and model.weights_bytes):
        raise ConvgenError(f"{model.prefix} was loaded from {model.library_path}; it can be saved again only "
                           f"as format='shared', weights={place!r} (compile the graph for other formats)")
    model._library.write(directory / names["shared"])
    source = model.library_path.parent if model.library_path else None
    for kind in ("header", "example", "weights"):
        if source is not None and (source / names[kind]).is_file() and source != directory:
            shutil.copyfile(source / names[kind], directory / names[kind])
    return directory

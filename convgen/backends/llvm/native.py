"""From IR text to machine code: llvmlite's O3 pipeline for the host CPU, then either a
position-independent object file linked into a shared library by the system linker (cc or ld),
or, on a machine with neither, MCJIT in this process.  The weights are an object of their own,
their bytes assembled by LLVM's .incbin from a file (Weights)."""
from __future__ import annotations

import ctypes.util
import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import llvmlite
import llvmlite.binding as llvm
import numpy as np

from ...errors import CompileError, ConvgenError


@dataclass(frozen=True)
class HostTarget:
    triple: str
    cpu: str
    features: str

    @property
    def has_fma(self) -> bool:
        return "+fma" in self.features.split(",")

    def identity(self) -> tuple[str, ...]:
        """What the generated code depends on, for the cache key."""
        return (llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)), self.triple, self.cpu,
                self.features, f"speed_level={SPEED_LEVEL}")


@functools.lru_cache(maxsize=None)
def host_target() -> HostTarget:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    triple, features = llvm.get_process_triple(), llvm.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        # The direct conv epilogue scatters channel lanes to NCHW planes; left alone, the SLP
        # vectorizer uses vscatterdps, slower than scalar stores (10 channels: 1.21x -> 0.92x of C).
        features += ",+prefer-no-scatter"
    return HostTarget(triple, llvm.get_host_cpu_name(), features)


@dataclass(frozen=True)
class Weights:
    """A model's weights blob and the hidden symbol its code reads them by (declared in the model's module)."""
    symbol: str
    blob: bytes

    def ir(self, triple: str) -> str:
        """A module defining the symbol as one 64-byte aligned constant of the blob's bytes, for the JIT
        (it has no files to assemble from).  Its IR text costs ~10 ms per MB to build and as much to parse:
        ResNet-18's 1.2 s + ~0.5 s of a cold compile, before the weights became an object of their own."""
        table = np.array([b"\\%02X" % byte for byte in range(256)], dtype="S3")
        text = table[np.frombuffer(self.blob, np.uint8)].tobytes().decode("ascii")
        return (f'target triple = "{triple}"\n'
                f'@{self.symbol} = hidden constant [{len(self.blob)} x i8] c"{text}", align 64\n')

    def object_code(self, path: Path, machine: llvm.TargetMachine) -> bytes:
        """An ELF object defining the symbol in .rodata, 64-byte aligned, from the blob written to `path`:
        module-level assembly whose .incbin LLVM's assembler copies in (100 MB in ~0.35 s), as
        templates/model.c.j2 embeds the C backend's weights."""
        path.write_bytes(self.blob)
        quoted = _ir_string(_asm_string(str(path.resolve())))
        lines = [".section .rodata", ".balign 64", f".globl {self.symbol}", f".hidden {self.symbol}",
                 f".type {self.symbol},@object", f"{self.symbol}:", f".incbin {quoted}",
                 f".size {self.symbol}, {len(self.blob)}", ".previous"]
        text = f'target triple = "{host_target().triple}"\n' + "".join(f'module asm "{line}"\n' for line in lines)
        return _emit(text, machine, optimize=False)


def _asm_string(text: str) -> str:
    """`text` as an assembler string literal (quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ir_string(text: str) -> str:
    """`text` safe inside an IR string constant: quotes, backslashes and unprintables as \\XX escapes."""
    return "".join(ch if ch.isprintable() and ch not in '"\\' and ord(ch) < 128 else
                   "".join(f"\\{byte:02X}" for byte in ch.encode()) for ch in text)


def target_machine(jit: bool = False) -> llvm.TargetMachine:
    host = host_target()
    target = llvm.Target.from_triple(host.triple)
    if jit:
        return target.create_target_machine(cpu=host.cpu, features=host.features, opt=3, jit=True)
    return target.create_target_machine(cpu=host.cpu, features=host.features, opt=3, reloc="pic",
                                        codemodel="default")


def data_layout() -> str:
    return str(target_machine().target_data)


# LLVM's O3 pipeline (with the vectorizers and unrolling on).  O2 compiled in about half the time (LeNet-5
# cold 1.4-1.5 -> 0.8-0.9 s, when the kernels were still inlined) and runs most kernels as fast, but not all:
# it leaves a dilated 3x3 convolution's kernel-row loop rolled (256x28x28 d2, Zen 3: 12.8 -> 19.7 ms); with
# that loop marked for full unrolling, O2 took as long as O3.
SPEED_LEVEL = 3


def _function_of(text: str, message: str) -> str | None:
    """The function of `text` holding the first instruction the verifier's message quotes (the message
    itself names none)."""
    quoted = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    function = None
    for line in text.splitlines():
        match = re.match(r'define [^@]*@"?([\w.$-]+)"?\(', line)
        if match:
            function = match.group(1)
        elif quoted and line.strip() == quoted[0]:
            return function
    return None


def _kernel_of(source: str, function: str | None) -> str:
    """`layer "conv1" (@layer0_conv1_conv)` for a kernel function (or one outlined from it), from the
    source's header."""
    if function is None:
        return "an unknown function"
    for match in re.finditer(r'^; layer (".*") \(\w+\): @(\S+)$', source, re.M):
        if function == match.group(2) or function.startswith(match.group(2) + "."):
            return f"layer {match.group(1)} (@{function})"
    return f"@{function}"


def _verified(module: llvm.ModuleRef, source: str, stage: str) -> llvm.ModuleRef:
    """The module, if LLVM's verifier accepts it; else a CompileError naming the kernel: code generation
    from a module the verifier rejects aborts the process (an assertion in instruction selection)."""
    try:
        module.verify()
    except RuntimeError as e:
        kernel = _kernel_of(source, _function_of(str(module), str(e)))
        raise CompileError(f"{stage} is invalid LLVM IR in {kernel}: {str(e).splitlines()[0]}", str(e)) from e
    return module


def _parsed(source: str, weights_source: str | None, context=None) -> llvm.ModuleRef:
    try:
        module = llvm.parse_assembly(source, context=context)
        if weights_source is not None:
            module.link_in(llvm.parse_assembly(weights_source, context=context))
    except RuntimeError as e:
        raise CompileError(f"convgen generated invalid LLVM IR: {e}", str(e)) from e
    return _verified(module, source, "convgen's generated module")


def _optimize(module: llvm.ModuleRef, machine: llvm.TargetMachine, slp: bool) -> None:
    tuning = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL)
    tuning.loop_vectorization = tuning.loop_unrolling = True
    tuning.slp_vectorization = slp
    builder = llvm.create_pass_builder(machine, tuning)
    builder.getModulePassManager().run(module, builder)


def optimized_module(source: str, weights_source: str | None, machine: llvm.TargetMachine,
                     context=None) -> llvm.ModuleRef:
    """Parse, link in the weights, verify, run the SPEED_LEVEL pipeline (vectorizers and unrolling on), and
    verify again before code generation.  LLVM's SLP vectorizer can emit a use before its definition: a
    max pool 5x5 stride (1, 2) padding (0, 1) ceil_mode on 2x5x8x6 (separable path, its column buffer
    unrolled into one block) gave a shufflevector of a select defined further down, and instruction
    selection then aborted ("Already set a value for this node!").  Such a module is optimized again
    without the SLP vectorizer; a module still invalid then is a CompileError."""
    module = _parsed(source, weights_source, context)
    _optimize(module, machine, slp=True)
    try:
        return _verified(module, source, "LLVM's optimized module")
    except CompileError:
        module = _parsed(source, weights_source, context)
        _optimize(module, machine, slp=False)
        return _verified(module, source, "LLVM's optimized module (without the SLP vectorizer)")


# -- linking ------------------------------------------------------------------------------

def openmp_library() -> str | None:
    """libgomp's file name (libgomp.so.1), for the linker and for the JIT."""
    return ctypes.util.find_library("gomp")


def find_linker() -> list[str] | None:
    """`$CC -shared` (default cc), else `$LD -shared` (default ld); None when neither is on the PATH."""
    for tool in (os.environ.get("CC") or "cc", os.environ.get("LD") or "ld"):
        if shutil.which(tool):
            return [tool, "-shared"]
    return None


def _link_command(linker: list[str], objects: list[str], output: str, openmp: bool) -> list[str]:
    libraries = ["-lm"] if Path(linker[0]).name != "ld" else ["-l:libm.so.6", "-l:libc.so.6"]
    if openmp:
        gomp = openmp_library()
        if gomp is None:
            raise CompileError("the model runs on several threads but libgomp was not found")
        libraries.append(f"-l:{gomp}")
    return linker + ["-o", output, *objects] + libraries


# Contexts of failed compiles, never disposed: their modules may live on in a traceback.
_KEPT_CONTEXTS: list = []


def _emit(source: str, machine: llvm.TargetMachine, optimize: bool = True) -> bytes:
    """The module's object code (optimized unless optimize=False), built in an LLVM context of its own,
    disposed after: in llvmlite's global context every compile's constants and types stayed interned for
    the life of the process (a LeNet-5 compile left 500 KiB resident, 216 KiB with its own context;
    benchmarks/soak.py)."""
    context = llvm.create_context()
    try:
        module = optimized_module(source, None, machine, context) if optimize else _parsed(source, None, context)
        try:
            return machine.emit_object(module)
        finally:
            module.close()   # before its context
    except BaseException:
        _KEPT_CONTEXTS.append(context)
        raise
    finally:
        if not _KEPT_CONTEXTS or _KEPT_CONTEXTS[-1] is not context:
            context.close()


def _from_object(source: str, weights: Weights | None, output: Path, make: Callable[[Path, list[str]], str]) -> None:
    """Compile to a PIC object model.o (and the weights to weights.o) in a temporary directory beside
    `output`; `make(directory, objects)` turns them into a file there and returns its name, which then
    replaces `output` atomically."""
    machine = target_machine()
    obj = _emit(source, machine)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".build-") as tmp:
        build = Path(tmp)
        (build / "model.o").write_bytes(obj)
        objects = ["model.o"]
        if weights is not None:
            (build / "weights.o").write_bytes(weights.object_code(build / "weights.bin", machine))
            objects.append("weights.o")
        os.replace(build / make(build, objects), output)


def link_library(source: str, weights: Weights | None, output: Path, linker: list[str], openmp: bool) -> None:
    """Compile to PIC objects and link them into a shared library at `output`, atomically."""
    def link(build: Path, objects: list[str]) -> str:
        argv = _link_command(linker, objects, "model.so", openmp)
        try:
            result = subprocess.run(argv, cwd=build, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"cannot run the linker: {' '.join(argv)}: {e}") from e
        if result.returncode != 0:
            raise CompileError(f"linking failed (exit {result.returncode}): {' '.join(argv)}", result.stderr)
        return "model.so"
    _from_object(source, weights, output, link)


def write_archive(source: str, weights: Weights | None, output: Path) -> None:
    """Compile to objects and archive them into a static library at `output`, atomically."""
    from ..c import archive

    def pack(build: Path, objects: list[str]) -> str:
        archive(objects, "model.a", build)
        return "model.a"
    _from_object(source, weights, output, pack)


# -- the JIT ------------------------------------------------------------------------------

class JitLibrary:
    """A model JIT-compiled into this process: the three entry points as function addresses."""

    path = None

    def __init__(self, source: str, weights: Weights | None, openmp: bool) -> None:
        self.source, self.weights, self.openmp = source, weights, openmp
        if openmp:
            gomp = openmp_library()
            if gomp is None:
                raise CompileError("the model runs on several threads but libgomp was not found")
            llvm.load_library_permanently(gomp)
        machine = target_machine(jit=True)
        self._module = optimized_module(source, weights.ir(host_target().triple) if weights else None, machine)
        self._engine = llvm.create_mcjit_compiler(self._module, machine)
        self._engine.finalize_object()

    def function(self, ffi, name: str, pointer_type: str):
        address = self._engine.get_function_address(name)
        if not address:
            raise ConvgenError(f"the JIT-compiled model has no function {name!r}")
        return ffi.cast(pointer_type, address)

    def write(self, destination: Path) -> None:
        """Link a shared library of the same code, which needs a linker after all."""
        linker = find_linker()
        if linker is None:
            raise ConvgenError("this model was JIT-compiled because no C compiler or linker was found "
                               "(looked for $CC or cc, and $LD or ld); saving it needs one to write the "
                               "shared library")
        link_library(self.source, self.weights, destination, linker, self.openmp)

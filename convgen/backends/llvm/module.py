"""One LLVM module per graph, as templates/model.c.j2: a function per kernel, the weights, and the
exported entry points <prefix>_forward, <prefix>_workspace_size, <prefix>_signature and
<prefix>_embedded_weights (the saved header's create/run/destroy API is built on these)."""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable

from llvmlite import ir

from ... import __version__
from ...lower import Buffer, Kernel, LoweredModel
from ..c import signature
from . import conv, conv1x1, conv_narrow, conv_transpose, convert, dense, elementwise, lp_pool, norm, pad, pool, reduce, resample, strided, winograd
from .convert import element_type
from .emitter import I8, I32, I64, PTR, Emitter, Index, Ptr, Var

Family = Callable[[Emitter, Kernel, dict[str, Ptr], Ptr], None]
FAMILIES: dict[str, Family] = {
    "conv_direct": conv.conv_direct, "conv_rowwise": conv.conv_rowwise, "conv_pixels": conv.conv_pixels, "conv_depthwise": conv.conv_depthwise, "locally_connected": conv.locally_connected,
    "conv_narrow": conv_narrow.conv_narrow, "conv_winograd": winograd.conv_winograd, "conv_gemm": conv1x1.conv_gemm,
    "pool": pool.pool,
    "conv_transpose": conv_transpose.conv_transpose, "lp_pool": lp_pool.lp_pool,
    "global_lp_pool": lp_pool.global_lp_pool,
    "activation": elementwise.activation, "batch_norm": elementwise.batch_norm, "lrn": elementwise.lrn,
    "normalize": norm.normalize,
    "strided": strided.strided, "pad": pad.pad, "resample": resample.resample,
    "linear": dense.linear, "softmax": dense.softmax, "concat": dense.concat, "reduce": reduce.reduce,
    "cast": convert.cast, "quantize": convert.quantize, "dequantize": convert.dequantize,
}


def weights_symbol(model: LoweredModel) -> str:
    return f"{model.prefix}_weights"


def _declare_weights(module: ir.Module, model: LoweredModel) -> ir.GlobalVariable | None:
    """The weights blob: declared here, defined in an object of its own (native.Weights; its bytes
    stay out of the printed source and out of the optimizer)."""
    if not model.weights:
        return None
    weights = ir.GlobalVariable(module, ir.ArrayType(I8, len(model.weights)), weights_symbol(model))
    weights.global_constant = True
    weights.storage_class = "hidden"  # printed where LLVM expects the visibility
    weights.align = 64
    return weights


def _kernel_function(module: ir.Module, k: Kernel, fma: bool, dynamic_batch: bool) -> ir.Function:
    """static void fn(const float* restrict x, ..., float* restrict scratch, int64_t batch), with the
    kernel's body; N is the batch argument when the batch is given at run time, else a constant."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * (len(k.args) + 1) + [I64]), k.fn)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    # kept out of the forward function: inlined, every kernel of the graph made one huge function that the
    # O3 pipeline took twice as long over (LeNet-5 cold compile 1.3-1.6 -> 0.9-1.0 s, ResNet-18 10.1 -> 8.1 s),
    # for no speed (one call per kernel; the arguments keep their noalias)
    fn.attributes.add("noinline")
    for arg, name in zip(fn.args, [a.name for a in k.args] + ["scratch"]):
        arg.name = name
        arg.add_attribute("noalias")
    fn.args[-1].name = "batch"
    e = Emitter(fn, fma)
    if dynamic_batch:
        k = dataclasses.replace(k, params={**k.params, "N": Index(e, fn.args[-1])})
    args = {a.name: Ptr(e, arg, element_type(a.buffer.dtype)) for a, arg in zip(k.args, fn.args)}
    FAMILIES[k.template](e, k, args, Ptr(e, fn.args[-2]))
    e.ret()
    return fn


def _prefer_full_vectors(fn: ir.Function, k: Kernel, vector_bytes: int) -> None:
    """A kernel with an activation other than ReLU vectorizes at the register's full width on AVX-512, as
    templates/activation.c.j2's `vectorizable` asks gcc: LLVM tunes Intel's AVX-512 cores for 256-bit loops
    (prefer-256-bit), which halves the rate of the exp/erf/tanh polynomials.  A string attribute, which
    llvmlite's FunctionAttributes does not list: added to the underlying set, printed as written."""
    activation = k.params.get("activation")
    if vector_bytes >= 64 and activation is not None and activation["kind"] != "relu":
        set.add(fn.attributes, '"prefer-vector-width"="512"')


def _pointer(e: Emitter, buffer: Buffer, io_args: list, model: LoweredModel, arena: Var,
             weights: ir.Value, batch: Index) -> ir.Value:
    """The pointer, inside the forward function, to a buffer (arena offsets are per sample when the
    batch is a run-time value)."""
    if buffer.kind == "input":
        return io_args[buffer.offset]
    if buffer.kind == "output":
        return io_args[len(model.inputs) + buffer.offset]
    if buffer.kind == "arena":
        offset = batch * buffer.offset if model.dynamic_batch else e.const(buffer.offset)
        return e.b.gep(arena.get(), [offset.value], inbounds=True, source_etype=I8)
    if buffer.kind == "weights":
        return e.b.gep(weights, [ir.Constant(I64, buffer.offset)], inbounds=True, source_etype=I8)
    return ir.Constant(PTR, None)


def _exported(module: ir.Module, ret: ir.Type, params: list[ir.Type], name: str, fma: bool) -> Emitter:
    fn = ir.Function(module, ir.FunctionType(ret, params), name)
    fn.attributes.add("nounwind")
    return Emitter(fn, fma)


def _libc(module: ir.Module, name: str, ret: ir.Type, params: list[ir.Type]) -> ir.Function:
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, params), name)


def _workspace_bytes(e: Emitter, model: LoweredModel, batch: Index) -> Index:
    """<prefix>_workspace_size(batch): per sample x batch, or the fixed size for the fixed batch (0 otherwise)."""
    if model.dynamic_batch:
        return e.iselect(e.icmp("<", batch, 1), 0, batch * model.workspace_bytes)
    return e.iselect(e.icmp("==", batch, model.batch), model.workspace_bytes, 0)


def _forward_function(module: ir.Module, model: LoweredModel, kernels: list[ir.Function], fma: bool) -> None:
    """int <prefix>_forward(const void* weights, int64_t batch, inputs..., outputs..., void* workspace):
    0, -1 if no workspace could be allocated, -2 for a bad batch, -3 if the weights are missing."""
    count = len(model.inputs) + len(model.outputs)
    e = _exported(module, I32, [PTR, I64] + [PTR] * (count + 1), f"{model.prefix}_forward", fma)
    weights, batch_arg, *args = e.function.args
    weights.name, batch_arg.name = "weights", "batch"
    for arg, spec in zip(args, [*model.inputs, *model.outputs]):
        arg.name = spec.ident
        arg.add_attribute("noalias")
    workspace = args[count]
    workspace.name = "workspace"
    batch = Index(e, batch_arg)
    bad_batch = e.icmp("<", batch, 1) if model.dynamic_batch else e.icmp("!=", batch, model.batch)
    with e.if_then(bad_batch):
        e.ret(ir.Constant(I32, -2))
    if model.weights:
        with e.if_then(e.b.icmp_unsigned("==", weights, ir.Constant(PTR, None))):
            e.ret(ir.Constant(I32, -3))
    arena, owned = e.var(workspace, "arena"), e.var(ir.Constant(PTR, None), "owned")
    if model.workspace_bytes:
        with e.if_then(e.b.icmp_unsigned("==", workspace, ir.Constant(PTR, None))):
            allocated = e.b.call(_libc(module, "aligned_alloc", PTR, [I64, I64]),
                                 [ir.Constant(I64, 64), _workspace_bytes(e, model, batch).value])
            with e.if_then(e.b.icmp_unsigned("==", allocated, ir.Constant(PTR, None))):
                e.ret(ir.Constant(I32, -1))
            arena.set(allocated)
            owned.set(allocated)
    pointer = lambda buffer: _pointer(e, buffer, args, model, arena, weights, batch)  # noqa: E731
    for k, fn in zip(model.kernels, kernels):
        e.b.call(fn, [pointer(a.buffer) for a in k.args] + [pointer(k.scratch), batch.value])
    for dst, src, nbytes in model.copies:
        e.memcpy(Ptr(e, pointer(dst)), Ptr(e, pointer(src)), batch * nbytes if model.dynamic_batch else nbytes)
    if model.workspace_bytes:
        e.b.call(_libc(module, "free", ir.VoidType(), [PTR]), [owned.get()])
    e.ret(ir.Constant(I32, 0))


def _string_constant(module: ir.Module, name: str, text: str) -> ir.GlobalVariable:
    data = bytearray(text.encode("utf-8") + b"\0")
    constant = ir.GlobalVariable(module, ir.ArrayType(I8, len(data)), name)
    constant.global_constant, constant.linkage, constant.unnamed_addr = True, "private", True
    constant.initializer = ir.Constant(ir.ArrayType(I8, len(data)), data)
    return constant


def _info_functions(module: ir.Module, model: LoweredModel, fma: bool, embed: bool) -> None:
    e = _exported(module, I64, [I64], f"{model.prefix}_workspace_size", fma)
    e.function.args[0].name = "batch"
    e.ret(_workspace_bytes(e, model, e.arg_index(0)).value)
    text = json.dumps(signature(model, "llvm", "embedded" if embed else "file"), sort_keys=True)
    e = _exported(module, PTR, [], f"{model.prefix}_signature", fma)
    e.ret(_string_constant(module, f"{model.prefix}_signature_json", text))
    weights = _declare_weights(module, model) if embed else None
    e = _exported(module, PTR, [], f"{model.prefix}_embedded_weights", fma)
    e.ret(weights if weights is not None else ir.Constant(PTR, None))


def build_module(model: LoweredModel, triple: str, data_layout: str, fma: bool, embed: bool = True) -> ir.Module:
    """The model's module; embed=False leaves the weights out (they come from a side file)."""
    module = ir.Module(name=model.prefix)
    module.triple, module.data_layout = triple, data_layout
    kernels = [_kernel_function(module, k, fma, model.dynamic_batch) for k in model.kernels]
    for fn, k in zip(kernels, model.kernels):
        _prefer_full_vectors(fn, k, model.vector_bytes)
    _info_functions(module, model, fma, embed)
    _forward_function(module, model, kernels, fma)
    return module


def _layer_line(k: Kernel) -> str:
    return f"; layer {json.dumps(k.layer)} ({k.op}): @{k.fn}"


def source_text(model: LoweredModel, module: ir.Module) -> str:
    """The module's IR, after a header naming each layer's kernel function."""
    header = [f"; Generated by convgen {__version__} from graph {json.dumps(model.graph_name)} "
              f"({len(model.kernels)} kernels).  Every shape, stride, pad and tile is a constant.",
              *(_layer_line(k) for k in model.kernels)]
    return "\n".join(header) + "\n" + str(module)


def layer_code(source: str, layer: str) -> str:
    """The IR of one layer: its kernel function and the functions outlined from it."""
    match = re.search(r"^; layer %s \(\w+\): @(\S+)$" % re.escape(json.dumps(layer)), source, re.M)
    if not match:
        raise KeyError(f"no kernel for layer {layer!r}")
    name = re.escape(match.group(1))
    functions = re.findall(r'^define [^\n]*@"?%s(?:\.[\w.]+)?"?\(.*?^}$' % name, source, re.M | re.S)
    return match.group(0) + "\n" + "\n\n".join(functions) + "\n"

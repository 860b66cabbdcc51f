"""Edge-tile layers built with AddressSanitizer + UBSan (C backend), run against the numpy references.

Run by tests/test_sanitizers.py in a subprocess whose environment makes every library a
sanitized one and puts the ASan runtime first in the process:

    CONVGEN_SANITIZE=1 LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
        python tests/sanitize_suite.py            # exit 0: every case ran clean and matched

The sizes are the ones that break tiling: 1, primes, channel counts just past a vector width,
output rows just past a register tile, kernels as large as the input, the largest pads the shape
rules allow, ceil_mode windows hanging over the end; every op in the registry appears.  A report
aborts the process (-fno-sanitize-recover=all); a wrong value exits 1.  The LLVM backend cannot be
instrumented this way (llvmlite has no sanitizer passes); the C-vs-LLVM differential tests cover it.

`--self-check` instead overruns an output buffer on purpose: ASan must abort (the harness works).
Last line of a clean run: the JSON list of ops covered.
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import convgen  # noqa: E402
import convgen.functional as F  # noqa: E402
from convgen import nn, ops  # noqa: E402
from conftest import reference_outputs  # noqa: E402

RNG = np.random.default_rng(7)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def seq(*layers: nn.Module) -> Callable[[tuple[int, ...]], convgen.Graph]:
    return lambda shape: nn.Sequential(*layers).to_graph(shape, name="edge")


def _residual(shape):
    x = nn.Input(shape, name="x")
    y = nn.Conv2d(shape[1], shape[1], 3, padding=1)(x)
    return nn.graph(nn.relu(x + y), name="edge")


def _conv_plus_skip(conv: nn.Module, act=nn.relu):
    """act(skip + conv(x)), the skip a second input: the add fuses into the conv's epilogue."""
    def build(shape):
        x = nn.Input(shape, name="x")
        y = conv(x)
        skip = nn.Input(y.shape, name="skip", tracer=x.tracer)
        return nn.graph(act(skip + y), name="edge")
    return build


def _concat(shape):
    x = nn.Input(shape, name="x")
    parts = [nn.Conv2d(shape[1], c, 1)(x) for c in (1, 3, 17)]
    return nn.graph(nn.cat(parts, dim=1), nn.flatten(x), name="edge")


def _passthrough(shape):
    x = nn.Input(shape, name="x")
    return nn.graph(nn.flatten(x), x, name="edge")   # outputs that are views of the input: copies


def _standalone_activations(shape):
    x = nn.Input(shape, name="x")
    return nn.graph(nn.relu(x), nn.sigmoid(x), nn.tanh(x), nn.leaky_relu(x, 0.3), nn.clip(x, -0.5, 0.25),
                    nn.relu6(x), name="edge")


def _arithmetic(shape):
    """Broadcasting in every direction, constant and run-time operands, n-ary sum."""
    x = nn.Input(shape, name="x")
    row = nn.Input((1, 1, 1, shape[3]), name="row", tracer=x.tracer)
    column = np.linspace(0.5, 2.0, shape[2], dtype=np.float32).reshape(shape[2], 1)
    return nn.graph(x - row, x * column, row / (nn.relu(x) + 1.0), nn.add_n(x, row, x), 3.0 - x, name="edge")


def _data_movement(shape):
    x = nn.Input(shape, name="x")
    moved = nn.permute(x, 0, 3, 1, 2)
    return nn.graph(nn.reshape(moved, shape[0], -1), nn.transpose(x, 1, 3), nn.channel_shuffle(x, 3),
                    name="edge")


def _pads(shape):
    x = nn.Input(shape, name="x")
    return nn.graph(nn.pad(x, (1, 2, 0, 3)), nn.pad(x, (2, 1, 1, 0), mode="reflect"),
                    nn.pad(x, (3, 0, 0, 2), mode="replicate"), nn.pad(x, (1, 1, 1, 1), mode="circular"),
                    nn.pad(x, (-1, 2, 1, -1), value=0.5), name="edge")


def _matrix_products(shape):
    a = nn.Input(shape, name="a")                                  # (rows, k)
    b = nn.Input((shape[1], 7), name="b", tracer=a.tracer)
    at = nn.Input((shape[1], shape[0]), name="at", tracer=a.tracer)
    a.tracer.constant("bt", RNG.standard_normal((7, shape[1])))
    a.tracer.constant("c", RNG.standard_normal(7))
    gemm = a.tracer.emit(None, "gemm", ops.GemmAttrs(alpha=0.5, beta=2.0, trans_a=True, trans_b=True),
                         [at, "bt", "c"])
    return nn.graph(a @ b, a @ np.ones((shape[1], 3), np.float32), gemm, name="edge")


def _norms(shape):
    """Rows of 1 and of 3 x 16 + 5 floats; columns of 61 (3 vectors and 13 single ones) and of 1; groups."""
    x = nn.Input(shape, name="x")
    channels = nn.Input((shape[0], shape[1], 61), name="c", tracer=x.tracer)
    x.tracer.constant("g", RNG.standard_normal(shape[1]))
    over_channels = x.tracer.emit(None, "layer_norm", ops.LayerNormAttrs(1, 1e-5, 2), [channels, "g", "g"])
    return nn.graph(nn.layer_norm(x, shape[-1:]), nn.layer_norm(x, shape[-2:], eps=0.1),
                    over_channels, nn.LayerNorm(1)(nn.reshape(x, *shape, 1)), nn.GroupNorm(3, shape[1])(x),
                    nn.InstanceNorm2d(shape[1], affine=True)(x), name="edge")


def _onnx_graph(nodes, constants: dict[str, np.ndarray], outputs: list[str]):
    """A one-input ONNX graph ("x", float32) of `nodes`, imported: for ops only ONNX import emits."""
    from onnx import TensorProto, helper, numpy_helper

    def build(shape):
        graph = helper.make_graph(
            nodes, "edge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            [numpy_helper.from_array(v, k) for k, v in constants.items()])
        return convgen.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    return build


def _casts_and_quantization():
    from onnx import TensorProto, helper
    scale, zero = np.array([0.05, 0.1, 0.2], np.float32), np.array([128, 3, 250], np.uint8)
    nodes = [helper.make_node("Cast", ["x"], ["i8"], to=TensorProto.INT8),
             helper.make_node("Cast", ["i8"], ["y_cast"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y_half"], to=TensorProto.FLOAT),
             helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y_qdq"], axis=1)]
    return _onnx_graph(nodes, {"scale": scale, "zero": zero}, ["y_cast", "y_half", "y_qdq"])


def _min_max_pow():
    from onnx import helper
    c = np.linspace(-1.0, 1.0, 17, dtype=np.float32)
    e = np.linspace(0.5, 3.0, 17, dtype=np.float32)
    nodes = [helper.make_node("Min", ["x", "c"], ["y_min"]), helper.make_node("Max", ["x", "c", "x"], ["y_max"]),
             helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Pow", ["a", "e"], ["y_pow"])]
    return _onnx_graph(nodes, {"c": c, "e": e}, ["y_min", "y_max", "y_pow"])


def _comparisons_and_where():
    from onnx import helper
    c = np.linspace(-1.0, 1.0, 17, dtype=np.float32)
    mask = np.arange(17) % 3 == 0
    nodes = [helper.make_node(op, ["x", "c"], [f"t_{op}"]) for op in ("Greater", "Less", "Equal", "GreaterOrEqual",
                                                                      "LessOrEqual")]
    nodes += [helper.make_node("Xor", ["t_Greater", "t_Equal"], ["t_xor"]), helper.make_node("Not", ["t_xor"], ["t_not"]),
              helper.make_node("Where", ["t_not", "x", "c"], ["y_where"]),
              helper.make_node("Where", ["m", "c", "x"], ["y_masked"])]
    return _onnx_graph(nodes, {"c": c, "m": mask}, ["y_where", "y_masked"])


def _slice_and_expand():
    from onnx import helper
    ints = lambda *v: np.array(v, np.int64)  # noqa: E731
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y_slice"]),
             helper.make_node("Expand", ["x", "shape"], ["y_expand"])]
    return _onnx_graph(nodes, {"starts": ints(-1, 1), "ends": ints(-1000, 1000), "axes": ints(3, 2),
                               "steps": ints(-2, 3), "shape": ints(2, 1, 1, 1)}, ["y_slice", "y_expand"])


def _reductions(shape):
    x = nn.Input(shape, name="x")
    return nn.graph(x.mean(1, keepdim=True), x.amax((1, 3)), x.sum(-1), x.amin(0), x.prod((0, 2)), x.logsumexp(),
                    name="edge")


def _norm_reductions():
    from onnx import helper
    nodes = [helper.make_node("ReduceL1", ["x"], ["y_l1"], axes=[1], keepdims=0),
             helper.make_node("ReduceL2", ["x"], ["y_l2"], axes=[0, 3]),
             helper.make_node("ReduceSumSquare", ["x"], ["y_sq"], axes=[2, 3], keepdims=0)]
    return _onnx_graph(nodes, {}, ["y_l1", "y_l2", "y_sq"])


def _cropped_resizes():
    """tf_crop_and_resize reaching outside the input (outputs of extrapolation_value: no taps), linear and
    antialiased cubic (windows of many taps)."""
    from onnx import helper
    roi, sizes = np.array([0, 0, -0.3, 0.2, 1, 1, 1.4, 0.9], np.float32), np.array([1, 2, 7, 3], np.int64)
    nodes = [helper.make_node("Resize", ["x", "roi", "", "sizes"], [f"y_{mode}"], mode=mode.split("_")[0],
                              coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-2.0,
                              antialias=int(mode.endswith("aa"))) for mode in ("nearest", "linear", "cubic_aa")]
    return _onnx_graph(nodes, {"roi": roi, "sizes": sizes}, ["y_nearest", "y_linear", "y_cubic_aa"])


def _dilated_avg_pools():
    from onnx import helper
    nodes = [helper.make_node("AveragePool", ["x"], ["y_exclude"], kernel_shape=[2, 3], dilations=[3, 2],
                              strides=[2, 1], pads=[1, 2, 2, 1], ceil_mode=1, count_include_pad=0),
             helper.make_node("AveragePool", ["x"], ["y_include"], kernel_shape=[3, 2], dilations=[2, 3],
                              strides=[1, 3], pads=[2, 1, 1, 2], ceil_mode=1, count_include_pad=1)]
    return _onnx_graph(nodes, {}, ["y_exclude", "y_include"])


GRAPH_CASES: dict[str, tuple[Callable, tuple[int, ...]]] = {
    "conv 1x1 on 1x1": (seq(nn.Conv2d(1, 1, 1)), (1, 1, 1, 1)),
    "conv kernel = input": (seq(nn.Conv2d(3, 5, 5)), (2, 3, 5, 5)),
    "conv largest pad on 1x1": (seq(nn.Conv2d(2, 3, 3, padding=2)), (1, 2, 1, 1)),
    "conv 17 channels, prime row, stride+dilation": (seq(nn.Conv2d(3, 17, 3, stride=2, dilation=2, padding=3)),
                                                     (1, 3, 13, 29)),
    "conv 33 channels past two vectors, relu": (seq(nn.Conv2d(5, 33, (1, 3), padding=(0, 1)), nn.ReLU()),
                                                (1, 5, 3, 31)),
    "conv1d prime length, same": (seq(nn.Conv1d(3, 7, 4, padding="same")), (3, 3, 23)),
    "conv3d odd everything": (seq(nn.Conv3d(2, 5, (1, 2, 3), padding=1)), (1, 2, 3, 5, 7)),
    "grouped conv": (seq(nn.Conv2d(6, 9, 3, groups=3, padding=1)), (1, 6, 7, 11)),
    # Winograd F(4x4): 25 tiles in register tiles of 9 (a remainder of 7), the last row of tiles clipped,
    # 33 input channels (a vector and one), 40 outputs (the last channel block 8 of 32 lanes)
    "winograd conv, remainder tile, uneven pads, relu": (seq(nn.Conv2d(33, 40, 3, padding=((0, 2), (2, 1))), nn.ReLU()),
                                                        (2, 33, 17, 19)),
    "depthwise conv stride 3": (seq(nn.Conv2d(5, 5, 3, stride=3, groups=5)), (1, 5, 11, 19)),
    "locally connected 1d": (seq(nn.LocallyConnected1d(3, 5, 3, 11, stride=2, padding=1)), (2, 3, 11)),
    "locally connected 2d": (seq(nn.LocallyConnected2d(2, 3, 2, (5, 7))), (1, 2, 5, 7)),
    "max pool ceil over the end, indices": (seq(nn.MaxPool2d(3, 2, padding=1, ceil_mode=True, return_indices=True)),
                                            (1, 3, 8, 13)),
    "max pool dilated 1d": (seq(nn.MaxPool1d(3, 2, dilation=2, padding=2)), (2, 3, 17)),
    "max pool 3d kernel = input": (seq(nn.MaxPool3d((2, 3, 5))), (1, 2, 2, 3, 5)),
    "avg pool exclude pad, ceil": (seq(nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)),
                                   (1, 2, 6, 11)),
    "avg pool divisor, 3d": (seq(nn.AvgPool3d(2, 1, padding=1, divisor_override=3)), (1, 1, 2, 3, 4)),
    "avg pool 1x1 on 1x1": (seq(nn.AvgPool2d(1)), (1, 1, 1, 1)),
    "global pools": (seq(nn.GlobalMaxPool(), nn.Flatten(), nn.Linear(3, 2)), (2, 3, 5, 7)),
    "adaptive avg pool 1d": (seq(nn.AdaptiveAvgPool1d(1)), (1, 17, 1)),
    "adaptive avg and max pools, uneven bins": (seq(nn.AdaptiveAvgPool2d((3, 7)), nn.AdaptiveMaxPool2d((2, 5))),
                                                (2, 3, 10, 11)),
    "bilinear up, nearest down, one-row outputs": (seq(nn.Upsample(scale_factor=(2.5, 1.7), mode="bilinear"),
                                                       nn.Upsample(size=(1, 3), mode="nearest")), (1, 17, 3, 5)),
    "bicubic up and down (4 taps, clamped at the edges)": (seq(nn.Upsample(scale_factor=(2.5, 0.6), mode="bicubic"),
                                                               nn.Upsample(size=(1, 7), mode="bicubic")), (1, 17, 3, 5)),
    "tf_crop_and_resize with extrapolation, antialiased cubic": (_cropped_resizes(), (1, 2, 5, 11)),
    "activations on 1023 elements": (_standalone_activations, (1, 3, 11, 31)),
    "activations on 1 element": (_standalone_activations, (1, 1, 1, 1)),
    "batch norm alone": (seq(nn.BatchNorm2d(3)), (2, 3, 5, 7)),
    "batch norm after pool": (seq(nn.MaxPool2d(2), nn.BatchNorm2d(17), nn.Sigmoid()), (1, 17, 3, 5)),
    "residual add": (_residual, (1, 3, 5, 5)),
    # the residual add fused into each conv path's epilogue: direct (17 channels, a prime row: the row pass),
    # direct small (the whole-output pass), pixels with its tail tiles, Winograd's clipped last tiles
    "fused residual, direct, prime row": (_conv_plus_skip(nn.Conv2d(5, 17, 3, padding=1, bias=False)), (2, 5, 15, 37)),
    "fused residual, direct, whole-output pass": (_conv_plus_skip(nn.Conv2d(3, 5, 3, stride=2), lambda t: t),
                                                 (1, 3, 9, 11)),
    "fused residual, pixels tail tiles": (_conv_plus_skip(nn.Conv1d(3, 11, 3, padding=1)), (2, 3, 75)),
    # 1x1 as a matrix product: a partial channel block (17 on 13-14), two K blocks, tail tiles down to single pixels
    "1x1 gemm, K blocks and tail tiles, relu": (seq(nn.Conv2d(301, 17, 1), nn.ReLU()), (2, 301, 7, 11)),
    "fused residual, 1x1 gemm": (_conv_plus_skip(nn.Conv2d(5, 9, 1)), (1, 5, 6, 13)),
    "fused residual, winograd, uneven pads": (_conv_plus_skip(nn.Conv2d(33, 40, 3, padding=((0, 2), (2, 1))),
                                                              nn.silu), (1, 33, 17, 19)),
    "linear 1 -> 1": (seq(nn.Flatten(), nn.Linear(1, 1)), (1, 1)),
    "linear 17 -> 33, relu": (seq(nn.Flatten(), nn.Linear(17, 33), nn.ReLU()), (3, 17)),
    "softmax rows of 1 and 19": (seq(nn.Flatten(), nn.Linear(6, 19), nn.Softmax(dim=1)), (2, 6)),
    "softmax axis 1 of 4-d": (seq(nn.Softmax(dim=1)), (1, 1, 3, 5)),
    "concat odd channels": (_concat, (1, 2, 3, 5)),
    "outputs that are the input": (_passthrough, (1, 2, 3, 1)),
    "broadcast arithmetic, 17-wide rows": (_arithmetic, (2, 3, 5, 17)),
    "broadcast arithmetic on 1 element": (_arithmetic, (1, 1, 1, 1)),
    "transpose, permute, reshape, shuffle": (_data_movement, (2, 6, 5, 3)),
    "conv transpose stride 3, output padding, groups": (seq(nn.ConvTranspose2d(4, 6, 3, stride=3, padding=1,
                                                                               output_padding=2, groups=2)),
                                                        (1, 4, 5, 7)),
    "conv transpose 1d on 1 sample, dilated": (seq(nn.ConvTranspose1d(3, 17, 4, dilation=2)), (2, 3, 1)),
    "conv transpose 3d": (seq(nn.ConvTranspose3d(1, 2, (1, 2, 3), stride=(1, 2, 2))), (1, 1, 2, 3, 5)),
    "lp pool ceil over the end": (seq(nn.LPPool2d(3, 3, 2, ceil_mode=True)), (1, 2, 8, 11)),
    "lp pool 1d, 17 channels": (seq(nn.LPPool1d(2, 3)), (1, 17, 7)),
    "global lp pool": (seq(nn.GlobalLpPool(1.5)), (2, 3, 5, 7)),
    "pads of every mode, crops": (_pads, (1, 2, 4, 5)),
    "lrn, prelu": (seq(nn.LocalResponseNorm(3), nn.PReLU(5)), (1, 5, 3, 7)),
    "layer norm rows and channels, group norm, instance norm": (_norms, (2, 6, 1, 53)),
    "matmul, gemm with transposes": (_matrix_products, (3, 17)),
    "casts and a per-channel quantize/dequantize pair": (_casts_and_quantization(), (1, 3, 5, 17)),
    "min, max, pow with a tensor exponent, 17-wide rows": (_min_max_pow(), (2, 3, 5, 17)),
    "slice with negative steps, expand": (_slice_and_expand(), (1, 3, 7, 17)),
    "comparisons, logic, where with run-time and constant conditions": (_comparisons_and_where(), (2, 3, 5, 17)),
    "reductions over channel, batch, mixed and every axis, 37-wide rows": (_reductions, (2, 17, 3, 37)),
    "reductions on 1 element": (_reductions, (1, 1, 1, 1)),
    "l1, l2, sum of squares reductions": (_norm_reductions(), (2, 3, 5, 17)),
    "dilated avg pools, ceil over the end, taps missing the input": (_dilated_avg_pools(), (1, 3, 2, 17)),
}

# Weights as run-time inputs: the kernels pack them per call (a different code path).
FUNCTIONAL_CASES: dict[str, tuple[Callable, tuple]] = {
    "functional conv2d, runtime packing": (F.conv2d, (_x(1, 3, 7, 13), _x(17, 3, 3, 2), _x(17))),
    "functional conv1d per-side pads": (lambda x, w: F.conv1d(x, w, padding=((3, 0),), stride=2),
                                        (_x(1, 2, 5), _x(3, 2, 4))),
    "functional conv3d groups": (lambda x, w: F.conv3d(x, w, groups=2, padding=1), (_x(1, 4, 2, 3, 3), _x(6, 2, 1, 2, 3))),
    "functional max pool indices 1d": (lambda x: F.max_pool1d(x, 4, 3, padding=2, ceil_mode=True, return_indices=True),
                                       (_x(1, 1, 10),)),
}


def _check(name: str, got, expected) -> str | None:
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        finite = np.abs(e[np.isfinite(e)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        if g.shape != e.shape or not np.allclose(g, e, rtol=1e-4, atol=1e-5 * scale, equal_nan=True):
            return f"{name}: wrong values (shape {g.shape} vs {e.shape})"
    return None


def run_graph_case(name: str) -> tuple[str | None, set[str]]:
    build, shape = GRAPH_CASES[name]
    nn.manual_seed(abs(hash(name)) % 1000)
    graph = build(shape)
    model = convgen.compile(graph, backend="c", threads=1)
    inputs = [_x(*t.shape) for _, t in graph.inputs]
    problem = _check(name, model(*inputs), reference_outputs(graph, *inputs))
    return problem, {n.op for n in graph.nodes} | {n.op for n in model.graph.nodes}


def run_functional_case(name: str) -> tuple[str | None, set[str]]:
    fn, args = FUNCTIONAL_CASES[name]
    got = fn(*args)
    model = next(reversed(F._kernels.values()))  # the kernel this call compiled
    node = model.graph.nodes[0]
    return _check(name, got, ops.run_reference(node.op, node.attrs, *args)), {node.op}


def self_check() -> None:
    """Write one element past an output buffer: ASan must abort the process."""
    model = convgen.compile(seq(nn.Conv2d(1, 2, 1))((1, 1, 3, 3)), backend="c", threads=1)
    x = np.ones((1, 1, 3, 3), np.float32)
    short = np.empty(model.output_shapes[0][1:], np.float32).ravel()[:-1].copy()
    ffi = model._ffi
    model._run(model._weights, 1, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", short), ffi.NULL)
    print("no report: the sanitizer did not catch an overrun", flush=True)
    sys.exit(3)


def main() -> int:
    if "--self-check" in sys.argv:
        self_check()
    with ThreadPoolExecutor(2) as pool:   # compiles run in subprocesses: two at a time
        results = list(pool.map(run_graph_case, GRAPH_CASES))
    results += [run_functional_case(name) for name in FUNCTIONAL_CASES]
    problems = [p for p, _ in results if p]
    covered = sorted(set().union(*(ops_ for _, ops_ in results)))
    for p in problems:
        print(p, flush=True)
    print(json.dumps(covered), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

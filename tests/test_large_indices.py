"""64-bit index arithmetic: models whose tensors exceed 2**31 elements (too large to run here: 8 GB
per tensor) are generated, and the code is checked statically: the C compiles with integer
overflow in constant expressions as an error and declares no `int` but the register-tile
counters; the LLVM IR does no scalar i32 arithmetic and indexes memory with i64 only."""
from __future__ import annotations

import math
import re
import subprocess

import pytest

from convgen import UnsupportedError, lower, nn, ops, passes
from convgen.backends import c as c_backend
from convgen.backends import llvm as llvm_backend
from convgen.target import host

BIG = 2 ** 31 + 2 ** 20


def _residual(shape):
    x = nn.Input(shape, name="x")
    y = nn.Conv2d(shape[1], shape[1], 3, padding=1, groups=shape[1])(x)   # depthwise: the rowwise path
    return nn.graph(nn.sigmoid(nn.relu(x + y)), nn.cat([x, y], dim=1), name="big")


def _arithmetic(shape):
    x = nn.Input(shape, name="x")
    row = nn.Input((1, 1, 1, shape[3]), name="row", tracer=x.tracer)
    return nn.graph(nn.transpose(x * row - 1.0, 2, 3), nn.add_n(x, row, x) / row, name="big")


def _runtime_weights(shape):
    x = nn.Input(shape, name="x")
    w = nn.Input((32, shape[1], 9, 9), name="w", tracer=x.tracer)   # packed per call: CG * KK * TILE > 2^31
    return nn.graph(x.tracer.emit(None, "conv", ops.ConvAttrs((9, 9), (1, 1), ((0, 0), (0, 0)), (1, 1)), [x, w]))


CASES = {
    # (1, 2, 33000, 33000) inputs: 2.2e9 elements; conv output 16x that
    "conv direct, max pool with indices": (lambda s: nn.Sequential(
        nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1, return_indices=True)).to_graph(s),
        (1, 2, 33000, 33000)),
    "depthwise, add, activations, concat": (_residual, (1, 2, 33000, 33000)),
    "avg pool, batch norm, global pool, softmax": (lambda s: nn.Sequential(
        nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), nn.BatchNorm2d(2), nn.Tanh(), nn.MaxPool2d(1),
        nn.GlobalAvgPool(), nn.Flatten(), nn.Softmax(dim=1)).to_graph(s), (1, 2, 33000, 33000)),
    "conv1d and pool1d over 2.1e9 samples": (lambda s: nn.Sequential(
        nn.Conv1d(1, 3, 5, padding=2), nn.MaxPool1d(2, 2, return_indices=True)).to_graph(s), (1, 1, 2 ** 31 - 9)),
    "conv with run-time weights of 2.6e9 elements": (_runtime_weights, (1, 1_000_000, 9, 9)),
    "conv3d": (lambda s: nn.Sequential(nn.Conv3d(1, 2, 3, padding=1)).to_graph(s), (1, 1, 1300, 1300, 1300)),
    "softmax over channels of big planes": (lambda s: nn.Sequential(nn.Softmax(dim=1)).to_graph(s),
                                            (1, 3, 33000, 33000)),
    "broadcast arithmetic, sum, transpose": (_arithmetic, (1, 2, 33000, 33000)),
    "conv transpose and lp pools": (lambda s: nn.Sequential(
        nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), nn.LPPool2d(2, 3, 2, ceil_mode=True),
        nn.GlobalLpPool(3.0)).to_graph(s), (1, 2, 23000, 23000)),
    "batch 3 of 9e8-element samples": (lambda s: nn.Sequential(
        nn.ReLU(), nn.BatchNorm2d(1), nn.AvgPool2d(1), nn.Softmax(dim=1), nn.GlobalMaxPool()).to_graph(s),
        (3, 1, 30000, 30000)),
    "batch 3 of 9e8-element samples, DAG": (lambda s: _arithmetic(s), (3, 1, 30000, 30000)),
    "linear over 2.2e9 input elements": (lambda s: nn.Sequential(nn.Flatten(), nn.Linear(33000, 3)).to_graph(s),
                                         (66000, 33000)),
}


@pytest.fixture(scope="module", params=list(CASES))
def lowered(request):
    build, shape = CASES[request.param]
    nn.manual_seed(0)
    model = lower.lower(passes.optimize(build(shape)), host(), 2)
    assert max(math.prod(v.shape) for v in (*model.inputs, *model.outputs)) > 2 ** 31 or model.workspace_bytes > 2 ** 33
    return model


INT_DECLARATION = re.compile(r"\b(?:unsigned\s+)?(?:int|short|long|int32_t)\s+(\w+)\s*(?:=|;|\[|,)")


def test_c_has_no_32_bit_index_arithmetic(lowered, tmp_path):
    source = c_backend.render_source(lowered)
    (tmp_path / "model.c").write_text(source)
    argv = [c_backend.compiler(), "-std=gnu11", "-fopenmp", "-fsyntax-only", "-Werror=overflow",
            "-Werror=shift-overflow", "-Werror=narrowing", str(tmp_path / "model.c")]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    code = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    names = set(INT_DECLARATION.findall(code))
    # r, j, v count a register tile's pixels and vectors, rr the rows of a 2-D register tile, l the
    # reduce kernel's vector lanes (all < 64);
    # `bits` is exp()'s exponent trick; `inside` is pad's flag, `nan` the max pool's.
    allowed = {"r", "rr", "l", "j", "v", "bits", "inside", "nan"}
    assert names <= allowed, names - allowed


def test_llvm_ir_indexes_with_64_bit_integers(lowered):
    ir, _ = llvm_backend.generate(lowered)
    scalar_i32_math = re.compile(r'^\s*%"(?!exp_bits)[^"]*" = (?:add|sub|mul|sdiv|udiv|srem|urem|shl|lshr|ashr|phi|icmp \w+|select i1 \S+,)'
                                 r"(?: nsw| nuw| exact)* i32 ")
    element_gep = re.compile(r"getelementptr (?:inbounds )?(?:float|i8|i64|<\d+ x float>), ptr [^,]+, i32 ")
    for line in ir.splitlines():
        assert not scalar_i32_math.search(line), line
        assert not element_gep.search(line), line


def test_a_single_dimension_past_2_31_is_unsupported_in_c_not_miscompiled():
    graph = nn.Sequential(nn.Conv1d(1, 3, 5, padding=2)).to_graph((1, 1, BIG))
    model = lower.lower(passes.optimize(graph), host(), 2)
    with pytest.raises(UnsupportedError, match=r"IW = 2148532224 .* past 2\^31 - 1"):
        c_backend.render_source(model)
    llvm_backend.generate(model)    # i64 throughout


def test_pad_lrn_prelu_matmul_of_big_tensors(tmp_path):
    x = nn.Input((3, 3, 30000, 30000), name="x")
    a = nn.Input((70000, 33000), name="a", tracer=x.tracer)
    b = nn.Input((33000, 3), name="b", tracer=x.tracer)
    nn.manual_seed(0)
    graph = nn.graph(nn.pad(x, (1, 2, 0, 3), mode="reflect"), nn.LocalResponseNorm(3)(x), nn.PReLU(3)(x), a @ b)
    model = lower.lower(passes.optimize(graph), host(), 2)
    test_c_has_no_32_bit_index_arithmetic(model, tmp_path)
    test_llvm_ir_indexes_with_64_bit_integers(model)

"""compile(graph, batch=None): kernels whose batch loop bound is a run-time argument, against torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import convgen
from convgen import lower, nn, passes
from convgen.target import host

from conftest import assert_close
from models import BasicBlock, lenet5, numpy_state, randomize_batch_norm, torch_basic_block, torch_lenet5


@pytest.fixture(scope="module", params=["c", "llvm"])
def any_batch_lenet(request):
    torch.manual_seed(0)
    reference = torch_lenet5().eval()
    net = lenet5()
    net.load_state_dict(numpy_state(reference))
    graph = net.to_graph((4, 1, 32, 32), name="lenet5")
    return reference, convgen.compile(graph, backend=request.param, batch=None)


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
def test_lenet5_any_batch_matches_torch(any_batch_lenet, batch, rng):
    reference, model = any_batch_lenet
    x = rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    assert_close(model(x), expected)


def test_one_model_runs_batches_in_any_order(any_batch_lenet, rng):
    """The per-thread workspace grows and is reused; results do not depend on earlier calls."""
    reference, model = any_batch_lenet
    xs = [rng.standard_normal((n, 1, 32, 32)).astype(np.float32) for n in (7, 1, 3, 7)]
    first = [model(x) for x in xs]
    for x, y in zip(reversed(xs), reversed(first)):
        np.testing.assert_array_equal(model(x), y)
    out = np.empty((3, 10), np.float32)
    assert model(xs[2], out=out) is out
    np.testing.assert_array_equal(out, first[2])


def _blocks(in_channels: int, channels: int, stride: int, seed: int):
    """A ResNet basic block in torch (random batch-norm statistics) and the same block in the DSL."""
    torch.manual_seed(seed)
    reference = torch_basic_block(in_channels, channels, stride)
    randomize_batch_norm(reference)
    reference.eval()
    block = BasicBlock(in_channels, channels, stride)
    block.load_state_dict(numpy_state(reference))
    return reference, block


def test_resnet_block_any_batch_matches_torch(backend, rng):
    """A block big enough for two threads: the parallel loops take the batch as their outer extent."""
    reference, block = _blocks(16, 16, 1, seed=1)
    model = convgen.compile(block.to_graph((2, 16, 14, 14), name="block"), backend=backend, threads=2, batch=None)
    if backend == "llvm":
        assert "GOMP_parallel" in model.show_code()
    for batch in (1, 3, 4):
        x = rng.standard_normal((batch, 16, 14, 14)).astype(np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_strided_block_with_downsample_any_batch(backend, rng):
    reference, block = _blocks(8, 24, 2, seed=2)
    model = convgen.compile(block.to_graph((1, 8, 15, 15), name="block"), backend=backend, batch=None)
    for batch in (2, 6):
        x = rng.standard_normal((batch, 8, 15, 15)).astype(np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_bad_batches_raise_clear_errors(any_batch_lenet):
    _, model = any_batch_lenet
    assert model.batch is None and model.input_shapes == ((1, 1, 32, 32),)
    with pytest.raises(ValueError, match="batch size 0"):
        model(np.zeros((0, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(N, 1, 32, 32\)"):
        model(np.zeros((2, 1, 32, 31), np.float32))
    with pytest.raises(ValueError, match="out="):
        model(np.zeros((2, 1, 32, 32), np.float32), out=np.empty((3, 10), np.float32))


def test_inputs_must_share_the_batch(backend):
    graph = nn.trace(nn.add, (1, 2, 5, 5), (1, 2, 5, 5), name="pair", input_names=["a", "b"])
    model = convgen.compile(graph, backend=backend, batch=None)
    x = np.ones((3, 2, 5, 5), np.float32)
    np.testing.assert_array_equal(model(x, 2 * x), 3 * x)
    with pytest.raises(ValueError, match="different batch sizes"):
        model(x, x[:2])


def test_fixed_batch_is_the_default_and_can_be_changed(backend, rng):
    graph = lenet5().to_graph((2, 1, 32, 32), name="lenet5")
    fixed = convgen.compile(graph, backend=backend)
    assert fixed.batch == 2 and fixed.input_shapes == ((2, 1, 32, 32),)
    with pytest.raises(ValueError, match="expected shape"):
        fixed(np.zeros((3, 1, 32, 32), np.float32))
    three = convgen.compile(graph, backend=backend, batch=3)
    assert three.batch == 3 and three.output_shapes == ((3, 10),)
    x = rng.standard_normal((3, 1, 32, 32)).astype(np.float32)
    assert_close(three(x), np.concatenate([fixed(x[:2]), fixed(x[1:])[1:]]))


@pytest.mark.parametrize("make,message", [
    (lambda x: nn.Softmax(dim=0)(nn.Flatten()(x)), "along the batch axis"),
    (lambda x: nn.Flatten(start_dim=0)(x), "first axis"),
    (lambda x: nn.cat([x, x], dim=0), "first axis"),
])
def test_graphs_that_mix_the_batch_are_refused(make, message):
    x = nn.Input((2, 3, 4, 4))
    graph = nn.graph(make(x), name="mixing")
    with pytest.raises(convgen.UnsupportedError, match=message):
        convgen.compile(graph, batch=None)


@pytest.mark.parametrize("batch", [0, -1, 2.0, True])
def test_bad_batch_arguments(batch):
    graph = lenet5().to_graph((1, 1, 32, 32))
    with pytest.raises(ValueError, match="batch must be a positive int"):
        convgen.compile(graph, batch=batch)


def test_workspace_scales_with_the_batch():
    graph = passes.optimize(lenet5().to_graph((1, 1, 32, 32)))
    per_sample = lower.lower(graph, host(), 1, dynamic_batch=True)
    fixed = lower.lower(graph, host(), 1)
    assert per_sample.batch is None and fixed.batch == 1
    assert per_sample.workspace_bytes == fixed.workspace_bytes > 0
    assert all(b.offset % 64 == 0 for k in per_sample.kernels for a in k.args
               for b in [a.buffer] if b.kind == "arena")


def _branches(x):
    """Every kernel family once: 1x1 (pixels path), depthwise (rowwise), max pool with indices, avg pool,
    standalone batch-norm and activation, concat and softmax along channels, global pool, linear,
    transposed convolution, Lp pools."""
    a = nn.Conv2d(4, 16, 1)(x)
    b = nn.Conv2d(4, 4, 3, padding=1, groups=4)(x)
    pooled, indices = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)(nn.cat([a, b], dim=1))
    c = nn.Sigmoid()(nn.BatchNorm2d(20)(nn.AvgPool2d(2, ceil_mode=True)(pooled)))
    d = nn.LocallyConnected2d(20, 3, 2, input_size=(3, 3))(c)
    head = nn.Softmax(dim=1)(nn.Linear(20, 6)(nn.Flatten()(nn.AdaptiveAvgPool2d(1)(c))))
    up = nn.ConvTranspose2d(20, 5, 3, stride=2, padding=1)(c)
    lp = nn.GlobalLpPool(3.0)(nn.LPPool2d(2.0, 2)(up))
    return head, indices, d, lp


def test_every_kernel_family_takes_the_batch_at_run_time(backend, rng):
    """batch=None against the same graph compiled for each batch (itself checked against torch elsewhere)."""
    nn.manual_seed(5)
    graph = nn.trace(_branches, (1, 4, 11, 11), name="families")
    any_batch = convgen.compile(graph, backend=backend, batch=None)
    for batch in (1, 3):
        fixed = convgen.compile(graph, backend=backend, batch=batch)
        x = rng.standard_normal((batch, 4, 11, 11)).astype(np.float32)
        for got, expected in zip(any_batch(x), fixed(x)):
            assert got.dtype == expected.dtype
            assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_broadcasting_arithmetic_and_transpose_take_the_batch(backend, rng):
    """Constants broadcast to every sample (batch stride 0); batch operands and transposes step per sample."""
    scale = rng.standard_normal((4, 1, 1)).astype(np.float32)

    def fn(x, y):
        return ((x * scale + y) / 2.0).permute(0, 2, 3, 1) - 1.0

    graph = nn.trace(fn, (1, 4, 5, 3), (1, 4, 5, 3), name="arith")
    model = convgen.compile(graph, backend=backend, batch=None)
    for batch in (1, 4):
        x, y = (rng.standard_normal((batch, 4, 5, 3)).astype(np.float32) for _ in range(2))
        assert_close(model(x, y), ((x * scale + y) / 2.0).transpose(0, 2, 3, 1) - 1.0, rtol=1e-6, atol=1e-6)


def test_reshape_to_a_fixed_batch_is_refused():
    graph = nn.trace(lambda x: x.reshape(1, -1), (1, 4, 5, 3), name="fixed_reshape")
    with pytest.raises(convgen.UnsupportedError, match="first axis"):
        convgen.compile(graph, batch=None)
    keeps_batch = nn.trace(lambda x: x.reshape(-1, 60), (1, 4, 5, 3), name="reshape")
    model = convgen.compile(keeps_batch, batch=None)
    x = np.arange(2 * 60, dtype=np.float32).reshape(2, 4, 5, 3)
    np.testing.assert_array_equal(model(x), x.reshape(2, 60))


def _onnx_ops(x):
    """The ONNX-import ops: pad (reflect, per sample), LRN, hard activations, PReLU, channel shuffle,
    matmul and gemm with constant B on the linear kernel, n-ary sum."""
    padded = nn.ReflectionPad2d((1, 2, 0, 1))(x)
    normed = nn.Hardswish()(nn.LocalResponseNorm(3)(padded))
    shuffled = nn.ChannelShuffle(2)(nn.PReLU(4)(normed))
    flat = nn.Hardsigmoid()(shuffled).flatten()
    product = flat @ np.linspace(-1, 1, flat.shape[1] * 5, dtype=np.float32).reshape(flat.shape[1], 5)
    gemm = x.tracer.emit("gemm", "gemm", convgen.ops.GemmAttrs(0.5, 2.0),
                         [product, x.tracer.constant("b", np.eye(5, 3, dtype=np.float32)),
                          x.tracer.constant("c", np.arange(3, dtype=np.float32))])
    return nn.add_n(gemm, gemm, 1.0 + gemm)


def test_onnx_import_ops_take_the_batch_at_run_time(backend, rng):
    nn.manual_seed(6)
    graph = nn.trace(_onnx_ops, (1, 4, 5, 6), name="onnx_ops")
    any_batch = convgen.compile(graph, backend=backend, batch=None)
    for batch in (1, 3):
        fixed = convgen.compile(graph, backend=backend, batch=batch)
        x = rng.standard_normal((batch, 4, 5, 6)).astype(np.float32)
        assert_close(any_batch(x), fixed(x), rtol=1e-6, atol=1e-6)


def test_padding_the_batch_axis_needs_a_fixed_batch():
    graph = nn.graph(nn.pad(nn.Input((2, 3, 4, 4)), (0, 0, 0, 0, 0, 0, 1, 0)), name="fixed_only")
    with pytest.raises(convgen.UnsupportedError, match="layer 'pad0' .* first axis"):
        convgen.compile(graph, batch=None)

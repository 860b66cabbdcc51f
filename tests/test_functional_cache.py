"""convgen.functional's per-call index (_signatures): a repeated call skips the argument checks, so the
index must tell apart everything that changes the kernel or the checks' verdict: shapes, dtypes,
argument values and their types, bias or none, the thread count; and a hit must still compute
torch's answer for new values, other layouts and other weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convgen
import convgen.functional as F

from conftest import assert_close


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def test_a_repeated_call_reuses_its_kernel_and_sees_new_values(backend, rng):
    x = rng.standard_normal((1, 6, 28, 28)).astype(np.float32)
    F.max_pool2d(x, 2, backend=backend)
    kernels, signatures = len(F._kernels), len(F._signatures)
    for _ in range(3):
        x = rng.standard_normal((1, 6, 28, 28)).astype(np.float32)
        assert_close(F.max_pool2d(x, 2, backend=backend), TF.max_pool2d(t(x), 2).numpy())
        out = F.max_pool2d(x, 2, backend=backend)
        x[...] = rng.standard_normal(x.shape)          # the same array, new values
        assert not np.array_equal(F.max_pool2d(x, 2, backend=backend), out)
        assert_close(F.max_pool2d(x, 2, backend=backend), TF.max_pool2d(t(x), 2).numpy())
    assert (len(F._kernels), len(F._signatures)) == (kernels, signatures)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2), dict(kernel_size=3), dict(kernel_size=(2, 3)), dict(kernel_size=[3, 2]),
    dict(kernel_size=2, stride=1), dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, dilation=2),
])
def test_each_pool_signature_gets_its_own_kernel(kwargs, rng):
    """Called in turn, twice each, on two shapes and two dtypes: every answer is torch's."""
    for _ in range(2):
        for shape in ((1, 3, 9, 10), (2, 3, 7, 7)):
            for dtype in (np.float32, np.float64):
                x = rng.standard_normal(shape).astype(dtype)
                assert_close(F.max_pool2d(x, **kwargs), TF.max_pool2d(t(x), **kwargs).numpy())
                avg = {k: v for k, v in kwargs.items() if k != "dilation"}
                assert_close(F.avg_pool2d(x, **avg), TF.avg_pool2d(t(x), **avg).numpy())


def test_values_equal_to_valid_ones_still_fail_their_checks(rng):
    """True == 1 and 2.0 == 2 in Python, so they must not hit the index entry of 1 or 2."""
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 2, 1, 1)).astype(np.float32)
    F.max_pool2d(x, 2, stride=1, threads=1)
    F.max_pool2d(x, (2, 2))
    F.conv2d(x, w, stride=1, threads=1)
    for _ in range(2):   # a failed call leaves no entry either
        for bad in (True, 2.0, (2, 2.0), [2, 2.5], np.float32(2)):
            with pytest.raises(convgen.ShapeError, match="kernel_size"):
                F.max_pool2d(x, bad, stride=1, threads=1)
        with pytest.raises(convgen.ShapeError, match="stride"):
            F.max_pool2d(x, 2, stride=True, threads=1)
        with pytest.raises(convgen.ShapeError, match="stride"):
            F.conv2d(x, w, stride=1.0, threads=1)
        for bad in (True, 1.0, 0):
            with pytest.raises(ValueError, match="threads"):
                F.max_pool2d(x, 2, stride=1, threads=bad)
        with pytest.raises(ValueError, match="rank"):
            F.max_pool2d(x[0], 2, stride=1, threads=1)


def test_numpy_integers_take_the_full_path_and_agree(rng):
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    expected = TF.max_pool2d(t(x), 3, 2).numpy()
    for kernel in (3, np.int64(3), (np.int32(3), 3)):
        assert_close(F.max_pool2d(x, kernel, np.int64(2)), expected)


def test_a_hit_with_another_layout_is_converted(rng):
    x = rng.standard_normal((1, 3, 12, 12)).astype(np.float32)
    F.max_pool2d(x, 2)
    for view in (np.asfortranarray(x), x[:, :, ::-1, :], x.astype(">f4"), x.tolist(), torch.from_numpy(x)):
        assert_close(F.max_pool2d(view, 2), TF.max_pool2d(t(np.asarray(view, np.float32)), 2).numpy())


def test_conv_bias_weights_and_norms_are_told_apart(rng):
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    for _ in range(2):
        w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
        b = rng.standard_normal(6).astype(np.float32)
        assert_close(F.conv2d(x, w), TF.conv2d(t(x), t(w)).numpy())
        assert_close(F.conv2d(x, w, b), TF.conv2d(t(x), t(w), t(b)).numpy())
        assert_close(F.conv2d(x, w, b, padding="same"), TF.conv2d(t(x), t(w), t(b), padding="same").numpy())
        assert_close(F.conv2d(x, w[:, :2], groups=2), TF.conv2d(t(x), t(w[:, :2]), groups=2).numpy())
        assert_close(F.conv2d(x, w[:, :2], groups=2.0), TF.conv2d(t(x), t(w[:, :2]), groups=2).numpy())
        wt = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
        assert_close(F.conv_transpose2d(x, wt, stride=2), TF.conv_transpose2d(t(x), t(wt), stride=2).numpy())
        assert_close(F.conv_transpose2d(x, wt, stride=2, output_padding=1),
                     TF.conv_transpose2d(t(x), t(wt), stride=2, output_padding=1).numpy())
        for norm in (2, 2.0, 3, 1.5):
            xp = np.abs(x) + 0.1
            assert_close(F.lp_pool2d(xp, norm, 2), TF.lp_pool2d(t(xp), norm, 2).numpy())


def test_threads_none_follows_omp_num_threads_between_calls(monkeypatch, rng):
    """What threads=None means is part of the index key: each value of OMP_NUM_THREADS set between calls
    runs a kernel built for that many threads, and setting a value back runs its first kernel again."""
    x = rng.standard_normal((1, 3, 11, 11)).astype(np.float32)
    for value in ("1", "2", "1"):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert_close(F.max_pool2d(x, 3, 2), TF.max_pool2d(t(x), 3, 2).numpy())
        key = F._signature(("max", 2, False, True, False, "c"), (3, 2, 0, 1, None, None), None, x)
        attrs = convgen.ops.PoolAttrs("max", (3, 3), (2, 2), ((0, 0), (0, 0)), (1, 1), False, True, None, False)
        model = F._kernels[("pool", attrs, (x.shape,), "c", int(value))]
        assert F._signatures[key] is F._runner(model) and model.signature["threads"] == int(value)

"""The separable pool path (vertical taps reduced over the row's span into a buffer, then the
horizontal taps): max with NaN and infinities, average with every divisor rule, 2-D and 3-D, dilation,
ceil_mode; and the fallback to the per-pixel path (indices, 1-D).  Against torch in float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convgen
from convgen import nn

from conftest import assert_close, t64


def _pool_kernel(model):
    (kernel,) = [k for k in model._lowered.kernels if k.op == "pool"]
    return kernel


POOLS = [
    # (DSL layer, torch function, input shape)
    (nn.MaxPool2d(3, 2, 1), lambda t: TF.max_pool2d(t, 3, 2, 1), (1, 3, 13, 17)),
    (nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True), lambda t: TF.max_pool2d(t, 2, 2, 0, 2, True), (2, 2, 11, 9)),
    (nn.MaxPool3d(2, 2), lambda t: TF.max_pool3d(t, 2, 2), (1, 4, 5, 7, 9)),
    (nn.AvgPool2d(3, 1, 1), lambda t: TF.avg_pool2d(t, 3, 1, 1), (1, 5, 8, 19)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     lambda t: TF.avg_pool2d(t, 3, 2, 1, True, False), (1, 2, 10, 13)),
    (nn.AvgPool2d(2, divisor_override=3), lambda t: TF.avg_pool2d(t, 2, divisor_override=3), (1, 2, 6, 7)),
    (nn.AvgPool3d(3, 2, 1), lambda t: TF.avg_pool3d(t, 3, 2, 1), (1, 2, 5, 6, 7)),
    (nn.MaxPool3d(3, 2, 1, dilation=2), lambda t: TF.max_pool3d(t, 3, 2, 1, 2), (1, 2, 6, 7, 9)),
    # rows wider than a column block's share: blocks of 2 rows, the last block short
    (nn.AvgPool2d(3, 1, 1, count_include_pad=False), lambda t: TF.avg_pool2d(t, 3, 1, 1, False, False), (1, 2, 7, 700)),
    (nn.MaxPool2d(3, 2, 1, ceil_mode=True), lambda t: TF.max_pool2d(t, 3, 2, 1, 1, True), (1, 2, 9, 801)),
]


@pytest.mark.parametrize("layer, torch_fn, shape", POOLS, ids=[str(p[2]) + repr(p[0]) for p in POOLS])
def test_separable_pools_match_torch(backend, layer, torch_fn, shape):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    model = convgen.compile(nn.Sequential(layer).to_graph(shape), backend=backend, threads=2)
    assert _pool_kernel(model).params["SEPARABLE"]
    assert_close(model(x), torch_fn(t64(x)).numpy())


@pytest.mark.parametrize("ndim", [2, 3])
def test_separable_max_pool_propagates_nan_and_inf(backend, ndim):
    shape = (1, 2) + (7,) * ndim
    x = np.random.default_rng(ndim).standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[[3, 40, 77, flat.size - 1]] = [np.nan, np.inf, -np.inf, np.nan]
    x[0, 1] = -np.inf  # a plane of -inf
    layer = nn.MaxPool2d(3, 2, 1) if ndim == 2 else nn.MaxPool3d(3, 2, 1)
    model = convgen.compile(nn.Sequential(layer).to_graph(shape), backend=backend)
    assert _pool_kernel(model).params["SEPARABLE"]
    expected = getattr(TF, f"max_pool{ndim}d")(torch.from_numpy(x), 3, 2, 1).numpy()
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(model(x), expected)  # NaNs compare equal here


@pytest.mark.parametrize("layer, torch_fn, shape", [
    (nn.MaxPool1d(3, 2, 1), lambda t: TF.max_pool1d(t, 3, 2, 1), (1, 2, 31)),
    (nn.MaxPool1d(2, 1), lambda t: TF.max_pool1d(t, 2, 1), (2, 3, 40)),
    (nn.MaxPool2d((1, 3), 1, (0, 1)), lambda t: TF.max_pool2d(t, (1, 3), 1, (0, 1)), (1, 2, 4, 33)),
])
def test_per_pixel_max_pool_propagates_nan_and_inf(backend, layer, torch_fn, shape):
    """The NaN flag of the per-pixel path: a NaN wins at every tap of a window, first, middle or last."""
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[[0, 5, 6, 19, 40, flat.size - 1]] = [np.nan, np.nan, np.inf, -np.inf, np.nan, np.nan]
    model = convgen.compile(nn.Sequential(layer).to_graph(shape), backend=backend)
    assert not _pool_kernel(model).params["SEPARABLE"]
    expected = torch_fn(torch.from_numpy(x)).numpy()
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(model(x), expected)  # NaNs compare equal here


@pytest.mark.parametrize("layer, shape", [(nn.MaxPool1d(3, 2, 1), (1, 2, 30)),
                                          (nn.MaxPool2d(3, 2, 1, return_indices=True), (1, 2, 9, 9))])
def test_pools_without_vertical_taps_or_with_indices_take_the_per_pixel_path(backend, layer, shape):
    model = convgen.compile(nn.Sequential(layer).to_graph(shape), backend=backend)
    assert not _pool_kernel(model).params["SEPARABLE"]


def test_separable_pool_row_blocks_cover_every_row(backend):
    """Column blocks of several rows, the last one short (OH = 7 rows in blocks of 2)."""
    shape = (1, 3, 7, 700)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    model = convgen.compile(nn.Sequential(nn.MaxPool2d((3, 2), 1, (1, 0))).to_graph(shape), backend=backend)
    params = _pool_kernel(model).params
    assert params["SEPARABLE"] and 1 < params["ROWS"] < params["OH"] and params["OH"] % params["ROWS"]
    assert_close(model(x), TF.max_pool2d(t64(x), (3, 2), 1, (1, 0)).numpy())

"""Winograd convolution F(m x m, 3 x 3): the transform matrices and a numpy reference.

The math only; which m a layer runs and how its tiles are blocked is the schedule's (schedule.py).

A 1-D correlation y[i] = sum_k g[k] d[i + k] (i < m, k < r) of an input tile of alpha = m + r - 1
values computes as y = AT @ ((G @ g) * (BT @ d)).  The Toom-Cook construction from alpha - 1 finite
points a_j plus the point at infinity: with W[s][j] = a_j**s (W[s][inf] = [s == alpha - 1]),
AT[i][j] = a_j**i, G[j][k] = a_j**k (at infinity: AT[i][inf] = [i == m - 1], G[inf][k] = [k == r - 1])
and BT = W^-1 satisfy sum_j AT[i][j] G[j][k] BT[j][l] = [l == i + k], which
is the correlation.  Each row j of BT is then scaled to small integers and G's row j divided by the
same factor (free: the weights transform at compile time), so the run-time input transform is exact
for the small-integer points.  In 2-D: Y = AT [(G g G^T) * (BT d BT^T)] AT^T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

KERNEL = 3

# Interpolation points per output tile size: the usual ones (Lavin & Gray 2016), small and of both
# signs, which keep the transforms' magnitudes (and the float32 error) lowest.
POINTS: dict[int, tuple[Fraction, ...]] = {
    2: (Fraction(0), Fraction(1), Fraction(-1)),
    4: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2)),
    6: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2)),
}


@dataclass(frozen=True)
class Transforms:
    m: int               # output tile edge
    alpha: int           # input tile edge: m + 2
    AT: np.ndarray       # (m, alpha) output transform
    G: np.ndarray        # (alpha, 3) weight transform
    BT: np.ndarray       # (alpha, alpha) input transform


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact Gauss-Jordan inverse."""
    n = len(matrix)
    a = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if a[r][col] != 0)
        a[col], a[pivot] = a[pivot], a[col]
        scale = a[col][col]
        a[col] = [v / scale for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0:
                factor = a[r][col]
                a[r] = [v - factor * p for v, p in zip(a[r], a[col])]
    return [row[n:] for row in a]


def _integer_scale(row: list[Fraction]) -> Fraction:
    """The factor that makes `row` a primitive integer vector (its first nonzero entry positive)."""
    denominators = math.lcm(*(v.denominator for v in row))
    numerators = math.gcd(*(int(v * denominators) for v in row))
    first = next(v for v in row if v != 0)
    return Fraction(denominators, numerators) * (1 if first > 0 else -1)


@lru_cache(maxsize=None)
def transforms(m: int) -> Transforms:
    """AT, G, BT of F(m x m, 3 x 3) in float64 (exact rationals rounded once)."""
    if m not in POINTS:
        raise ValueError(f"Winograd F({m}, 3) is not supported: m must be one of {sorted(POINTS)}")
    points, alpha = POINTS[m], m + KERNEL - 1
    W = [[p ** s for p in points] + [Fraction(int(s == alpha - 1))] for s in range(alpha)]
    BT = _inverse(W)
    scales = [_integer_scale(row) for row in BT]
    BT = [[v * f for v in row] for row, f in zip(BT, scales)]
    # the point at infinity takes the top coefficients: AT's last column e_(m-1), G's last row e_(r-1)
    AT = [[p ** i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    G = [[p ** k for k in range(KERNEL)] for p in points] + [[Fraction(int(k == KERNEL - 1)) for k in range(KERNEL)]]
    G = [[v / f for v in row] for row, f in zip(G, scales)]
    as_array = lambda rows: np.array([[float(v) for v in row] for row in rows])  # noqa: E731
    return Transforms(m, alpha, as_array(AT), as_array(G), as_array(BT))


def transform_weights(w: np.ndarray, m: int) -> np.ndarray:
    """(OC, CG, 3, 3) -> (alpha, alpha, OC, CG): G g G^T per filter, in float64."""
    t = transforms(m)
    return np.einsum("ak,ockl,bl->aboc", t.G, w.astype(np.float64), t.G)


def conv2d_reference(x: np.ndarray, w: np.ndarray, m: int, pads=((1, 1), (1, 1)), groups: int = 1,
                     dtype=np.float64) -> np.ndarray:
    """3x3 stride-1 convolution of (N, C, H, W) by (OC, C/groups, 3, 3) the Winograd way, every step in
    `dtype` (float32 to see the error the kernels make, float64 to check the transforms)."""
    t = transforms(m)
    n, c, h, wd = x.shape
    oc = w.shape[0]
    oh, ow = h + sum(pads[0]) - 2, wd + sum(pads[1]) - 2
    th, tw = -(-oh // m), -(-ow // m)
    xp = np.zeros((n, c, th * m + 2, tw * m + 2), dtype)
    rows, cols = min(h, th * m + 2 - pads[0][0]), min(wd, tw * m + 2 - pads[1][0])
    xp[:, :, pads[0][0]:pads[0][0] + rows, pads[1][0]:pads[1][0] + cols] = x[:, :, :rows, :cols]
    # tiles (N, C, TH, TW, alpha, alpha), overlapping by 2
    idx_h = (np.arange(th) * m)[:, None] + np.arange(t.alpha)
    idx_w = (np.arange(tw) * m)[:, None] + np.arange(t.alpha)
    tiles = xp[:, :, idx_h[:, :, None, None], idx_w[None, None, :, :]].transpose(0, 1, 2, 4, 3, 5)
    BT, AT = t.BT.astype(dtype), t.AT.astype(dtype)
    V = np.einsum("ai,nchwij,bj->abnchw", BT, tiles, BT).astype(dtype)
    U = transform_weights(w, m).astype(dtype)
    cg, ocg = c // groups, oc // groups
    Vg = V.reshape(t.alpha, t.alpha, n, groups, cg, th, tw)
    Ug = U.reshape(t.alpha, t.alpha, groups, ocg, cg)
    M = np.einsum("abgoc,abngchw->abngohw", Ug, Vg).astype(dtype).reshape(t.alpha, t.alpha, n, oc, th, tw)
    Y = np.einsum("ia,abnohw,jb->nohiwj", AT, M, AT).astype(dtype)
    return Y.reshape(n, oc, th * m, tw * m)[:, :, :oh, :ow]

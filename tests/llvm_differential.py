"""Child process of tests/test_llvm_differential.py: runs drawn cases of every LLVM kernel family against
torch.  `python llvm_differential.py CASES.json PROGRESS.jsonl`: each case's parameters are written (and
flushed to disk) before it runs, so when this process dies on a signal the parent names the case that
killed it; each result follows as {"ok": ...} or {"mismatch": ...} (an exception is one: the
parent draws only shapes torch accepts)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as T

import convgen
import convgen.functional as F
from convgen import nn

ACTIVATIONS = {  # convgen layer, torch function
    "relu": (nn.ReLU, torch.relu), "relu6": (nn.ReLU6, T.relu6), "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh), "leaky_relu": (lambda: nn.LeakyReLU(0.2), lambda x: T.leaky_relu(x, 0.2)),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 0.75), lambda x: T.hardtanh(x, -0.5, 0.75)),
    "hardsigmoid": (nn.Hardsigmoid, T.hardsigmoid), "hardswish": (nn.Hardswish, T.hardswish),
    "silu": (nn.SiLU, T.silu), "gelu": (nn.GELU, T.gelu), "elu": (nn.ELU, T.elu), "softsign": (nn.Softsign, T.softsign),
    "softplus": (nn.Softplus, T.softplus), "mish": (nn.Mish, T.mish),
}
PADS = {"reflect": "Reflection", "replicate": "Replication", "circular": "Circular", "constant": "Zero"}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _graph_run(layers: list, x: np.ndarray, threads: int) -> np.ndarray:
    graph = nn.Sequential(*layers).to_graph(x.shape, name="case")
    return convgen.compile(graph, backend="llvm", threads=threads)(x)


def _conv(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    nd = len(c["kernel"])
    x = rng.standard_normal(c["x"]).astype(np.float32)
    w = rng.standard_normal([c["oc"], c["x"][1] // c["groups"], *c["kernel"]]).astype(np.float32)
    b = rng.standard_normal(c["oc"]).astype(np.float32) if c["bias"] else None
    flat = [p for pair in reversed(c["pads"]) for p in pair]  # torch's F.pad order: last axis first
    if c["pad_mode"] == "constant":
        padding = tuple(tuple(p) for p in c["pads"])
        got = getattr(F, f"conv{nd}d")(x, w, b, c["stride"], padding, c["dilation"], c["groups"], backend="llvm",
                                       threads=c["threads"])
    else:
        conv = getattr(nn, f"Conv{nd}d")(c["x"][1], c["oc"], c["kernel"], stride=c["stride"], dilation=c["dilation"],
                                         groups=c["groups"], bias=c["bias"])
        conv.param("weight")[...] = w
        if b is not None:
            conv.param("bias")[...] = b
        pad = getattr(nn, f"{PADS[c['pad_mode']]}Pad{nd}d")(tuple(flat))
        got = _graph_run([pad, conv], x, c["threads"])
    xt = T.pad(_t(x), flat, mode=c["pad_mode"])
    want = getattr(T, f"conv{nd}d")(xt, _t(w), None if b is None else _t(b), c["stride"], 0, c["dilation"], c["groups"])
    return got, want.numpy()


def _conv_transpose(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    nd = len(c["kernel"])
    x = rng.standard_normal(c["x"]).astype(np.float32)
    w = rng.standard_normal([c["x"][1], c["ocg"], *c["kernel"]]).astype(np.float32)
    b = rng.standard_normal(c["ocg"] * c["groups"]).astype(np.float32) if c["bias"] else None
    args = (c["stride"], c["padding"], c["output_padding"], c["groups"], c["dilation"])
    got = getattr(F, f"conv_transpose{nd}d")(x, w, b, *args, backend="llvm", threads=c["threads"])
    want = getattr(T, f"conv_transpose{nd}d")(_t(x), _t(w), None if b is None else _t(b), *args)
    return got, want.numpy()


def _pool(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    nd = len(c["kernel"])
    x = rng.standard_normal(c["x"]).astype(np.float32)
    if c["kind"] == "max":
        got = getattr(F, f"max_pool{nd}d")(x, c["kernel"], c["stride"], c["padding"], c["dilation"], c["ceil_mode"],
                                           backend="llvm", threads=c["threads"])
        want = getattr(T, f"max_pool{nd}d")(_t(x), c["kernel"], c["stride"], c["padding"], c["dilation"], c["ceil_mode"])
    elif c["kind"] == "avg":
        got = getattr(F, f"avg_pool{nd}d")(x, c["kernel"], c["stride"], c["padding"], c["ceil_mode"],
                                           c["count_include_pad"], backend="llvm", threads=c["threads"])
        want = getattr(T, f"avg_pool{nd}d")(_t(x), c["kernel"], c["stride"], c["padding"], c["ceil_mode"],
                                            c["count_include_pad"])
    else:
        x = np.abs(x) + 0.1  # torch's lp_pool takes sign(sum) * relu(|sum|)^(1/p): positive inputs agree exactly
        got = getattr(F, f"lp_pool{nd}d")(x, c["norm"], c["kernel"], c["stride"], c["ceil_mode"], backend="llvm",
                                          threads=c["threads"])
        kernel, stride = (c["kernel"][0], c["stride"][0]) if nd == 1 else (tuple(c["kernel"]), tuple(c["stride"]))
        want = getattr(T, f"lp_pool{nd}d")(_t(x), c["norm"], kernel, stride, c["ceil_mode"])  # 1-d: ints only
    return got, want.numpy()


def _global(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(c["x"]).astype(np.float32)
    nd = len(c["x"]) - 2
    layer = {"max": nn.GlobalMaxPool(), "avg": nn.GlobalAvgPool(),
             "adaptive": getattr(nn, f"AdaptiveAvgPool{nd}d")(1)}[c["kind"]]
    dims = tuple(range(2, len(c["x"])))
    want = _t(x).amax(dims, keepdim=True) if c["kind"] == "max" else _t(x).mean(dims, keepdim=True)
    return _graph_run([layer], x, c["threads"]), want.numpy()


def _activation(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    x = (rng.standard_normal(c["x"]) * 4).astype(np.float32)
    layer, fn = ACTIVATIONS[c["kind"]]
    return _graph_run([layer()], x, c["threads"]), fn(_t(x)).numpy()


def _dense(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal([c["rows"], c["in"]]).astype(np.float32)
    fc = nn.Linear(c["in"], c["out"], bias=c["bias"])
    w = fc.param("weight")
    b = fc.param("bias") if c["bias"] else None
    return _graph_run([fc], x, c["threads"]), T.linear(_t(x), _t(w), None if b is None else _t(b)).numpy()


def _abort(c: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Dies as a kernel that crashes would: the test of the parent's report."""
    os.abort()


FAMILIES = {"abort": _abort, "conv": _conv, "conv_transpose": _conv_transpose, "pool": _pool, "global": _global,
            "activation": _activation, "dense": _dense}


def run_case(c: dict) -> str | None:
    """None if convgen's LLVM kernel agrees with torch, else what differs."""
    rng = np.random.default_rng(c["seed"])
    got, want = FAMILIES[c["family"]](c, rng)
    if got.shape != want.shape:
        return f"shape {got.shape} != torch's {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    tolerance = 1e-4 * scale * (1 + c.get("taps", 1) ** 0.5 / 8)
    if not np.array_equal(np.isnan(got), np.isnan(want)) or err > tolerance:
        return f"max |error| {err:.3g} > {tolerance:.3g}"
    return None


def main(cases_path: str, progress_path: str) -> None:
    cases = json.loads(open(cases_path).read())
    with open(progress_path, "a") as progress:
        def record(entry: dict) -> None:
            progress.write(json.dumps(entry) + "\n")
            progress.flush()
            os.fsync(progress.fileno())
        for case in cases:
            record({"case": case})
            try:
                problem = run_case(case)
            except Exception as e:  # noqa: BLE001 (any other exception is a finding, reported by the parent)
                problem = f"{type(e).__name__}: {e}"
            record({"ok": True} if problem is None else {"mismatch": problem})


if __name__ == "__main__":
    main(*sys.argv[1:3])

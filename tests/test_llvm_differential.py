"""Drawn cases of every LLVM kernel family (conv 1-3d with groups, dilation, stride and every padding
mode; conv transpose; max, avg and lp pools with ceil_mode and count_include_pad; global and adaptive
pools; activations; dense) against torch, run in child processes: a crash of the generated code or of
LLVM is a failed test naming the case, not a dead test run.  CONVGEN_LLVM_CASES sets the number of
cases (default 48, about 30 s on 2 cores); a long run by hand: CONVGEN_LLVM_CASES=3000."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
CASES = int(os.environ.get("CONVGEN_LLVM_CASES", "48"))
BATCH = 200  # cases per child process


def _spatial(draw, nd: int, low: int, high: int) -> list[int]:
    return [draw(st.integers(low, high)) for _ in range(nd)]


@st.composite
def conv_cases(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel, dilation, stride = _spatial(draw, nd, 1, 4), _spatial(draw, nd, 1, 2), _spatial(draw, nd, 1, 3)
    mode = draw(st.sampled_from(["constant", "constant", "reflect", "replicate", "circular"]))
    size = {1: 30, 2: 14, 3: 7}[nd]
    pads, shape = [], []
    for k, d in zip(kernel, dilation):
        pair = [draw(st.integers(0, (k - 1) * d)), draw(st.integers(0, (k - 1) * d))]
        low = max(1, (k - 1) * d + 1 - sum(pair))  # the dilated kernel fits the padded input
        n = draw(st.integers(low, max(low, size)))
        if mode in ("reflect", "circular"):  # torch: reflect pads < size, circular pads <= size
            n = max(n, max(pair) + 1)
        pads.append(pair)
        shape.append(n)
    return dict(family="conv", x=[draw(st.integers(1, 2)), groups * draw(st.integers(1, 4)), *shape],
                oc=groups * draw(st.sampled_from([1, 2, 3, 5, 8, 13, 17])), groups=groups, kernel=kernel,
                dilation=dilation, stride=stride, pads=pads, pad_mode=mode, bias=draw(st.booleans()),
                taps=int(sum(kernel)) * 4)


@st.composite
def conv_transpose_cases(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    groups = draw(st.sampled_from([1, 1, 2]))
    kernel, dilation, stride = _spatial(draw, nd, 1, 4), _spatial(draw, nd, 1, 2), _spatial(draw, nd, 1, 3)
    padding = [draw(st.integers(0, (k - 1) * d)) for k, d in zip(kernel, dilation)]
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    size = {1: 12, 2: 7, 3: 4}[nd]
    shape = [draw(st.integers(1, size)) for _ in range(nd)]
    shape = [max(n, -(-(2 * p - op - d * (k - 1)) // s) + 1) for n, p, op, d, k, s
             in zip(shape, padding, output_padding, dilation, kernel, stride)]  # output >= 1
    return dict(family="conv_transpose", x=[draw(st.integers(1, 2)), groups * draw(st.integers(1, 3)), *shape],
                ocg=draw(st.integers(1, 5)), groups=groups, kernel=kernel, stride=stride, padding=padding,
                output_padding=output_padding, dilation=dilation, bias=draw(st.booleans()), taps=int(sum(kernel)) * 3)


@st.composite
def pool_cases(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    kind = draw(st.sampled_from(["max", "max", "avg", "avg", "lp"]))
    kernel, stride = _spatial(draw, nd, 1, 5), _spatial(draw, nd, 1, 3)
    dilation = _spatial(draw, nd, 1, 2) if kind == "max" else [1] * nd
    padding = [draw(st.integers(0, k // 2)) for k in kernel] if kind != "lp" else [0] * nd
    size = {1: 25, 2: 12, 3: 7}[nd]
    lows = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(kernel, dilation, padding)]
    if kind == "avg" and nd == 3:
        # torch's avg_pool3d refuses an input smaller than the kernel even where the padding makes it fit.
        lows = [max(low, k) for low, k in zip(lows, kernel)]
    shape = [draw(st.integers(low, max(low, size))) for low in lows]
    return dict(family="pool", kind=kind, x=[draw(st.integers(1, 2)), draw(st.integers(1, 5)), *shape],
                kernel=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=draw(st.booleans()),
                count_include_pad=draw(st.booleans()), norm=draw(st.sampled_from([1, 2, 3])), taps=int(sum(kernel)))


@st.composite
def other_cases(draw):
    family = draw(st.sampled_from(["global", "activation", "dense"]))
    if family == "dense":
        return dict(family="dense", rows=draw(st.integers(1, 5)), **{"in": draw(st.integers(1, 70))},
                    out=draw(st.integers(1, 70)), bias=draw(st.booleans()), taps=70)
    nd = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 2)), draw(st.integers(1, 6)), *_spatial(draw, nd, 1, {1: 40, 2: 13, 3: 6}[nd])]
    kinds = ["max", "avg", "adaptive"] if family == "global" else ["relu", "relu6", "sigmoid", "tanh", "leaky_relu",
        "hardtanh", "hardsigmoid", "hardswish", "silu", "gelu", "elu", "softsign", "softplus", "mish"]
    return dict(family=family, kind=draw(st.sampled_from(kinds)), x=shape, taps=40 * 13)


@st.composite
def cases(draw):
    case = draw(st.one_of(conv_cases(), conv_cases(), conv_transpose_cases(), pool_cases(), pool_cases(),
                          other_cases()))
    return {**case, "threads": draw(st.sampled_from([1, 2])), "seed": draw(st.integers(0, 2**31))}


def _run_batch(batch: list[dict], tmp: Path, index: int) -> tuple[list[str], int]:
    """Run the batch in a child; the problems found (the case named with each) and how many ran."""
    cases_path, progress_path = tmp / f"cases{index}.json", tmp / f"progress{index}.jsonl"
    cases_path.write_text(json.dumps(batch))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    child = subprocess.run([sys.executable, str(HERE / "llvm_differential.py"), str(cases_path), str(progress_path)],
                           env=env, capture_output=True, text=True, timeout=3600)
    entries = [json.loads(line) for line in progress_path.read_text().splitlines()] if progress_path.exists() else []
    problems, case, ran = [], None, 0
    for entry in entries:
        if "case" in entry:
            case = entry["case"]
        else:
            ran += 1
            if "mismatch" in entry:
                problems.append(f"{entry['mismatch']}: {json.dumps(case)}")
    if child.returncode != 0:
        death = f"signal {signal.Signals(-child.returncode).name}" if child.returncode < 0 else f"exit {child.returncode}"
        last = json.dumps(case) if entries and "case" in entries[-1] else "no case (before the first)"
        problems.append(f"child died ({death}) running {last}\n{child.stderr[-3000:]}")
    return problems, ran


def _drawn(count: int) -> list[dict]:
    """`count` cases drawn by hypothesis (collected, then run in children in batches: one compile per case
    in a process of its own would cost more than the case)."""
    drawn: list[dict] = []

    @settings(max_examples=count, deadline=None, phases=[Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def collect(case: dict) -> None:
        drawn.append(case)

    collect()
    return drawn


def test_llvm_kernels_agree_with_torch_in_a_child_process(tmp_path_factory):
    drawn = _drawn(CASES)
    tmp = tmp_path_factory.mktemp("llvm_differential")
    problems, ran = [], 0
    for index in range(0, len(drawn), BATCH):
        found, count = _run_batch(drawn[index:index + BATCH], tmp, index // BATCH)
        problems += found
        ran += count
    assert not problems, f"{len(problems)} of {len(drawn)} cases failed:\n" + "\n".join(problems[:20])
    assert ran == len(drawn)


def test_a_child_killed_by_a_signal_is_reported_with_the_case_it_ran(tmp_path):
    batch = [{"family": "activation", "kind": "relu", "x": [1, 2, 3], "threads": 1, "seed": 1, "taps": 1},
             {"family": "abort", "marker": 12345, "seed": 0}]
    problems, ran = _run_batch(batch, tmp_path, 0)
    assert ran == 1 and len(problems) == 1
    assert "child died (signal SIGABRT)" in problems[0] and '"marker": 12345' in problems[0]

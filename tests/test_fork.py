"""Fork safety (issue 16): a model that has run on an OpenMP team, then called in an os.fork()ed child,
a grandchild, a thread the child starts, multiprocessing.Pool's fork workers and a pre-fork server's
workers, and in the parent afterwards; convgen.functional in a child.  Both backends, and the C
backend once more with torch imported first (its own libgomp then serves the models).  Without
convgen's at-fork handler (convgen.threads.one_thread_after_fork) each child case hangs in libgomp.

All cases of a backend run in one child process (tests/fork_cases.py), each with its own deadline, so
a hang is a failed test naming the case; the outputs are checked against torch."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fork_cases import CASES, SHAPE, network

HERE = Path(__file__).resolve().parent
# (backend, import torch first: its wheel's own libgomp.so.1 then serves the models)
RUNS = {"c": ("c", False), "llvm": ("llvm", False), "c-after-torch": ("c", True)}


def _data(path: Path) -> None:
    """The layers' state, four inputs, and torch's outputs for them and for the functional calls."""
    rng = np.random.default_rng(16)
    state = {key: rng.standard_normal(value.shape).astype(np.float32) * 0.2
             for key, value in network().state_dict().items()}
    reference = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    data = {f"state.{key}": value for key, value in state.items()}
    with torch.no_grad():
        for i in range(4):
            data[f"x{i}"] = x = rng.standard_normal(SHAPE).astype(np.float32)
            data[f"y{i}"] = reference(torch.from_numpy(x)).numpy()
        fx = rng.standard_normal((1, 16, 40, 40)).astype(np.float32)
        fw = rng.standard_normal((24, 16, 3, 3)).astype(np.float32) * 0.2
        fb = rng.standard_normal(24).astype(np.float32)
        conv = torch.nn.functional.conv2d(torch.from_numpy(fx), torch.from_numpy(fw), torch.from_numpy(fb), padding=1)
        small = torch.nn.functional.conv2d(torch.from_numpy(fx[:, :, :20, :20]), torch.from_numpy(fw),
                                           torch.from_numpy(fb), padding=1)
        data.update(fx=fx, fw=fw, fb=fb, fconv=conv.numpy(), fsmall=small.numpy(),
                    fpool=torch.nn.functional.max_pool2d(conv, 3, stride=2).numpy())
    np.savez(path, **data)


@functools.lru_cache(maxsize=None)
def _verdicts(run: str) -> tuple[dict[str, str], str]:
    """Each case's verdict from one run of fork_cases.py, and its stderr.  A case the run never
    finished (the whole process hung or died in it) is a hang or a death named by its start line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        _data(path)
        env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
        try:
            backend, torch_first = RUNS[run]
            argv = [sys.executable, str(HERE / "fork_cases.py"), backend, str(path)] + ["torch"] * torch_first
            child = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            stdout, stderr, ended = child.stdout, child.stderr, f"exit {child.returncode}"
        except subprocess.TimeoutExpired as expired:
            stdout, stderr, ended = (expired.stdout or b"").decode(), (expired.stderr or b"").decode(), "killed at 600 s"
    verdicts: dict[str, str] = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "start":
            verdicts[rest] = f"never finished: the case's process {ended}"
        elif word in CASES:
            verdicts[word] = rest
    return verdicts, stderr


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("run", RUNS)
def test_forked(run: str, case: str) -> None:
    verdicts, stderr = _verdicts(run)
    verdict = verdicts.get(case, "not reached: an earlier case stopped the run")
    assert verdict == "ok", f"{run}, case {case!r}: {verdict}\n{stderr[-3000:]}"

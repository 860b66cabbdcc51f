"""The child program of tests/test_fork.py: models that have run on an OpenMP team in this process,
called again in forked children.  Run as `python fork_cases.py <backend> <data.npz> [torch]` (torch:
import torch first, whose wheel's libgomp.so.1 the models then share); prints one line
per case, `<case> ok` or `<case> FAIL <why>`, each before the next case starts, so the test names a
case that hangs even when this whole process has to be killed.

data.npz holds the layers' state, the inputs and torch's outputs for them (computed by the test, so
without `torch` this process never loads torch and runs on the system's libgomp).  Every child has DEADLINE seconds;
one that does not finish is killed and its case fails as a hang."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import sys
import threading
import time

import numpy as np

import convgen
import convgen.functional as F
from convgen import nn

DEADLINE = 60.0
THREADS = 2
SHAPE = (1, 16, 32, 32)


def network() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def close(actual, expected) -> bool:
    return actual.shape == expected.shape and np.allclose(actual, expected, rtol=1e-4, atol=1e-4)


def wait(pid: int, deadline: float = DEADLINE) -> str:
    """'ok' when the child exits 0, else what went wrong; a child past the deadline is killed."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return "ok" if code == 0 else f"exit {code}" if code > 0 else f"signal {-code}"
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return f"hang (killed after {deadline:.0f} s)"


def in_child(check) -> str:
    """Run check() in a forked child; its exit status (0: check() was true) is the verdict."""
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if check() else 1
        except BaseException:   # noqa: BLE001 (any failure is the child's verdict)
            code = 2
        os._exit(code)
    return wait(pid)


class Cases:
    def __init__(self, backend: str, data) -> None:
        self.data = data
        self.inputs = [data[f"x{i}"] for i in range(4)]
        self.expected = [data[f"y{i}"] for i in range(4)]
        net = network()
        net.load_state_dict({key[len("state."):]: data[key] for key in data.files if key.startswith("state.")})
        self.model = convgen.compile(net.to_graph(SHAPE, name="forked"), backend=backend, threads=THREADS)
        self.backend = backend

    def all_right(self, model=None) -> bool:
        model = model or self.model
        return all(close(model(x), y) for x, y in zip(self.inputs, self.expected))

    # -- the cases, in order ------------------------------------------------------------------

    def team(self) -> str:
        """The precondition: the model has an OpenMP region and its warm-up call ran it here."""
        source, marker = self.model.source, "omp parallel" if self.backend == "c" else "GOMP_parallel"
        if self.model.signature["threads"] != THREADS or marker not in source:
            return f"FAIL no parallel region ({marker!r}) in the model: the cases test nothing"
        return "ok" if self.all_right() else "FAIL wrong result before any fork"

    def child(self) -> str:
        """The child's calls, then the parent's again."""
        verdict = in_child(self.all_right)
        return verdict if verdict != "ok" or self.all_right() else "FAIL wrong result in the parent after its child"

    def grandchild(self) -> str:
        return in_child(lambda: self.all_right() and in_child(self.all_right) == "ok" and self.all_right())

    def child_thread(self) -> str:
        """A thread the child starts has no stale pool: its calls run the model's full team."""
        def check() -> bool:
            results = []
            worker = threading.Thread(target=lambda: results.append(self.all_right()))
            worker.start()
            worker.join()
            return results == [True] and self.all_right()
        return in_child(check)

    def pool(self) -> str:
        """multiprocessing.Pool with the fork start method, after the parent's warm-up: the workers
        call the model they inherited (a module-level function reads it, nothing is pickled)."""
        global _CASES
        _CASES = self
        context = multiprocessing.get_context("fork")
        with context.Pool(2) as workers:
            try:
                outputs = workers.map_async(_pool_task, range(len(self.inputs))).get(timeout=DEADLINE)
            except multiprocessing.TimeoutError:
                workers.terminate()
                return f"hang (the pool's map did not finish in {DEADLINE:.0f} s)"
        return "ok" if all(map(close, outputs, self.expected)) else "FAIL wrong result from a pool worker"

    def prefork(self) -> str:
        """A gunicorn-style pre-fork server: the parent loads and warms the model, forks workers, and
        each serves requests (an input index in, the output back) over its socket."""
        workers = []
        for _ in range(2):
            parent_end, worker_end = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                for end in [parent_end] + [other for _, other in workers]:
                    end.close()   # an earlier worker's socket held open here would never see its EOF
                code = 0
                try:
                    with worker_end.makefile("rwb") as stream:
                        for line in stream:
                            pickle.dump(self.model(self.inputs[int(line)]), stream)
                            stream.flush()
                except BaseException:   # noqa: BLE001
                    code = 2
                os._exit(code)
            worker_end.close()
            parent_end.settimeout(DEADLINE)
            workers.append((pid, parent_end))
        verdict = "ok"
        try:
            for request in range(8):
                pid, end = workers[request % len(workers)]
                with end.makefile("rwb") as stream:
                    stream.write(b"%d\n" % (request % 4))
                    stream.flush()
                    if not close(pickle.load(stream), self.expected[request % 4]):
                        verdict = f"FAIL worker {pid} answered request {request} wrong"
        except (socket.timeout, TimeoutError):
            verdict = f"hang (a worker did not answer in {DEADLINE:.0f} s)"
        finally:
            for _, end in workers:
                end.close()   # end of requests: the worker's loop ends
        for pid, _ in workers:
            status = wait(pid)
            if status != "ok" and verdict == "ok":
                verdict = f"FAIL worker {pid}: {status}"
        return verdict

    def functional(self) -> str:
        """convgen.functional in a child: kernels the parent ran on a team (from the in-process cache),
        one compiled in the child with threads=None and one with explicit threads."""
        x, w, b = self.data["fx"], self.data["fw"], self.data["fb"]
        conv, pool = self.data["fconv"], self.data["fpool"]
        kw = dict(backend=self.backend)
        if not close(F.conv2d(x, w, b, padding=1, threads=THREADS, **kw), conv) or not close(
                F.max_pool2d(conv, 3, stride=2, threads=THREADS, **kw), pool):
            return "FAIL wrong result before any fork"
        kernels = [m for m in F._kernels.values() if m.signature["threads"] == THREADS and
                   ("omp parallel" in m.source or "GOMP_parallel" in m.source)]
        if not kernels:
            return "FAIL no functional kernel has a parallel region: the case tests nothing"
        small = x[:, :, :20, :20]

        def check() -> bool:
            return (close(F.conv2d(x, w, b, padding=1, threads=THREADS, **kw), conv)
                    and close(F.max_pool2d(conv, 3, stride=2, threads=THREADS, **kw), pool)
                    and close(F.conv2d(small, w, b, padding=1, **kw), self.data["fsmall"])
                    and close(F.conv2d(small, w, b, padding=1, threads=THREADS, **kw), self.data["fsmall"]))
        return in_child(check)


_CASES: Cases | None = None   # what the pool's workers inherit


def _pool_task(index: int) -> np.ndarray:
    return _CASES.model(_CASES.inputs[index])


CASES = ("child", "grandchild", "child_thread", "pool", "prefork", "functional")


def main() -> None:
    backend, path = sys.argv[1], sys.argv[2]
    if sys.argv[3:] == ["torch"]:   # torch first: models then run on torch's own copy of libgomp
        import torch  # noqa: F401
    cases = Cases(backend, np.load(path))
    precondition = cases.team()
    if precondition != "ok":
        for name in CASES:
            print(f"{name} {precondition}", flush=True)
        return
    for name in CASES:
        print(f"start {name}", flush=True)
        try:
            verdict = getattr(cases, name)()
        except Exception as error:   # noqa: BLE001 (the verdict names it)
            verdict = f"FAIL {type(error).__name__}: {error}"
        print(f"{name} {verdict}", flush=True)


if __name__ == "__main__":
    main()

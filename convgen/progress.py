"""Progress bars on stderr for long jobs: compiling many layers, tuning.

A bar is drawn only when stderr is a terminal, never under quiet=True,
``progress.set_quiet(True)`` (the CLI's --quiet) or the environment variable
CONVGEN_QUIET=1, and only for jobs that outlast `delay` seconds, so scripts,
logs, pipes and quick compiles stay silent. Bars come from tqdm, a core
dependency (small, pure Python).

    >>> from convgen import progress
    >>> total = 0
    >>> for candidate in progress.track(range(3), "tuning conv1"):   # a bar only on a terminal
    ...     total += candidate
    >>> with progress.bar("compiling lenet5", total=2) as steps:
    ...     steps.update(1, stage="lower")
    ...     steps.update(1, stage="build")
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

DELAY = 0.5          # seconds a job runs before its bar appears
_quiet = False


def _stderr():
    return sys.stderr


def set_quiet(quiet: bool = True) -> None:
    """Silence (or allow again) every progress bar in this process."""
    global _quiet
    _quiet = bool(quiet)


def enabled(quiet: bool | None = None) -> bool:
    """Whether a bar would be drawn: not quiet (argument, set_quiet, CONVGEN_QUIET) and stderr a terminal."""
    if quiet or _quiet or os.environ.get("CONVGEN_QUIET", "") not in ("", "0"):
        return False
    stream = _stderr()
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


class _Silent:
    """The stand-in for a bar when none is drawn: same methods, no output."""

    def update(self, n: int = 1, stage: str | None = None) -> None:
        pass


class _Bar:
    def __init__(self, tqdm_bar) -> None:
        self._bar = tqdm_bar

    def update(self, n: int = 1, stage: str | None = None) -> None:
        """Advance by `n`; `stage` names what runs next (shown after the count)."""
        if stage is not None:
            self._bar.set_postfix_str(stage)  # redrawn now: stages change rarely
        self._bar.update(n)


def _tqdm(desc: str, total: int | None, unit: str, delay: float | None, iterable=None):
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit=unit, delay=DELAY if delay is None else delay, file=_stderr(),
                leave=False, dynamic_ncols=True)


@contextmanager
def bar(desc: str, total: int | None = None, *, unit: str = "step", quiet: bool | None = None,
        delay: float | None = None) -> Iterator[_Bar | _Silent]:
    """A bar advanced by hand: ``with bar("compiling", total=3) as b: ...; b.update(1, stage="build")``."""
    if not enabled(quiet):
        yield _Silent()
        return
    tqdm_bar = _tqdm(desc, total, unit, delay)
    try:
        yield _Bar(tqdm_bar)
    finally:
        tqdm_bar.close()


def track(iterable: Iterable[T], desc: str, total: int | None = None, *, unit: str = "it",
          quiet: bool | None = None, delay: float | None = None) -> Iterable[T]:
    """`iterable`, drawing a bar as it is consumed (the iterable itself when silent)."""
    if not enabled(quiet):
        return iterable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return _tqdm(desc, total, unit, delay, iterable)

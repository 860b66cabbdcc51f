"""Liveness-based planning of one workspace arena for intermediates and scratch."""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 64


def align(n: int, to: int = ALIGN) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Interval:
    key: str
    nbytes: int
    first: int  # index of the kernel that writes it
    last: int   # index of the last kernel that reads it


def plan_arena(intervals: list[Interval]) -> tuple[dict[str, int], int]:
    """First-fit offsets such that buffers whose lifetimes overlap never share bytes.

    Larger buffers are placed first (the usual greedy-by-size heuristic).  Returns the
    byte offset of each key and the arena size.
    """
    placed: list[tuple[int, int, Interval]] = []  # (offset, end, interval)
    offsets: dict[str, int] = {}
    for iv in sorted(intervals, key=lambda i: (-i.nbytes, i.first, i.key)):
        busy = sorted((o, e) for o, e, other in placed if other.first <= iv.last and iv.first <= other.last)
        offset = 0
        for start, end in busy:
            if offset + iv.nbytes <= start:
                break
            offset = max(offset, align(end))
        offsets[iv.key] = offset
        placed.append((offset, offset + iv.nbytes, iv))
    size = align(max((e for _, e, _ in placed), default=0))
    return offsets, size

"""What the host CPU offers the schedule: SIMD width, register count, core count."""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    vector_bytes: int      # widest SIMD register
    vector_registers: int  # architectural SIMD registers
    features: tuple[str, ...]
    cores: int

    @property
    def max_vector_width(self) -> int:
        """float32 lanes in the widest register."""
        return self.vector_bytes // 4


def _cpu_flags() -> tuple[str, tuple[str, ...]]:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine(), ()
    model, flags = platform.machine(), ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == platform.machine():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = tuple(sorted(value.split()))
    return model, flags


@functools.lru_cache(maxsize=None)
def host() -> Target:
    model, flags = _cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if "avx512f" in flags:
        return Target(model, 64, 32, flags, cores)
    if "avx2" in flags and "fma" in flags:
        return Target(model, 32, 16, flags, cores)
    if platform.machine() in ("aarch64", "arm64"):
        return Target(model, 16, 32, flags, cores)
    return Target(model, 16, 16, flags, cores)

"""What the host CPU offers the schedule: SIMD width, register count, FMA units, cache sizes, core count."""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

from .threads import available_cores


@dataclass(frozen=True)
class Target:
    name: str
    vector_bytes: int      # widest SIMD register
    vector_registers: int  # architectural SIMD registers
    features: tuple[str, ...]
    cores: int
    # Vector FMA pipes and their latency in cycles: 2 x 4 on every x86 core since Skylake (Intel's
    # AVX-512 Xeons: two 512-bit pipes) and Zen; the CPU does not report them, so they are defaults.
    fma_units: int = 2
    fma_latency: int = 4
    # Width of each FMA pipe, 0 where it is as wide as the widest register.  Zen 4 runs a 512-bit FMA on
    # both of its 256-bit pipes: one zmm FMA a cycle, half of Sapphire Rapids' (measured, Zen 4, 1 thread:
    # 118 GFLOP/s with 8 ymm chains, 118-142 with 4-8 zmm chains).
    fma_bytes: int = 0
    l1d_bytes: int = 32 * 1024    # per core (sysfs, where it tells)
    l2_bytes: int = 1024 * 1024   # per core

    @property
    def max_vector_width(self) -> int:
        """float32 lanes in the widest register."""
        return self.vector_bytes // 4

    @property
    def fma_chains(self) -> int:
        """Independent accumulator chains that keep every FMA pipe busy: units x latency."""
        return self.fma_units * self.fma_latency

    @property
    def flops_per_cycle(self) -> int:
        """Peak float32 FLOPs a cycle on one core: 2 (multiply and add) x lanes of every FMA pipe."""
        return 2 * self.fma_units * (self.fma_bytes or self.vector_bytes) // 4

    @property
    def isa(self) -> str:
        """e.g. 'AVX-512 (32 x 512-bit registers)'."""
        kind = ("AVX-512" if "avx512f" in self.features else "AVX2+FMA" if "avx2" in self.features
                else "NEON" if "asimd" in self.features else "SSE")
        return f"{kind} ({self.vector_registers} x {8 * self.vector_bytes}-bit registers)"


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _cpu_fields(text: str) -> dict[str, str]:
    """The "key: value" lines of /proc/cpuinfo, each key's first value (the first CPU's)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _cpu_flags(fields: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    if not fields:
        return platform.processor() or platform.machine(), ()
    flags = fields.get("flags", fields.get("Features", ""))
    return fields.get("model name", platform.machine()), tuple(sorted(flags.split()))


def _fma_bytes(fields: dict[str, str], flags: tuple[str, ...]) -> int:
    """32 on AMD family 25 with AVX-512 (Zen 4: 512-bit FMAs on 256-bit pipes), else 0 (full width)."""
    zen4 = fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
    return 32 if zen4 and "avx512f" in flags else 0


def _cache_sizes() -> dict[str, int]:
    """{"l1d_bytes": ..., "l2_bytes": ...} of cpu0 from sysfs; empty where it does not tell."""
    found = {}
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = os.listdir(root)
    except OSError:
        return found
    for entry in entries:
        try:
            def read(name: str) -> str:
                with open(os.path.join(root, entry, name)) as f:
                    return f.read().strip()
            level, kind, size = read("level"), read("type"), read("size")
        except OSError:
            continue
        units = {"K": 1024, "M": 1024 * 1024}
        nbytes = int(size[:-1]) * units[size[-1]] if size[-1:] in units else int(size) if size.isdigit() else 0
        if level == "1" and kind == "Data" and nbytes:
            found["l1d_bytes"] = nbytes
        elif level == "2" and kind in ("Unified", "Data") and nbytes:
            found["l2_bytes"] = nbytes
    return found


@functools.lru_cache(maxsize=None)
def host() -> Target:
    fields = _cpu_fields(_cpuinfo())
    model, flags = _cpu_flags(fields)
    cores = available_cores()
    caches = _cache_sizes()
    if "avx512f" in flags:
        return Target(model, 64, 32, flags, cores, fma_bytes=_fma_bytes(fields, flags), **caches)
    if "avx2" in flags and "fma" in flags:
        return Target(model, 32, 16, flags, cores, **caches)
    if platform.machine() in ("aarch64", "arm64"):
        return Target(model, 16, 32, flags, cores, **caches)
    return Target(model, 16, 16, flags, cores, **caches)

"""What the schedule knows of the CPU (convgen/target.py), and the benchmark's per-layer algorithm labels."""
from __future__ import annotations

import convgen
from convgen import nn
from convgen.target import Target, _cache_sizes, host

from conftest import load_program

AVX2 = Target("avx2", vector_bytes=32, vector_registers=16, features=("avx2", "fma"), cores=1)
AVX512 = Target("avx512", vector_bytes=64, vector_registers=32, features=("avx2", "avx512f", "fma"), cores=1)


def _bench():
    return load_program("benchmarks/bench.py", "bench_under_test")


def test_isa_names_the_register_file():
    assert AVX2.isa == "AVX2+FMA (16 x 256-bit registers)"
    assert AVX512.isa == "AVX-512 (32 x 512-bit registers)"
    assert AVX512.fma_chains == 8 and AVX512.max_vector_width == 16


def test_host_cache_sizes_come_from_sysfs_or_defaults():
    found = _cache_sizes()
    target = host()
    assert target.l1d_bytes == found.get("l1d_bytes", 32 * 1024)
    assert target.l2_bytes == found.get("l2_bytes", 1024 * 1024)
    assert 4096 <= target.l1d_bytes < target.l2_bytes


def test_benchmark_names_each_layers_algorithm():
    bench = _bench()
    conv = convgen.compile(nn.Sequential(nn.Conv2d(8, 32, 3)).to_graph((1, 8, 9, 9)))
    (kernel,) = [k for k in conv._lowered.kernels if k.op == "conv"]
    p = kernel.params
    assert bench.algorithms(conv) == f"direct {p.get('RH', 1)}x{p['RW']}px {p['OCV']}x{p['VW']}ch"
    depthwise = convgen.compile(nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 3),
                                              nn.Conv2d(8, 8, 3, groups=8)).to_graph((1, 4, 12, 12)))
    assert bench.algorithms(depthwise) == "depthwise x2, direct x1"

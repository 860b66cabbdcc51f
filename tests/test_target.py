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


ZEN4_CPUINFO = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
ZEN4 = Target("zen4", vector_bytes=64, vector_registers=32, features=("avx2", "avx512f", "fma"), cores=1, fma_bytes=32)


def test_zen4_runs_512_bit_fmas_on_256_bit_pipes():
    from convgen.target import _cpu_fields, _fma_bytes

    def fma_bytes(cpuinfo: str, flags: tuple[str, ...]) -> int:
        return _fma_bytes(_cpu_fields(cpuinfo), flags)
    avx512, avx2 = ("avx2", "avx512f", "fma"), ("avx2", "fma")
    assert fma_bytes(ZEN4_CPUINFO, avx512) == 32
    assert fma_bytes(ZEN4_CPUINFO, avx2) == 0            # Zen 3: family 25 without AVX-512, full-width ymm pipes
    assert fma_bytes(ZEN4_CPUINFO.replace("25", "26"), avx512) == 0          # Zen 5: 512-bit pipes
    assert fma_bytes(ZEN4_CPUINFO.replace("AuthenticAMD", "GenuineIntel").replace("25", "6"), avx512) == 0
    assert fma_bytes("", avx512) == 0
    # FLOPs a cycle: Sapphire Rapids 2 x 16 lanes x 2, Zen 4 as its AVX2 (2 x 8 x 2), which is what its probe measures
    assert (AVX512.flops_per_cycle, ZEN4.flops_per_cycle, AVX2.flops_per_cycle) == (64, 32, 32)
    assert ZEN4.fma_chains == AVX512.fma_chains == 8     # two pipes, four cycles each: the accumulators stay


def test_cost_model_scales_the_products_by_the_fma_width():
    """On Zen 4 a direct layer takes twice Sapphire Rapids' cycles, and Winograd's transforms (vector adds, loads
    and stores at about one a cycle on both) weigh less against its products: a ResNet 512x7x7 layer, direct on
    AVX-512 Xeons, goes Winograd there (measured, Zen 4, 1 thread, C: direct 2108 us, F(2x2, 3x3) 1310 us)."""
    from convgen import schedule
    flops = 2 * 512 * 512 * 9 * 7 * 7
    assert schedule.direct_cycles(flops, ZEN4) == 2 * schedule.direct_cycles(flops, AVX512)
    assert schedule.choose_winograd(1, 512, 512, 1, 7, 7, flops, AVX512) == 0
    assert schedule.choose_winograd(1, 512, 512, 1, 7, 7, flops, ZEN4) == 2

"""The kernels fit the instruction set they are compiled for.

For each x86 target this host can compile for (AVX2 + FMA, AVX-512, and one without AVX), a child
process compiles ``gemm`` with numba's target set by ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES``
(numba keeps the host's features when only the name is given) and counts the vector moves to and
from the stack in its assembly: a register tile larger than the register file spills on every k.
The same count on the tiles every target had before (6 rows × 4 vectors of 64 bytes) under AVX2
shows the bound catches a spilling tile. Training gives bitwise the same θ on every target with
FMA, and agrees to rounding without it; nothing here times anything.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minireptile.backends import isa

X86 = platform.machine().lower() in ("x86_64", "amd64")
needs_x86 = pytest.mark.skipif(not X86, reason="the named targets are x86 CPUs")

# (numba CPU name, the Isa it must get); NUMBA_CPU_FEATURES="" gives the CPU's own features
TARGETS = {"haswell": "avx2", "skylake-avx512": "avx512", "x86-64": "sse"}
# vector moves through the stack pointer in one dtype's gemm (loop set-up
# included): ~35 with a tile that fits; the 6×4 tile of 64-byte vectors under AVX2 gives hundreds
SPILL_BOUND = 64

_GEMM_ASM = textwrap.dedent("""
    import json, re, sys
    import numba, numpy as np
    from minireptile.backends import isa
    if sys.argv[1] == "old-tiles":  # every target's tile before tiles were chosen per instruction set
        isa.target_isa = lambda: isa.Isa("avx512", 64, 32, 6, 4, True, "forced")
    from minireptile.backends import numba_simd
    out = {"isa": numba_simd.ISA.name}
    for dt in (np.float32, np.float64):
        buf, i, f = np.zeros(8, dt), np.int64(0), dt(0)
        args = (buf, i, i, i, i, buf, i, i, i, buf, i, i, i, f, i)
        sig = tuple(numba.typeof(a) for a in args)
        numba_simd.gemm.compile(sig)  # compiled, never run: the host may lack the target's instructions
        asm = numba_simd.gemm.inspect_asm(sig)
        moves = [ln for ln in asm.splitlines() if re.search(r"%[xyz]mm", ln) and re.search(r"\\(%rsp\\)", ln)]
        out[dt.__name__] = {"stack_vector_moves": len(moves), "fma_calls": len(re.findall(r"\\bfmaf?\\b", asm))}
    print(json.dumps(out))
""")


def _child(script: str, cpu: str, tmp_path, *args: str) -> dict:
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES="", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# which instruction set a target gets
# ---------------------------------------------------------------------------------------------
@needs_x86
@pytest.mark.parametrize("cpu, name", sorted(TARGETS.items()))
def test_llvm_says_which_instruction_set_a_named_cpu_has(cpu, name):
    width, fma, arch = isa.probe(cpu, "")
    got = isa.isa_for(width, fma, arch, cpu)
    assert got.name == name
    assert got.vector_bytes == {"avx512": 64, "avx2": 32, "sse": 16}[name]
    assert got.fma == (name != "sse")


@needs_x86
def test_a_feature_string_can_take_avx512_away_from_an_avx512_cpu():
    assert isa.probe("skylake-avx512", "-avx512f")[0] == 32


@pytest.mark.parametrize("width, fma, arch", [(64, True, "x86_64"), (32, True, "x86_64"), (16, False, "x86_64"),
                                              (32, False, "x86_64"), (16, True, "aarch64"), (16, True, "ppc64le")])
def test_every_tile_leaves_registers_for_its_loads_and_the_broadcast(width, fma, arch):
    got = isa.isa_for(width, fma, arch)
    # accumulators + one vector of V per tile column + U broadcast (+ the product, without FMA)
    assert got.mr * got.nv + got.nv + 1 + (not got.fma) <= got.registers
    assert got.vector_bytes <= width and got.mr >= 4


def test_no_fma_means_the_16_byte_fallback_on_x86():
    assert isa.isa_for(32, False, "x86_64").name == "sse"   # AVX without FMA (Sandy Bridge)
    assert isa.isa_for(64, True, "x86_64").name == "avx512"


def test_the_target_isa_follows_numbas_settings(monkeypatch):
    from numba.core import config

    import llvmlite.binding as ll

    monkeypatch.setattr(config, "CPU_NAME", "haswell" if X86 else ll.get_host_cpu_name())
    monkeypatch.setattr(config, "CPU_FEATURES", "")
    got = isa.target_isa()
    assert got.cpu == config.CPU_NAME
    if X86:
        assert got.name == "avx2"
    assert "tile" in got.describe() and str(got.vector_bytes) in got.describe()


# ---------------------------------------------------------------------------------------------
# no spills
# ---------------------------------------------------------------------------------------------
@needs_x86
@pytest.mark.parametrize("cpu", sorted(TARGETS))
def test_gemm_keeps_its_tile_in_registers_and_calls_no_software_fma(cpu, tmp_path):
    got = _child(_GEMM_ASM, cpu, tmp_path, "")
    assert got["isa"] == TARGETS[cpu]
    for dtype in ("float32", "float64"):
        assert got[dtype]["stack_vector_moves"] <= SPILL_BOUND, (cpu, dtype, got)
        assert got[dtype]["fma_calls"] == 0, (cpu, dtype, got)


@needs_x86
def test_the_spill_bound_fails_on_the_old_64_byte_tiles_under_avx2(tmp_path):
    got = _child(_GEMM_ASM, "haswell", tmp_path, "old-tiles")
    assert got["float32"]["stack_vector_moves"] > 4 * SPILL_BOUND, got


# ---------------------------------------------------------------------------------------------
# the same numbers on every instruction set
# ---------------------------------------------------------------------------------------------
_TRAIN = textwrap.dedent("""
    import json, sys
    import numpy as np
    from minireptile import InnerOptimizer, MLPSpec, get_backend, get_preset, init_params, sine_block
    from minireptile.backends import numba_simd
    be = get_backend("numba")
    spec = MLPSpec((1, 64, 64, 1))
    out = {"isa": numba_simd.ISA.name}
    for dt in (np.float32, np.float64):
        X, Y, plans = sine_block(3, 0, 6, 3, get_preset("gist"), 5, 10, dt)
        theta = init_params(spec, np.random.default_rng(2), dt)
        got = be.train_chunk(spec, theta, X, Y, plans, np.linspace(0.5, 0.1, 6), InnerOptimizer("sgd", 0.02))[0]
        out[np.dtype(dt).name] = got.astype(np.float64).tolist()
    print(json.dumps(out))
""")


def _host_runs(cpu: str) -> bool:
    import llvmlite.binding as ll

    need = {"haswell": ("avx2", "fma"), "skylake-avx512": ("avx512f", "avx2", "fma"), "x86-64": ()}[cpu]
    have = ll.get_host_cpu_features()
    return all(have.get(f, False) for f in need)


@needs_x86
def test_every_instruction_set_with_fma_gives_bitwise_the_same_theta_and_sse_agrees_to_rounding(tmp_path):
    runs = {cpu: _child(_TRAIN, cpu, tmp_path) for cpu in TARGETS if _host_runs(cpu)}
    fma = [r for r in runs.values() if r["isa"] != "sse"]
    assert fma, "this x86 host has no FMA"
    for r in fma[1:]:
        for dtype in ("float32", "float64"):
            assert r[dtype] == fma[0][dtype], (r["isa"], fma[0]["isa"], dtype)
    sse = runs["x86-64"]
    assert sse["isa"] == "sse"
    np.testing.assert_allclose(sse["float64"], fma[0]["float64"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sse["float32"], fma[0]["float32"], rtol=1e-4, atol=1e-6)


_TANH = textwrap.dedent("""
    import json
    import numpy as np
    from numba import njit
    from minireptile.backends import kernel_math as km
    from minireptile.backends.numba_kernels import tanh_array
    out = {}
    for dt, scalar in ((np.float32, njit(km.tanh_f32)), (np.float64, njit(km.tanh_f64))):
        fi = np.finfo(dt)
        x = np.concatenate([np.linspace(-25, 25, 20_001), np.random.default_rng(0).normal(scale=3, size=5_000),
                            [0.0, -0.0, 1e-9, -3e-5, 4e-4, -4e-4, 7.9, -7.9, 20.0, -20.0, 1e300, -np.inf, np.inf,
                             fi.tiny, -fi.max]]).astype(dt)
        got = np.empty_like(x)
        tanh_array(got, x)
        want = np.array([scalar(v) for v in x], dt)
        out[dt.__name__] = int(np.sum(got.view(np.uint8).reshape(len(x), -1) != want.view(np.uint8).reshape(len(x), -1)))
    print(json.dumps(out))
""")


@needs_x86
def test_without_fma_the_kernels_tanh_is_kernel_maths_bit_for_bit(tmp_path):
    """The CPU kernel's vector tanh (LLVM code on |x|, the sign put back) and kernel_math's scalar tanh (what
    the CUDA backend compiles) are two copies of one formula: with no multiply-add to fuse they must agree on
    every bit."""
    got = _child(_TANH, "x86-64", tmp_path)
    assert got == {"float32": 0, "float64": 0}, got

"""benchmarks/hostenv.py: what ``--isa`` sets for each library, and the cap on JAX's YNNPACK kernels."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import hostenv  # noqa: E402

HASWELL = dict.fromkeys(("sse2", "ssse3", "sse4.1", "avx", "f16c", "avx2", "fma"), True)
SKYLAKE_AVX512 = dict(HASWELL, **dict.fromkeys(("avx512f", "avx512bw", "avx512vl", "avx512dq"), True))


def test_every_isa_caps_the_same_libraries():
    keys = {isa: set(env) for isa, env in hostenv.ISA_ENV.items() if isa != "native"}
    assert len(set(map(frozenset, keys.values()))) == 1
    assert {"NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "XLA_FLAGS", "OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA",
            "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY"} <= keys["avx2"]
    assert hostenv.ISA_ENV["native"] == {}


def test_ynnpack_keeps_exactly_the_flags_of_each_instruction_set():
    assert hostenv.YNN_KEEP["avx2"] == hostenv.ynn_expected_flags(HASWELL) == 0x7f
    assert hostenv.ynn_expected_flags(SKYLAKE_AVX512) == 0x7ff
    assert hostenv.ynn_expected_flags(SKYLAKE_AVX512) & hostenv.YNN_KEEP["avx512"] == 0x7ff
    assert hostenv.YNN_KEEP["sse"] == hostenv.ynn_expected_flags(dict.fromkeys(("sse2", "ssse3", "sse4.1"), True))
    amx = dict(SKYLAKE_AVX512, **{"amx-int8": True})
    assert hostenv.ynn_expected_flags(amx) == 0x107ff and hostenv.ynn_expected_flags(amx) & hostenv.YNN_KEEP["avx512"] == 0x7ff


def test_native_changes_nothing():
    assert hostenv.cap_ynnpack("native") == "not needed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_cap_reaches_jaxs_kernels():
    pytest.importorskip("jax", reason="jax not installed (pip install -e \".[bench]\")")
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r})\n"
            "import jax.numpy as jnp, hostenv\n"
            "(jnp.ones((4, 4)) @ jnp.ones((4, 4))).block_until_ready()\n"
            "print(hostenv.cap_ynnpack('avx2')); print(hostenv.cap_ynnpack('avx2'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[-2:]
    if first.startswith("NOT capped"):
        pytest.skip(f"this jaxlib: {first}")
    for line in (first, second):
        m = re.fullmatch(r"capped to avx2 \(flags (0x[0-9a-f]+) -> (0x[0-9a-f]+)\)", line)
        assert m, line
        assert int(m.group(2), 16) & ~0x7f == 0
    assert second.endswith(f"-> {first.split('-> ')[1]}")

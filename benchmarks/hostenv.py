"""The host a benchmark runs on: its CPU, the instruction set each library compiles for, the GEMM peak.

``--isa native|avx2|avx512|sse`` (:func:`add_isa_argument`) runs the benchmark again in a child
process whose environment makes numba, XLA and OpenBLAS compile for that instruction set
(:data:`ISA_ENV`), so an AVX-512 host measures what an AVX2 laptop would run:

    avx2    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=  XLA_FLAGS=--xla_cpu_max_isa=AVX2  OPENBLAS_CORETYPE=Haswell
    avx512  NUMBA_CPU_NAME=skylake-avx512 ...           XLA_FLAGS=--xla_cpu_max_isa=AVX512  OPENBLAS_CORETYPE=SkylakeX
    sse     NUMBA_CPU_NAME=x86-64 ...                   XLA_FLAGS=--xla_cpu_max_isa=SSE4_2  OPENBLAS_CORETYPE=Nehalem

``NUMBA_CPU_FEATURES`` is set (empty) on purpose: with ``NUMBA_CPU_NAME`` alone numba keeps the
host's feature flags, so on an AVX-512 host ``haswell`` still compiles AVX-512 code. A host can only
run the instruction sets it has: ``--isa avx512`` on an AVX2 machine stops with a message.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import numpy as np

from minireptile.commands.hostinfo import _openblas_libraries, cpu_model, openblas_core

ISA_ENV = {
    "native": {},
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
    "avx512": {"NUMBA_CPU_NAME": "skylake-avx512", "NUMBA_CPU_FEATURES": "", "XLA_FLAGS": "--xla_cpu_max_isa=AVX512",
               "OPENBLAS_CORETYPE": "SkylakeX"},
    "sse": {"NUMBA_CPU_NAME": "x86-64", "NUMBA_CPU_FEATURES": "", "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2",
            "OPENBLAS_CORETYPE": "Nehalem"},
}
_HOST_NEEDS = {"avx2": ("avx2", "fma"), "avx512": ("avx512f",), "sse": ()}
_MARK = "MINIREPTILE_BENCH_ISA"
PEAK_N = 2048


def add_isa_argument(parser) -> None:
    parser.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                        help="instruction set numba, XLA and OpenBLAS compile for (default: native, the host's); "
                             "the benchmark runs again in a child process with that environment")


def run_for_isa(isa: str, script: str, argv: list[str]) -> int | None:
    """Run ``script argv`` again in a child process with ``isa``'s environment and return its exit status;
    None when this process already has it (``native``, or the child itself)."""
    if isa == "native" or os.environ.get(_MARK) == isa:
        return None
    import llvmlite.binding as ll

    have = ll.get_host_cpu_features()
    missing = [f for f in _HOST_NEEDS[isa] if not have.get(f, False)]
    if missing:
        print(f"--isa {isa}: this CPU lacks {', '.join(missing)}; it can only run the instruction sets it has",
              file=sys.stderr)
        return 2
    env = dict(os.environ, **ISA_ENV[isa], **{_MARK: isa})
    print("running with " + " ".join(f"{k}={v}" for k, v in ISA_ENV[isa].items()), flush=True)
    return subprocess.run([sys.executable, script, *argv], env=env).returncode


def isa_info(requested: str) -> dict:
    """What each library compiles for in this process."""
    from minireptile.backends import numba_simd

    return {"requested": requested, "cpu_model": cpu_model(), "numba_cpu": numba_simd.ISA.cpu,
            "kernels": numba_simd.ISA.describe(), "kernel_isa": numba_simd.ISA.name,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "openblas_core": openblas_core(),
            "env": {k: os.environ[k] for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "OPENBLAS_CORETYPE")
                    if k in os.environ}}


class BlasThreads:
    """Set the number of BLAS threads numpy uses, in-process where possible.

    Tries threadpoolctl, then the ``*openblas_set_num_threads*`` symbol of numpy's bundled OpenBLAS.
    ``available`` is False if neither works (the peak is then measured in a subprocess with
    OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS set).
    """

    def __init__(self):
        self._set = None
        try:
            import threadpoolctl

            self._set = lambda n: threadpoolctl.threadpool_limits(n, user_api="blas")
            return
        except ImportError:
            pass
        for lib in _openblas_libraries():
            for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                         "openblas_set_num_threads64_", "openblas_set_num_threads"):
                fn = getattr(lib, name, None)
                if fn is not None:
                    fn.argtypes = [ctypes.c_int]
                    self._set = lambda n, fn=fn: fn(n)
                    return

    @property
    def available(self) -> bool:
        return self._set is not None

    def __call__(self, n: int) -> None:
        if self._set is not None:
            self._set(n)


def matmul_peak(dtype, threads: int, blas: BlasThreads, repeats: int = 5) -> float:
    """GFLOP/s of numpy's n×n matmul (best of ``repeats``) with ``threads`` BLAS threads."""
    if not blas.available:
        code = (f"import numpy as np, time\n"
                f"a = np.random.default_rng(0).random(({PEAK_N}, {PEAK_N})).astype('{np.dtype(dtype).name}'); a @ a\n"
                f"best = float('inf')\n"
                f"for _ in range({repeats}):\n"
                f"    t = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t)\n"
                f"print(2 * {PEAK_N}**3 / best / 1e9)\n")
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout)
    blas(threads)
    a = np.random.default_rng(0).random((PEAK_N, PEAK_N)).astype(dtype)
    b = np.random.default_rng(1).random((PEAK_N, PEAK_N)).astype(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * PEAK_N**3 / best / 1e9

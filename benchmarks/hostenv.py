"""The host a benchmark runs on: its CPU, the instruction set each library compiles for, the GEMM peak.

``--isa native|avx2|avx512|sse`` (:func:`add_isa_argument`) runs the benchmark again in a child
process whose environment makes numba, XLA and OpenBLAS compile for that instruction set
(:data:`ISA_ENV`), so an AVX-512 host measures what an AVX2 laptop would run:

    avx2    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=  XLA_FLAGS=--xla_cpu_max_isa=AVX2  OPENBLAS_CORETYPE=Haswell
    avx512  NUMBA_CPU_NAME=skylake-avx512 ...           XLA_FLAGS=--xla_cpu_max_isa=AVX512  OPENBLAS_CORETYPE=SkylakeX
    sse     NUMBA_CPU_NAME=x86-64 ...                   XLA_FLAGS=--xla_cpu_max_isa=SSE4_2  OPENBLAS_CORETYPE=Nehalem

plus the settings that cap the peers' run-time dispatched libraries: oneDNN (``ONEDNN_MAX_CPU_ISA``,
used by XLA's Eigen dots and by PyTorch), MKL (``MKL_ENABLE_INSTRUCTIONS``) and PyTorch's own kernels
(``ATEN_CPU_CAPABILITY``).

``NUMBA_CPU_FEATURES`` is set (empty) on purpose: with ``NUMBA_CPU_NAME`` alone numba keeps the
host's feature flags, so on an AVX-512 host ``haswell`` still compiles AVX-512 code. A host can only
run the instruction sets it has: ``--isa avx512`` on an AVX2 machine stops with a message.

JAX's CPU dots and transposes run in YNNPACK, which picks its kernels from the CPU's own report
(CPUID) at run time: ``--xla_cpu_max_isa`` does not reach it, and it has no setting of its own, so
with the environment alone ``--isa avx2`` on an AVX-512 host times JAX's AVX-512 kernels (seen with
``perf``: ``ynn::dot_fp32_5x64x1_1x16x1_avx512``). :func:`cap_ynnpack` masks the instruction sets
YNNPACK has detected (its cached flags, found by symbol in jaxlib) down to the requested ones, and
says when it cannot.
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
             "OPENBLAS_CORETYPE": "Haswell", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"NUMBA_CPU_NAME": "skylake-avx512", "NUMBA_CPU_FEATURES": "", "XLA_FLAGS": "--xla_cpu_max_isa=AVX512",
               "OPENBLAS_CORETYPE": "SkylakeX", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512", "ATEN_CPU_CAPABILITY": "avx512"},
    "sse": {"NUMBA_CPU_NAME": "x86-64", "NUMBA_CPU_FEATURES": "", "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2",
            "OPENBLAS_CORETYPE": "Nehalem", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
            "ATEN_CPU_CAPABILITY": "default"},
}
# YNNPACK's x86 instruction-set flags, bit by bit (ynnpack/base/arch.h), with llvmlite's names for them;
# the flags each --isa keeps
YNN_BITS = ("sse2", "ssse3", "sse4.1", "avx", "f16c", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
            "avx512dq", "avx512bf16", "avx512fp16", "avx512vnni", "amx-bf16", "amx-fp16", "amx-int8")
YNN_KEEP = {"avx2": 0x7f, "avx512": 0x3fff, "sse": 0x7}
_YNN_FLAGS = "_ZZN3ynn24get_supported_arch_flagsEvE5flags"   # the function's cached result (a static)
_YNN_GET = "_ZN3ynn24get_supported_arch_flagsEv"
_HOST_NEEDS = {"avx2": ("avx2", "fma"), "avx512": ("avx512f",), "sse": ()}
_MARK = "MINIREPTILE_BENCH_ISA"
PEAK_N = 2048


def add_isa_argument(parser) -> None:
    parser.add_argument("--isa", choices=sorted(ISA_ENV), default="native",
                        help="instruction set numba, XLA, the peers' kernel libraries and OpenBLAS use (default: native, "
                             "the host's); "
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


def ynn_expected_flags(features: dict) -> int:
    """The YNNPACK flags a CPU with these (llvmlite) features should report."""
    return sum(1 << i for i, name in enumerate(YNN_BITS) if features.get(name, False))


def cap_ynnpack(isa: str) -> str:
    """Limit JAX's YNNPACK kernels to ``isa``'s instruction sets in this process; return what was done.

    Call it after importing jax and before timing. It asks YNNPACK for its flags (which makes it
    detect them), checks that they are what this CPU's features give under the known bit layout
    (:data:`YNN_BITS`; a jaxlib with another layout is left alone), and clears the bits ``isa``
    lacks. Only ``--isa`` runs call it; nothing changes for ``native``.
    """
    if isa not in YNN_KEEP:
        return "not needed"
    try:
        import jaxlib
    except ImportError:
        return "no jaxlib"
    import llvmlite.binding as ll

    path = os.path.join(os.path.dirname(jaxlib.__file__), "libjax_common.so")
    base = None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == path and int(parts[2], 16) == 0:
                    base = int(parts[0].split("-")[0], 16)
                    break
    except OSError:
        pass
    if base is None:
        return f"NOT capped: {os.path.basename(path)} is not loaded here (JAX's kernels may use the host's instruction set)"
    try:
        out = subprocess.run(["nm", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"NOT capped: cannot list jaxlib's symbols ({type(exc).__name__}; binutils' nm is needed)"
    addr = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in (_YNN_FLAGS, _YNN_GET):
            addr[parts[2]] = int(parts[0], 16)
    if len(addr) < 2:
        return "NOT capped: this jaxlib has no YNNPACK symbols (JAX's kernels may use the host's instruction set)"
    detected = ctypes.CFUNCTYPE(ctypes.c_uint64)(base + addr[_YNN_GET])()
    cell = ctypes.c_uint64.from_address(base + addr[_YNN_FLAGS])
    expected = ynn_expected_flags(ll.get_host_cpu_features())
    if cell.value != detected or detected not in (expected, expected & YNN_KEEP[isa]):  # (capped before)
        return f"NOT capped: YNNPACK's flags {detected:#x} are not this CPU's {expected:#x} in the known layout"
    cell.value = detected & YNN_KEEP[isa]
    return f"capped to {isa} (flags {detected:#x} -> {cell.value:#x})"


def isa_info(requested: str) -> dict:
    """What each library compiles for in this process."""
    from minireptile.backends import numba_simd

    return {"requested": requested, "cpu_model": cpu_model(), "numba_cpu": numba_simd.ISA.cpu,
            "kernels": numba_simd.ISA.describe(), "kernel_isa": numba_simd.ISA.name,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "openblas_core": openblas_core(),
            "env": {k: os.environ[k] for k in ISA_ENV["avx2"] if k in os.environ and k != "XLA_FLAGS"}}


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

"""The instruction set the Numba CPU kernels are compiled for, and the register tile that fits it.

Contract
--------
:func:`target_isa` returns the :class:`Isa` of the CPU numba compiles for: the host's CPU, or the
one numba's own settings name (``NUMBA_CPU_NAME`` with ``NUMBA_CPU_FEATURES``, read by numba when
it starts). It asks LLVM, not a table of CPU names: a fused multiply-add of one 64-byte vector is
compiled for numba's target, and the assembly says how wide the vector registers are (zmm: 64
bytes, ymm: 32, else 16) and whether the multiply-add is an instruction or a call to libm's
``fmaf``. From the width and the register count follows the register tile of
:func:`minireptile.backends.numba_simd.gemm`, one per instruction set, as BLIS keeps one
micro-kernel per CPU family behind one interface:

    =========  ======  =========  ====  ===  ==============================================
    name       vector  registers  tile  fma  accumulators + V loads + U broadcast
    =========  ======  =========  ====  ===  ==============================================
    avx512     64 B    32 zmm     6×4   yes  24 + 4 + 1 = 29 of 32
    avx2       32 B    16 ymm     6×2   yes  12 + 2 + 1 = 15 of 16 (BLIS haswell: 6×16 f32)
    neon       16 B    32 q       6×4   yes  24 + 4 + 1 = 29 of 32
    sse        16 B    16 xmm     4×2   no   8 + 2 + 1 + a product = 12 of 16
    =========  ======  =========  ====  ===  ==============================================

(tile = rows × vectors; a row of the tile is ``nv`` vectors of C, held for the whole k loop).
"sse" stands for every x86 target without FMA (SSE only, or AVX without FMA); other architectures
get the 16-byte tile of their register count. Without FMA the kernels multiply, round, then add:
LLVM would otherwise call a software ``fmaf`` for every lane. So results are bitwise the same on
every target with FMA (a product's terms are summed in the same order whatever the tile), and
agree to rounding with a target without it. tests/backends/test_isa.py compiles ``gemm`` for each
x86 target and counts the vector spills to the stack.

This module decides; it compiles nothing but the probe (once per target, a few milliseconds).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_PROBE = """
define void @probe(ptr %a, ptr %b, ptr %c) {{
  %x = load <16 x float>, ptr %a, align 4
  %y = load <16 x float>, ptr %b, align 4
  %z = load <16 x float>, ptr %c, align 4
  %r = call <16 x float> @llvm.fma.v16f32(<16 x float> %x, <16 x float> %y, <16 x float> %z)
  store <16 x float> %r, ptr %c, align 4
  ret void
}}
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
"""


@dataclass(frozen=True)
class Isa:
    """An instruction set as the kernels use it.

    Attributes
    ----------
    name : str
        "avx512", "avx2", "sse" (x86 without FMA), "neon" (aarch64) or "vec16" (other CPUs).
    vector_bytes : int
        Width of one vector register: 64, 32 or 16.
    registers : int
        Vector registers the architecture has (32 with AVX-512 and on aarch64, else 16).
    mr, nv : int
        The register tile of ``gemm``: ``mr`` rows × ``nv`` vectors of accumulators.
    fma : bool
        Whether fused multiply-add is an instruction (else: multiply, round, add).
    cpu : str
        The CPU name LLVM compiles for (numba's target: the host's, or ``NUMBA_CPU_NAME``).
    """

    name: str
    vector_bytes: int
    registers: int
    mr: int
    nv: int
    fma: bool
    cpu: str = ""

    def lanes(self, itemsize: int) -> int:
        """Elements per vector register: 16 float32 or 8 float64 with AVX-512."""
        return self.vector_bytes // itemsize

    def describe(self) -> str:
        """One line, e.g. ``avx2: 32-byte vectors, 6×2 tile (12 of 16 registers), FMA``."""
        return (f"{self.name}: {self.vector_bytes}-byte vectors, {self.mr}×{self.nv} tile "
                f"({self.mr * self.nv} of {self.registers} registers), {'FMA' if self.fma else 'no FMA'}")


def isa_for(vector_bytes: int, fma: bool, arch: str, cpu: str = "") -> Isa:
    """The :class:`Isa` (name and tile) of a target with this vector width, FMA and architecture."""
    x86 = arch in ("x86_64", "amd64", "i686", "i386")
    if x86 and vector_bytes >= 64 and fma:
        return Isa("avx512", 64, 32, 6, 4, True, cpu)
    if x86 and vector_bytes >= 32 and fma:
        return Isa("avx2", 32, 16, 6, 2, True, cpu)
    if x86:
        return Isa("sse", 16, 16, 4, 2, fma, cpu)
    if arch in ("aarch64", "arm64"):
        return Isa("neon", 16, 32, 6, 4, fma, cpu)
    return Isa("vec16", 16, 16, 4, 2, fma, cpu)


def numba_target() -> tuple[str, str]:
    """(CPU name, feature string) numba compiles for: its settings, else the host's."""
    import llvmlite.binding as ll
    from numba.core import codegen, config

    cpu = config.CPU_NAME or ll.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    return cpu, features


@functools.lru_cache(maxsize=None)
def probe(cpu: str, features: str) -> tuple[int, bool, str]:
    """(vector bytes, FMA in hardware, architecture) of LLVM's code for this CPU and features."""
    import llvmlite.binding as ll

    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    triple = ll.get_process_triple()
    machine = ll.Target.from_triple(triple).create_target_machine(cpu=cpu, features=features, opt=2)
    module = ll.parse_assembly(_PROBE.format())
    module.triple = triple
    asm = machine.emit_assembly(module)
    arch = triple.split("-")[0]
    if re.search(r"\bzmm\d", asm):
        width = 64
    elif re.search(r"\bymm\d", asm):
        width = 32
    else:
        width = 16
    fma = re.search(r"\bfmaf\b", asm) is None  # a libm call per lane where the CPU has no FMA
    return width, fma, arch


def target_isa() -> Isa:
    """The :class:`Isa` of the CPU numba compiles for (see the module docstring)."""
    cpu, features = numba_target()
    width, fma, arch = probe(cpu, features)
    return isa_for(width, fma, arch, cpu)

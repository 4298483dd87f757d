"""``minireptile info``: what a bug report needs to know about this machine (as ``numba -s`` does).

Versions (minireptile, Python, NumPy, Numba, llvmlite, BLAS), the CPU and the instruction set the
kernels are compiled for, the thread count and what the busy-machine policy would use right now,
the numba cache folder and the kernel specialisations it holds, the optional extras that import,
and whether a CUDA GPU is seen. ``--json`` prints the same as one JSON object. It compiles nothing.
"""

from __future__ import annotations

import json
import platform
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, CPU, instruction set, threads and caches, for bug reports",
                       description="Print what a bug report needs: versions, the CPU and the instruction set the "
                       "kernels use, threads, the numba cache and the optional extras. Compiles nothing.")
    p.add_argument("--json", action="store_true", help="print the same as one JSON object")
    p.set_defaults(run=run)


def collect() -> dict:
    """Every fact ``minireptile info`` prints, as plain data."""
    import llvmlite
    import numba
    import numpy as np

    from . import hostinfo
    from .._version import __version__
    from ..backends import isa, numba_cpu, numba_threads

    target = isa.target_isa()
    cpu_name, features = isa.numba_target()
    return {
        "versions": {"minireptile": __version__, "python": platform.python_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "llvmlite": llvmlite.__version__},
        "blas": hostinfo.blas(),
        "cpu": {"model": hostinfo.cpu_model(), "machine": platform.machine(), "numba_cpu_name": cpu_name,
                "numba_cpu_features_set": numba.config.CPU_FEATURES is not None,
                "kernels": {"isa": target.name, "vector_bytes": target.vector_bytes, "tile": [target.mr, target.nv],
                            "registers": target.registers, "fma": target.fma, "summary": target.describe()}},
        "threads": numba_threads.threads_report(),
        "numba_cache": numba_cpu.cached_kernels(),
        "extras": hostinfo.extras(),
        "cuda": hostinfo.cuda_seen(),
    }


def format_text(info: dict) -> str:
    v, b, c, t, cache = info["versions"], info["blas"], info["cpu"], info["threads"], info["numba_cache"]
    lines = ["versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"BLAS: {b['name'] or 'unknown'} {b['version'] or ''}".rstrip()
             + (f" (OpenBLAS core {b['openblas_core']})" if b["openblas_core"] else ""),
             f"CPU: {c['model']} ({c['machine']}); numba compiles for {c['numba_cpu_name']}"
             + ("" if not c["numba_cpu_features_set"] else " with NUMBA_CPU_FEATURES set"),
             f"kernels: {c['kernels']['summary']}",
             f"threads: {t['requested']} requested; a call now would use {t['would_use']} "
             f"({t['cpus']} CPUs usable of {t['cpu_count']}; load from {t['load_source']}"
             + (f": {t['runnable']} runnable" if t["runnable"] is not None else "") + ")",
             f"numba cache: {cache['folder']}"]
    if cache["kernels"] is None:
        lines.append("  (its index could not be read by this numba version)")
    elif not cache["kernels"]:
        lines.append("  no chunk kernel compiled yet (the first run compiles one)")
    for k in cache["kernels"] or ():
        lines.append(f"  {k['activation']}/{k['loss']}/{k['optimizer']} {k['dtype']} for {k['cpu']}")
    lines.append("extras: " + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in info["extras"].items()))
    lines.append(f"CUDA GPU: {info['cuda']}")
    return "\n".join(lines)


def run(args) -> int:
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_text(info), file=sys.stdout)
    return 0

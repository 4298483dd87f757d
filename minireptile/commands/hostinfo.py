"""Facts about the machine minireptile runs on, for ``minireptile info`` and the benchmarks.

Contract
--------
Each function returns plain data (str, dict, None where a fact cannot be known here) and never
raises for a missing file, library or command: a bug report must come out on any machine. Nothing
is imported that compiles code or touches a GPU; :func:`cuda_seen` imports numba-cuda only when
asked.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import os
import platform
import subprocess

# optional extras (pyproject.toml) and the module each needs
EXTRAS = {"plot": "matplotlib", "progress": "tqdm", "images": "PIL", "distributed": "distributed",
          "cuda": "numba_cuda", "test": "pytest", "bench (PyTorch)": "torch", "bench (JAX)": "jax"}


def cpu_model() -> str:
    """The CPU's model name, as lscpu or /proc/cpuinfo say (else what Python's platform knows)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and value.strip():
                return value.strip()
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return platform.processor() or platform.machine() or "unknown"


def _openblas_libraries():
    import numpy as np

    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        with contextlib.suppress(OSError):
            yield ctypes.CDLL(path)


def openblas_core() -> str | None:
    """The kernel family numpy's bundled OpenBLAS runs (e.g. Haswell, SkylakeX); None without one."""
    for lib in _openblas_libraries():
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                     "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode(errors="replace")
    return None


def blas() -> dict:
    """numpy's BLAS: name and version it was built with, and the OpenBLAS core it runs."""
    import numpy as np

    info = {"name": None, "version": None, "openblas_core": openblas_core()}
    with contextlib.suppress(Exception):  # show_config's layout differs across numpy versions
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["name"], info["version"] = deps.get("name"), deps.get("version")
    return info


def extras() -> dict:
    """Which optional extras can be imported here: {extra: True/False}."""
    return {extra: importlib.util.find_spec(module) is not None for extra, module in EXTRAS.items()}


def cuda_seen() -> str:
    """Whether numba-cuda sees a CUDA GPU: 'yes: NAME', 'no: WHY'."""
    if importlib.util.find_spec("numba_cuda") is None and importlib.util.find_spec("numba.cuda") is None:
        return 'no: numba-cuda is not installed (pip install -e ".[cuda]")'
    try:
        from numba import cuda

        if not cuda.is_available():
            return "no: no CUDA driver or GPU found"
        return f"yes: {cuda.get_current_device().name.decode(errors='replace')}"
    except Exception as exc:  # noqa: BLE001 (a broken driver must not break a bug report)
        return f"no: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"

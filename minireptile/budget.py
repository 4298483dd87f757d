"""Memory estimates for the Python API: refuse sizes that cannot fit before allocating anything.

The command line does the same for its flags (:func:`minireptile.commands.runs.check_memory`); here
a size that would not fit is a ``ValueError`` naming the argument, not a ``MemoryError`` (or an
allocation that swaps the machine) from deep inside.
"""

from __future__ import annotations

import os


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_fits(terms: dict, limit: int | None = None) -> None:
    """ValueError naming the argument of the largest term when the sum of ``terms`` exceeds memory.

    Parameters
    ----------
    terms : dict of str to int
        Argument name → bytes of the arrays it sizes.
    limit : int, optional
        Bytes available (default: :func:`available_memory`).
    """
    need = sum(int(v) for v in terms.values())
    have = available_memory() if limit is None else limit
    if need > have:
        name = max(terms, key=lambda k: terms[k])
        raise ValueError(f"{name}: too large: its arrays would need about {need / 2**30:,.1f} GiB of memory, more "
                         f"than the {have / 2**30:,.1f} GiB available; use a smaller value")

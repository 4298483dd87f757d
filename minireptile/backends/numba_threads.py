"""Threads for the Numba CPU backend: how many to use now, and how one chunk's work is shared out.

Contract
--------
``_free_cores()`` counts the CPUs no other job is using, ``threads_report()`` says what that policy
sees (for ``minireptile info``), and ``_in_threads(kernel, args, ...)`` runs one compiled chunk
(:mod:`minireptile.backends.numba_kernels`) on several Python threads. It computes exactly what one
thread computes (bitwise): each block of work writes only its own rows or columns, and every
reduction runs in task order whoever runs it. Nothing here touches numbers; it only decides who
runs which block and when.

The policy reads three things, each replaceable in tests: ``/proc/loadavg`` (``read``), the CPU
affinity set (``os.sched_getaffinity``) and one clock (``_clock``).

The number of threads is numba's (``numba.set_num_threads``; ``minireptile sine --threads N``),
but the threads are plain Python threads started per call, not numba's ``prange`` pool: a
thread that waits blocks on a lock instead of spinning, so on a machine shared with other jobs
two threads are not slower than one (OpenMP's idle workers spin; see docs/benchmarks.md), and the
process stays safe to ``fork`` between calls. Several Python threads may call the backend at once.
The thread count is an upper bound, as with OpenMP's ``OMP_DYNAMIC``: a call uses no more threads
than there are CPUs no other job is running on at its start (:func:`_free_cores`, from the
kernel's count of runnable threads), and a call that finds its helpers held up by other jobs
finishes alone. On a machine busy with other work, two threads therefore run as one.
:func:`~minireptile.backends.numba_cpu.select_threading_layer` still picks a thread-safe numba layer for any ``prange`` code
elsewhere in the process; importing minireptile changes nothing.
"""

from __future__ import annotations

import os
import threading
import time

import numba


def _free_cores(ours: int = 0, read=None) -> int:
    """How many of the CPUs this process may run on no other job is using right now (≥ 0).

    From the kernel's count of runnable threads (``/proc/loadavg``, Linux): the CPUs of this
    process's affinity set less the runnable threads other than the caller and ``ours`` (threads
    of this call already at work). Where the count is unavailable (other systems) or covers more
    CPUs than this process may use (a CPU set smaller than the machine, as in some containers),
    every CPU counts as free. A count below the CPUs is read again twice, 0.2 ms apart, and the
    last reading counts only if every reading was below: a thread that ran for a moment is not a job.
    ``read``: returns the text of /proc/loadavg (tests).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
    if cpus != os.cpu_count():
        return cpus
    read = read or _read_loadavg
    free = cpus
    for attempt in range(_LOAD_READS):  # a short-lived thread (a kernel worker, a shell) is seen once, a job again
        try:
            running = int(read().split()[3].split("/")[0])  # "0.45 0.75 0.91 3/77 18654": 3 runnable now
        except (OSError, ValueError, IndexError):
            return cpus
        free = max(0, cpus - max(0, running - 1 - ours))
        if free >= cpus:
            return free
        until = time.perf_counter() + _LOAD_READ_GAP_S
        while attempt < _LOAD_READS - 1 and time.perf_counter() < until:
            pass  # not time.sleep: a thread that sleeps on a busy machine may wake on another core
    return free


_LOAD_READS, _LOAD_READ_GAP_S = 3, 200e-6


def threads_report(read=None) -> dict:
    """What the busy-machine policy sees now (for ``minireptile info``).

    Returns requested (numba's thread count), cpus (this process may run on), cpu_count (the
    machine's), load_source (where the count of runnable threads comes from, or why there is none),
    runnable (that count, or None), and would_use (threads a call would start now).
    """
    requested = numba.get_num_threads()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    runnable = None
    if cpus is None:
        source = "no CPU affinity on this system: every CPU counts as free"
    elif cpus != os.cpu_count():
        source = (f"a CPU set of {cpus} of the machine's {os.cpu_count()} CPUs (a container?): /proc/loadavg counts "
                  "the whole machine, so every CPU of the set counts as free")
    else:
        try:
            runnable = int((read or _read_loadavg)().split()[3].split("/")[0])
            source = "/proc/loadavg (runnable threads, this one included)"
        except (OSError, ValueError, IndexError):
            source = "/proc/loadavg unreadable: every CPU counts as free"
    would = min(requested, max(1, _free_cores(read=read))) if requested > 1 else 1
    return {"requested": requested, "cpus": cpus, "cpu_count": os.cpu_count(), "load_source": source,
            "runnable": runnable, "would_use": would}


def _read_loadavg() -> str:
    fd = os.open("/proc/loadavg", os.O_RDONLY)
    try:
        return os.read(fd, 256).decode("ascii", "replace")
    finally:
        os.close(fd)


# Below this many φ elements (n_tasks × P) an outer update runs on the calling thread alone: waking a
# helper costs tens of µs, more than its share of a small reduction (the gist at meta-batch 32: ~10 µs).
_SPLIT_UPDATE_MIN = 1 << 19
# A helper that holds the caller up longer than two of the caller's own blocks was descheduled (the
# cores are shared with other jobs): the caller then runs the next SOLO_FIRST outer iterations alone
# in one kernel call (as with one thread), and 4x as many after each further such wait, up to
# SOLO_MAX, before it hands work out again.
_SOLO_FIRST, _SOLO_MAX = 16, 1024
_STRAGGLE_MIN_S = 100e-6
_clock = time.perf_counter  # the clock the hold-up rule reads (tests replace it: the rule depends on nothing else)


def _in_threads(kernel, args, n: int, iters: int, P: int, threads: int, t: int, hs: bool, carry: bool,
                update: bool) -> int:
    """Run the kernel's tasks on ``threads`` Python threads; return the Adam step count after it.

    Work comes in phases: an outer iteration's tasks, cut into blocks, then (with ``update``) its
    outer update, cut into blocks of parameter columns (each column reduced over tasks in task
    order, whoever runs it; a small update runs on the calling thread alone). The calling thread
    and the helpers take the blocks of the current phase in turn (the kernel releases the GIL);
    each block writes only its own rows or columns, so the result does not depend on the number of
    threads or on who ran what. The caller waits only for blocks a helper has started, never for a
    helper to wake up, and with no helper awake it runs everything alone. Waiting threads block on
    a lock; nothing spins.

    On a machine shared with other jobs a helper can be descheduled in the middle of a block, and
    the caller would wait for it for a time slice of the other jobs (milliseconds, against a phase
    of a few hundred µs). An undisturbed helper finishes its last block at most about one block
    after the caller has run out of blocks; when the caller has waited longer than twice the
    shortest time one of its own blocks took, it runs the next outer iterations alone, in one kernel
    call as one thread would (16, then 4x as many after each such wait, up to 1024), and then tries
    the helpers again; if other jobs hold the cores at that moment (:func:`_free_cores`) it runs the
    rest of the call alone. So under a competing load two threads cost what one costs, and on a
    quiet machine they still share every iteration.
    """
    block = max(-(-n // (4 * threads)), min(8, -(-n // threads)))  # ≥ 8 tasks a block: one call costs ~µs
    split_update = n * P >= _SPLIT_UPDATE_MIN
    width = -(-P // (16 * threads)) * 16 if split_update else P  # columns per block, whole 64-byte vectors
    cond = threading.Condition()
    state = {"phase": 0, "blocks": iter(()), "busy": 0, "stop": False, "t": t, "hs": hs}
    solo = {"left": 0, "next": _SOLO_FIRST}
    errors = []

    def task_block(r, lo, k):
        it_lo, it_hi = (r, r + 1) if update else (0, iters)
        kernel(*args, state["t"], state["hs"], carry, False, False, lo, min(lo + block, n), it_lo, it_hi, 0, 0, k)

    def update_block(r, c, k):
        state["next"] = kernel(*args, state["t"], state["hs"], carry, True, False, 0, 0, r, r + 1, c,
                               min(c + width, P), k)

    def timed(job, kind):
        """Run one block on the calling thread, keeping the shortest time a block of this kind took."""
        start = _clock()
        job(0)
        solo[kind] = min(solo.get(kind, float("inf")), _clock() - start)

    def take(blocks, k, kind=None):
        """Run blocks of one phase until none is left."""
        while True:
            with cond:
                job = next(blocks, None)
                if job is None:
                    return
                state["busy"] += 1
            try:
                timed(job, kind) if k == 0 else job(k)
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)
            finally:
                with cond:
                    state["busy"] -= 1
                    cond.notify_all()

    def helper(k):
        seen = 0
        while True:
            with cond:
                while not state["stop"] and state["phase"] == seen:
                    cond.wait()
                if state["stop"]:
                    return
                seen, blocks = state["phase"], state["blocks"]
            take(blocks, k)

    def run_phase(jobs, kind):
        if len(jobs) == 1 or solo["left"] > 0:  # nothing to share, or the helpers are held up
            for job in jobs:
                timed(job, kind)
            return
        blocks = iter(jobs)
        with cond:
            state["phase"] += 1
            state["blocks"] = blocks
            cond.notify_all()
        take(blocks, 0, kind)
        start = _clock()
        with cond:
            while state["busy"]:
                cond.wait()
        waited = _clock() - start
        if errors:
            raise errors[0]
        # an undisturbed helper finishes its last block at most about one block after the caller
        if waited > max(2 * solo[kind], _STRAGGLE_MIN_S):
            if _free_cores(ours=threads - 1) < threads:  # other jobs took the cores: alone to the end of the call
                solo["left"] = iters
            else:  # a passing hold-up: alone for a while, then try again
                solo["left"], solo["next"] = solo["next"], min(4 * solo["next"], _SOLO_MAX)

    kernel(*args, t, hs, carry, False, True, 0, 0, 0, 0, 0, 0, 0)  # tht from θ
    helpers = [threading.Thread(target=helper, args=(k,), daemon=True) for k in range(1, threads)]
    for h in helpers:
        h.start()
    try:
        r = 0
        while r < (iters if update else 1):  # without an update the iterations are independent
            if update and solo["left"] > 0:  # helpers held up: the next iterations in one call, as with 1 thread
                span = min(solo["left"], iters - r)
                state["t"], state["hs"] = kernel(*args, state["t"], state["hs"], carry, True, True, 0, n, r, r + span,
                                                 0, P, 0)
                r, solo["left"] = r + span, 0
                continue
            if r > 0 and split_update:  # θᵀ from the θ of the last update (a whole update refreshes it itself)
                kernel(*args, t, hs, carry, False, True, 0, 0, 0, 0, 0, 0, 0)
            run_phase([lambda k, lo=lo, r=r: task_block(r, lo, k) for lo in range(0, n, block)], "tasks")
            if update:
                run_phase([lambda k, c=c, r=r: update_block(r, c, k) for c in range(0, P, width)], "update")
                state["t"], state["hs"] = state["next"]
            solo["left"] = max(solo["left"] - 1, 0)
            r += 1
    finally:
        with cond:
            state["stop"] = True
            cond.notify_all()
        for h in helpers:
            h.join()
    return state["t"]

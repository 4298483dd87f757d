"""Two Python threads training at once get exactly the results of training one after the other.

Numba's ``workqueue`` threading layer aborts the whole process when two threads enter parallel
code at once, so the check runs in a subprocess: an abort fails the test instead of killing pytest.
The numba backend selects a thread-safe layer (OpenMP or TBB; see minireptile/backends/numba_cpu.py).
"""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main

from cpu_backends import CPU_BACKENDS

SCRIPT = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from minireptile import (InnerOptimizer, MLPSpec, ReptileConfig, get_backend, get_preset, init_params,
                             meta_train, sine_block, stream_rng)

    name = sys.argv[1]
    backend = get_backend(name)
    spec = MLPSpec((1, 32, 32, 1))
    preset = get_preset("gist")
    cfg = ReptileConfig(iters=120, meta_batch=4, eps0=0.5, inner=InnerOptimizer("sgd", 0.02), inner_steps=5,
                        inner_batch=10)

    def train(seed):
        theta0 = init_params(spec, stream_rng(seed, 0), np.float64)
        sample = lambda b: sine_block(seed, b, 40, 4, preset, 5, 10, np.float64)
        return meta_train(spec, theta0, sample, 40, cfg, backend, chunk_iters=10)[0]

    sequential = [train(seed) for seed in (0, 1)]
    results, errors = {}, []
    start = threading.Barrier(4)

    def worker(k):
        try:
            start.wait()
            results[k] = train(k % 2)
        except BaseException as exc:  # report, do not hide
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(4):
        assert np.array_equal(results[k], sequential[k % 2]), k
    assert not np.array_equal(sequential[0], sequential[1])
    if name == "numba":
        import numba
        print("threading layer", numba.threading_layer())
    print("OK")
""")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_threads_training_at_once_equal_training_one_after_the_other(backend):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, backend], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode} (negative: killed by signal)\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip().endswith("OK")
    if backend == "numba":
        assert any(f"threading layer {layer}" in proc.stdout for layer in ("omp", "tbb")), proc.stdout


def test_the_command_runs_in_threads_without_signal_handlers(tmp_path):
    """Outside the main thread the Ctrl-C guard installs nothing (Python forbids it) and the run completes."""
    def run(name, seed):
        statuses[name] = main(["sine", "--iters", "60", "--seed", str(seed), "--eval-tasks", "2", "--no-plot",
                               "--quiet", "--backend", "numpy", "--checkpoint-every", "7", "--out",
                               str(tmp_path / name)])

    statuses = {}
    threads = [threading.Thread(target=run, args=(f"t{seed}", seed)) for seed in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run("alone", 1)
    assert statuses == {"t0": 0, "t1": 0, "alone": 0}
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "t1" / "checkpoint.npz")["theta"],
                                  load_checkpoint(tmp_path / "alone" / "checkpoint.npz")["theta"])

"""The distributed meta-batch on a local Dask cluster of 2 worker processes (one per module).

θ after meta-training must be bitwise the same on 1, 2 and 3 workers, bitwise equal to the numba
backend in one process with the same ``task_block``, and equal to the NumPy reference's one-line
update to rounding; a worker killed mid-training changes no bit; the command-line run on a cluster
gives the checkpoint of the single-process run; fresh workers compiling into one numba cache at once
leave a cache that later processes load.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from minireptile import InnerOptimizer, MLPSpec, ReptileConfig, get_backend, get_preset, init_params, meta_train  # noqa: E402
from minireptile.backends.distributed import distributed_backend, task_block_for  # noqa: E402
from minireptile.cli import main  # noqa: E402
from minireptile.tasks import sine_block  # noqa: E402

SPEC = MLPSpec((1, 16, 16, 1), "tanh", "mse")
SGD = InnerOptimizer("sgd", 0.02)
ADAM_CARRY = InnerOptimizer("adam", 0.003, 0.0, 0.999, 1e-8, "carry")
BLOCK_ITERS = 4


def sampler(meta_batch, dtype=np.float32):
    # a partial of a library function: picklable by reference, so the workers can sample the tasks
    return functools.partial(sine_block, 3, block_iters=BLOCK_ITERS, meta_batch=meta_batch, preset=get_preset("gist"),
                             steps=5, batch=10, dtype=dtype)


def train(backend, opt=SGD, meta_batch=7, task_block=3, iters=6, dtype=np.float32, **kwargs):
    theta0 = init_params(SPEC, np.random.default_rng(0), dtype)
    config = ReptileConfig(iters=iters, meta_batch=meta_batch, eps0=0.5, inner=opt, task_block=task_block)
    return meta_train(SPEC, theta0, sampler(meta_batch, dtype), BLOCK_ITERS, config, backend, **kwargs)


def scale(client, n):
    client.cluster.scale(n)
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) != n:
        assert time.monotonic() < deadline, f"the cluster did not reach {n} workers"
        time.sleep(0.1)


def test_theta_is_bitwise_the_same_on_1_2_and_3_workers_and_in_one_process(client):
    single, _ = train(get_backend("numba"))
    reference, _ = train(get_backend("numpy"))
    assert np.abs(single - reference).max() <= 1e-5 * np.abs(reference).max()  # the reference is the definition
    backend = distributed_backend(client)
    try:
        for n in (1, 3, 2):
            scale(client, n)
            theta, _ = train(backend)
            assert np.array_equal(theta, single), f"{n} workers"
    finally:
        scale(client, 2)


def test_blocks_change_only_the_rounding_and_one_task_blocks_are_the_plain_sum(client):
    plain, _ = train(get_backend("numba"), task_block=None)
    assert np.array_equal(train(get_backend("numba"), task_block=1)[0], plain)   # 1 task a block: task order
    assert np.array_equal(train(get_backend("numba"), task_block=7)[0], plain)   # one block
    blocked, _ = train(get_backend("numba"), task_block=3)
    assert np.abs(blocked - plain).max() <= 1e-5 * np.abs(plain).max()
    assert task_block_for(16) == 1 and task_block_for(17) == 2 and task_block_for(1000) == 63


def test_carried_adam_state_and_losses_match_the_single_process_run(client):
    losses = {}

    def record(name):
        def callback(it, theta, chunk_losses, state):
            losses.setdefault(name, []).extend(chunk_losses.tolist())
        return callback

    theta1, state1 = train(get_backend("numba"), opt=ADAM_CARRY, callback=record("one"))
    theta2, state2 = train(distributed_backend(client), opt=ADAM_CARRY, callback=record("cluster"))
    assert np.array_equal(theta1, theta2)
    assert np.array_equal(state1.m, state2.m) and np.array_equal(state1.v, state2.v) and state1.t == state2.t
    assert losses["one"] == losses["cluster"]


def test_train_chunk_with_arrays_equals_the_numba_backend(client):
    X, Y, plans = sampler(5, np.float64)(0)
    theta = init_params(SPEC, np.random.default_rng(1), np.float64)
    eps = np.array([0.3, 0.2, 0.1, 0.05])
    want = get_backend("numba").train_chunk(SPEC, theta, X, Y, plans, eps, SGD, task_block=2)
    got = distributed_backend(client).train_chunk(SPEC, theta, X, Y, plans, eps, SGD, task_block=2)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_sine_command_on_a_cluster_writes_the_single_process_checkpoint(client, tmp_path, capsys):
    flags = ["sine", "--iters", "12", "--meta-batch", "5", "--task-block", "2", "--eval-tasks", "4", "--no-plot",
             "--quiet", "--checkpoint-every", "0"]
    assert main([*flags, "--out", str(tmp_path / "one")]) == 0
    assert main([*flags, "--out", str(tmp_path / "cluster"), "--scheduler", client.scheduler.address]) == 0
    one, cluster = (np.load(tmp_path / d / "checkpoint.npz") for d in ("one", "cluster"))
    assert np.array_equal(one["theta"], cluster["theta"])


@pytest.mark.parametrize("args, needle", [
    (["--meta-batch", "1", "--workers", "2"], "--meta-batch N > 1"),
    (["--meta-batch", "4", "--workers", "2", "--backend", "numpy"], "numba backend"),
    (["--meta-batch", "4", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    (["--meta-batch", "4", "--scheduler", "nonsense://nowhere"], "cannot connect"),
])
def test_cluster_flag_errors_are_one_line_and_exit_2(tmp_path, capsys, args, needle):
    assert main(["sine", "--iters", "3", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


PROBE = """
def probe():
    import hashlib
    import numpy as np
    from minireptile import InnerOptimizer, MLPSpec, get_backend, init_params
    from minireptile.backends import numba_cpu, numba_kernels
    spec = MLPSpec((1, 8, 1), "tanh", "mse")
    theta = init_params(spec, np.random.default_rng(0), np.float64)
    X = np.linspace(-1, 1, 12).reshape(1, 1, 12, 1)
    plans = (np.arange(12) % 12).reshape(1, 1, 3, 4)
    theta, _, _ = get_backend("numba").train_chunk(spec, theta, X, np.sin(X), plans, np.array([0.5]),
                                                   InnerOptimizer("sgd", 0.1))
    stats = numba_kernels.chunk_kernel(*numba_cpu._codes(spec, InnerOptimizer("sgd", 0.1))[:3]).stats
    return sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), hashlib.sha256(theta.tobytes()).hexdigest()
"""


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_fresh_workers_compiling_at_once_leave_a_cache_later_processes_load(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "NUMBA_NUM_THREADS": "1"}

    def compile_on_worker():  # nested: cloudpickle sends it by value
        namespace = {}
        exec(PROBE, namespace)
        return namespace["probe"]()

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       env=env, silence_logs=40)
    with cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2)
        # two fresh workers compile the kernel into the same empty cache at the same moment
        workers = list(c.scheduler_info()["workers"])
        compiled = c.gather([c.submit(compile_on_worker, pure=False, workers=[w]) for w in workers])
    assert all(misses >= 1 for _, misses, _ in compiled)  # both compiled (nothing was cached yet)
    assert compiled[0][2] == compiled[1][2]
    code = PROBE + "\nprint(*probe())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    hits, misses, digest = out.stdout.split()
    assert int(hits) >= 1 and int(misses) == 0  # a later process loads what the workers wrote
    assert digest == compiled[0][2]


def test_a_worker_killed_mid_training_changes_no_bit(client):
    want, _ = train(get_backend("numba"), iters=60, meta_batch=8, task_block=1)
    pids = list(client.run(os.getpid).values())
    killed = threading.Event()

    def kill_soon(it, theta, losses, state):
        if it == 5 and not killed.is_set():  # kill while the next iterations' blocks are in flight
            threading.Timer(0.02, os.kill, (pids[0], signal.SIGKILL)).start()
            killed.set()

    got, _ = train(distributed_backend(client), iters=60, meta_batch=8, task_block=1, callback=kill_soon,
                   chunk_iters=1)
    assert killed.is_set()
    assert np.array_equal(got, want)
    assert pids[0] not in client.run(os.getpid).values()  # (the module's last test: the nanny may restart it later)

"""``minireptile info``: every fact a bug report needs, honest where a fact cannot be known."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from minireptile import InnerOptimizer, MLPSpec, get_backend
from minireptile.backends import numba_cpu, numba_threads
from minireptile.cli import main


def test_info_prints_versions_cpu_kernels_threads_cache_extras_and_cuda(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("versions: minireptile", "numpy", "numba", "llvmlite", "BLAS:", "CPU:", "kernels:", "tile",
                 "threads:", "numba cache:", "extras:", "CUDA GPU:"):
        assert word in out, word


def test_info_json_holds_the_same_facts(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"versions", "blas", "cpu", "threads", "numba_cache", "extras", "cuda"}
    assert info["versions"]["numpy"] == np.__version__
    k = info["cpu"]["kernels"]
    assert k["isa"] in ("avx512", "avx2", "sse", "neon", "vec16") and len(k["tile"]) == 2
    assert k["vector_bytes"] in (16, 32, 64)
    assert 1 <= info["threads"]["would_use"] <= info["threads"]["requested"]
    assert all(isinstance(v, bool) for v in info["extras"].values())


def test_info_lists_a_compiled_kernel_specialisation_for_this_cpu():
    get_backend("numba").warmup(MLPSpec((1, 8, 1)), np.float64, InnerOptimizer("sgd", 0.1))
    cache = numba_cpu.cached_kernels()
    assert os.path.isdir(cache["folder"])
    from minireptile.backends.isa import numba_target

    assert {"activation": "tanh", "loss": "mse", "optimizer": "sgd", "dtype": "float64",
            "cpu": numba_target()[0]} in cache["kernels"]


def _loadavg(text):
    def read():
        if text is None:
            raise OSError("no /proc/loadavg")
        return text
    return read


def test_threads_without_proc_loadavg_say_every_cpu_counts_as_free(monkeypatch):
    monkeypatch.setattr(numba_threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(numba_threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(numba_threads.numba, "get_num_threads", lambda: 2)
    got = numba_threads.threads_report(read=_loadavg(None))
    assert got["runnable"] is None and "unreadable" in got["load_source"] and got["would_use"] == 2


def test_threads_in_a_container_say_the_machine_wide_count_is_not_used(monkeypatch):
    monkeypatch.setattr(numba_threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(numba_threads.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(numba_threads.numba, "get_num_threads", lambda: 2)
    got = numba_threads.threads_report(read=_loadavg("40.0 40.0 40.0 50/900 1"))
    assert "CPU set of 2" in got["load_source"] and got["runnable"] is None and got["would_use"] == 2


def test_threads_on_a_busy_machine_say_a_call_would_run_one(monkeypatch):
    monkeypatch.setattr(numba_threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(numba_threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(numba_threads.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(numba_threads, "_LOAD_READ_GAP_S", 0.0)
    got = numba_threads.threads_report(read=_loadavg("3.0 3.0 3.0 3/120 1"))
    assert got["runnable"] == 3 and got["would_use"] == 1


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="haswell is an x86 CPU")
def test_info_names_the_instruction_set_numba_is_told_to_compile_for():
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    proc = subprocess.run([sys.executable, "-m", "minireptile", "info", "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cpu = json.loads(proc.stdout)["cpu"]
    assert cpu["numba_cpu_name"] == "haswell" and cpu["numba_cpu_features_set"]
    assert cpu["kernels"]["isa"] == "avx2" and cpu["kernels"]["tile"] == [6, 2]

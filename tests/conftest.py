"""Shared test configuration: the hypothesis 'ci' profile (no deadline: JIT compiles are slow)."""

import os

# CUDA: tests/backends/test_cuda.py runs in numba's CUDA simulator unless MINIREPTILE_TEST_GPU=1 (then
# on the GPU). numba.cuda reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so it is set
# here, before pytest imports any test module (minireptile itself never imports numba.cuda).
if os.environ.get("MINIREPTILE_TEST_GPU") == "1":
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
else:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# 'ci' (default): derandomized, so CI sees the same examples on every run and cannot flake;
# 'thorough' (HYPOTHESIS_PROFILE=thorough): random and many more examples, for exploring.
settings.register_profile(
    "ci", deadline=None, max_examples=25, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def client():
    """A local Dask cluster of 2 single-threaded worker processes, one per test module that asks for it."""
    pytest.importorskip("distributed")
    from minireptile.backends.distributed import local_client

    c = local_client(2)
    c.wait_for_workers(2)
    yield c
    c.close()
    c.cluster.close()


@pytest.fixture
def own_signals():
    """Restore this process's stop-signal handlers after a test that signals itself."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)

"""The Python API under bad input: a documented exception naming the argument, never a silent
wrong result, a MemoryError or a Python type error from deep inside."""

import numpy as np
import pytest

from minireptile import Reptile, get_preset, sample_sine_tasks, sine_eval_tasks, stream_rng
from minireptile.checkpoint import load_checkpoint, save_checkpoint
from minireptile.errors import CheckpointError, DivergenceError

rng = np.random.default_rng


def tiny(**kw):
    return Reptile((1, 8, 1), backend="numpy", dtype="float64", **kw)


def test_adapt_that_blows_up_raises_divergence_instead_of_returning_nan():
    x = np.linspace(-5, 5, 10)[:, None]
    with pytest.raises(DivergenceError, match="adapt: .*smaller inner_lr"):
        tiny(inner_lr=1e6).adapt(x, 100 * np.sin(x), steps=50)
    assert np.isfinite(tiny().adapt(x, np.sin(x), steps=3)).all()


def test_evaluate_refuses_more_tasks_than_given_and_bad_steps():
    X = rng(0).normal(size=(20, 10, 1))
    Y = np.sin(X)
    model = tiny()
    with pytest.raises(ValueError, match=r"^n_tasks: expected at most 20 \(the tasks given\), got 50"):
        model.evaluate((X, Y), n_tasks=50)
    assert model.evaluate((X, Y), n_tasks=None, steps=(0, 1)).losses.shape == (20, 2)
    with pytest.raises(ValueError, match=r"^n_tasks: None \(every task\) needs tasks given as arrays"):
        model.evaluate("gist", n_tasks=None)
    with pytest.raises(ValueError, match=r"^steps: expected a sequence"):
        model.evaluate("gist", steps=3, n_tasks=2)


def test_sine_task_samplers_refuse_empty_sizes():
    preset = get_preset("gist")
    with pytest.raises(ValueError, match=r"^batch: expected an integer >= 1, got 0"):
        sample_sine_tasks(rng(0), 2, preset, 3, 0)
    with pytest.raises(ValueError, match=r"^n_tasks: expected an integer >= 1, got 0"):
        sine_eval_tasks(stream_rng(1, 2), 0, preset)
    assert sample_sine_tasks(rng(0), 2, preset, 3, 4)[2].shape == (2, 3, 4)


def test_load_checks_thetas_shape_before_building_a_huge_model(tmp_path):
    model = tiny()
    model.save(tmp_path / "m.npz")
    ck = load_checkpoint(tmp_path / "m.npz")
    cfg = ck["config"]
    cfg["model"]["sizes"] = [1, 30000, 30000, 1]     # 900 million parameters, if it were built
    save_checkpoint(tmp_path / "bad.npz", ck["theta"], cfg, 1)
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"is corrupted: theta float64 \(\d+,\) does not fit the model "
                                                  r"\(1, 30000, 30000, 1\)"):
            Reptile.load(tmp_path / "bad.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**26   # nothing of the model's size (6.7 GiB) was allocated


def test_a_negative_adam_second_moment_is_refused_at_load(tmp_path):
    from minireptile.optim import AdamState

    theta = np.zeros(4)
    save_checkpoint(tmp_path / "c.npz", theta, {}, 1, AdamState(np.zeros(4), -np.ones(4), 1), status="running")
    with pytest.raises(CheckpointError, match="adam_v holds negative values"):
        load_checkpoint(tmp_path / "c.npz")


@pytest.mark.parametrize("call,name", [
    (lambda: Reptile((1, 10**6, 10**6, 1)), "layers"),
    (lambda: tiny().fit("gist", iters=10**12), "iters"),
    (lambda: tiny(meta_batch=10**12).fit("gist", 1), "meta_batch"),
    (lambda: tiny(inner_steps=10**12).fit("gist", 1), "inner_steps"),
    (lambda: tiny().adapt(np.zeros((3, 1)), np.zeros((3, 1)), steps=10**12), "steps"),
    (lambda: tiny().evaluate("gist", n_tasks=10**12), "n_tasks"),
])
def test_sizes_that_cannot_fit_in_memory_are_a_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: too large: its arrays would need about [\d,.]+ GiB"):
        call()


def test_episode_labels_may_be_any_integers_and_never_size_an_allocation():
    from minireptile.tasks.episodes import class_table
    from minireptile.tasks.sources import EpisodeTasks

    v = rng(0).normal(size=(40, 3))
    labels = np.repeat(np.arange(8), 5)
    tasks = EpisodeTasks(v, labels * 10**15 - 3, ways=2, shots=1, queries=1)
    np.testing.assert_array_equal(tasks.labels, labels)
    with pytest.raises(ValueError, match="without gaps; id 1 is unused"):
        class_table(labels * 10**15)

"""minireptile.Reptile: the same θ as the CLI, every task source, adapt/predict/evaluate, save/load, errors."""

import numpy as np
import pytest

from minireptile import ArrayTasks, EpisodeTasks, Reptile, SamplerTasks, SineTasks
from minireptile.checkpoint import load_checkpoint
from minireptile.cli import main
from minireptile.errors import CheckpointError
from minireptile.evaluation import evaluate_sine
from minireptile.optim import InnerOptimizer
from minireptile.backends import get_backend
from minireptile.tasks import EVAL, get_preset, sine_eval_tasks, stream_rng


@pytest.mark.parametrize("backend, extra", [("numba", []), ("numpy", ["--meta-batch", "3", "--dtype", "float64"])])
def test_fit_gives_the_cli_theta_bitwise(tmp_path, backend, extra):
    main(["sine", "--iters", "30", "--eval-tasks", "4", "--no-plot", "--quiet", "--seed", "5", "--backend", backend,
          "--out", str(tmp_path), "--checkpoint-every", "7", *extra])
    cli_theta = load_checkpoint(tmp_path / "checkpoint.npz")["theta"]
    kw = {"meta_batch": 3, "dtype": "float64"} if extra else {}
    model = Reptile.from_preset("gist", seed=5, backend=backend, **kw)
    history = model.fit("gist", iters=30)
    assert model.theta.dtype == cli_theta.dtype
    assert np.array_equal(model.theta, cli_theta)
    assert history.shape == (30,) and np.isfinite(history).all()
    again = Reptile.from_preset("gist", seed=5, backend=backend, **kw)
    again.fit("gist", iters=30)
    assert np.array_equal(again.theta, model.theta)


def test_evaluate_matches_the_cli_evaluation():
    model = Reptile.from_preset("gist", seed=2, backend="numpy", dtype="float64")
    model.fit("gist", iters=10)
    preset = get_preset("gist")
    tasks = sine_eval_tasks(stream_rng(2, EVAL), 300, preset, np.float64)
    ref = evaluate_sine(model.spec, model.theta, tasks, InnerOptimizer("sgd", 0.02), get_backend("numpy"))
    ev = model.evaluate("gist", n_tasks=300)   # two chunks: 250 + 50
    assert ev.steps == ref.steps
    assert np.array_equal(ev.losses, ref.losses) and np.array_equal(ev.mean, ref.mean)
    assert "steps" in str(ev)


def test_maml_paper_preset_reports_1_5_10_steps():
    assert SineTasks("maml-paper").eval_steps == (0, 1, 5, 10)


def test_adapt_and_predict_fit_one_task():
    model = Reptile.from_preset("gist", backend="numpy", seed=0)
    model.fit("gist", iters=200)
    x = np.linspace(-5, 5, 50)[:, None]
    y = 2.0 * np.sin(x + 1.0)
    shots = slice(None, None, 5)
    before = np.mean((model.predict(x) - y) ** 2)
    phi = model.adapt(x[shots], y[shots], steps=32)
    after = np.mean((model.predict(x, params=phi) - y) ** 2)
    assert phi.shape == model.theta.shape and after < 0.5 * before
    assert np.array_equal(model.adapt(x, y, steps=0), model.theta)


def _line_tasks(rng, n_tasks=40, n_points=12):
    slope = rng.uniform(-2, 2, size=(n_tasks, 1, 1))
    X = rng.uniform(-1, 1, size=(n_tasks, n_points, 1))
    return X, slope * X


def test_array_tasks_meta_learn_better_than_random_init():
    X, Y = _line_tasks(np.random.default_rng(0))
    model = Reptile((1, 16, 1), backend="numpy", inner_lr=0.05, eps0=0.5)
    model.fit((X, Y), iters=150)
    held = ArrayTasks(*_line_tasks(np.random.default_rng(1)), shots=4)
    meta = model.evaluate(held, steps=(0, 5), n_tasks=None)
    rand = model.evaluate(held, steps=(0, 5), n_tasks=None, params=model.theta0)
    assert meta.losses.shape == (40, 2)
    assert meta.mean[1] < rand.mean[1]


def test_sampler_tasks_are_fixed_by_the_seed():
    def sample(rng):
        x = rng.uniform(-5, 5, size=(10, 1))
        return x, rng.uniform(0.5, 2) * np.sin(x)

    a = Reptile((1, 8, 1), backend="numpy", seed=3)
    b = Reptile((1, 8, 1), backend="numpy", seed=3)
    ha, hb = a.fit(sample, iters=5), b.fit(SamplerTasks(sample), iters=5)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(ha, hb)
    assert a.evaluate(sample, steps=(0, 1), n_tasks=4).losses.shape == (4, 2)


def test_episode_tasks_classify():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, 6)) * 3
    labels = np.repeat(np.arange(12), 8)
    vectors = centers[labels] + rng.normal(size=(96, 6)) * 0.3
    src = EpisodeTasks(vectors, labels, ways=3, shots=2, queries=3)
    model = Reptile((6, 16, 3), loss="ce", backend="numpy", inner_lr=0.1)
    model.fit(src, iters=20)
    ev = model.evaluate(src, steps=(0, 5), n_tasks=10)
    assert ev.accuracy.shape == (10, 2) and ev.accuracy_mean[1] > 0.5


def test_save_and_load_round_trip(tmp_path):
    model = Reptile.from_preset("gist", backend="numpy", seed=4)
    model.fit("gist", iters=5)
    model.save(tmp_path / "m.npz")
    back = Reptile.load(tmp_path / "m.npz")
    assert np.array_equal(back.theta, model.theta) and back.seed == 4 and back.spec == model.spec
    assert back.iterations == 5
    main(["sine", "--iters", "3", "--eval-tasks", "2", "--no-plot", "--quiet", "--backend", "numpy",
          "--out", str(tmp_path / "cli")])
    cli = Reptile.load(tmp_path / "cli" / "checkpoint.npz")
    assert cli.iterations == 3 and cli.spec.sizes == (1, 64, 64, 1)
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.npz"):
        Reptile.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("tasks, match", [
    ((np.zeros((4, 10)), np.zeros((4, 10, 1))), r"X: expected shape \(n_tasks, n_points, d_in\)"),
    ((np.zeros((4, 10, 1)), np.zeros((4, 10))), r"Y: expected float targets of shape \(n_tasks=4, n_points=10, d_out\)"),
    ((np.zeros((4, 10, 1)), np.zeros((4, 9, 1))), r"Y: expected shape \(n_tasks=4, n_points=10, d_out\)"),
    (lambda rng: np.zeros(10), r"sample\(rng\): expected a tuple \(X, Y\)"),
    ("nosuch", r"tasks: expected a sine preset"),
    (42, r"tasks: expected a preset or family name"),
])
def test_bad_tasks_say_the_expected_shape(tasks, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Reptile((1, 4, 1), backend="numpy").fit(tasks, iters=2)


def test_mismatched_model_and_tasks_are_named():
    with pytest.raises(ValueError, match="loss='mse'"):
        Reptile((1, 4, 3), backend="numpy").fit((np.zeros((3, 4, 1)), np.zeros((3, 4), dtype=int) + [0, 1, 2, 1]), 2)
    with pytest.raises(ValueError, match="d_in=2"):
        Reptile((1, 4, 1), backend="numpy").fit((np.zeros((3, 4, 2)), np.zeros((3, 4, 1))), 2)
    with pytest.raises(ValueError, match="inner_steps"):
        Reptile((1, 4, 1), inner_steps=0)


def test_torchmeta_families_train_and_evaluate():
    from minireptile import FamilyTasks

    model = Reptile((1, 8, 1), backend="numpy", seed=0)
    history = model.fit("sinusoid", iters=5)
    assert np.isfinite(history).all()
    ev = model.evaluate(FamilyTasks("harmonic", noise_std=0.1, shots=5, n_eval=7), steps=(0, 2), n_tasks=3)
    assert ev.losses.shape == (3, 2) and np.isfinite(ev.mean).all()


def test_your_own_tasks_need_points_left_to_score():
    X = np.zeros((3, 4, 1))
    assert ArrayTasks(X, np.zeros((3, 4, 1))).shots == 2                      # default: half the points
    with pytest.raises(ValueError, match=r"shots: expected fewer than the n_points=4 points of a task .*got 4"):
        ArrayTasks(X, np.zeros((3, 4, 1)), shots=4)
    with pytest.raises(ValueError, match=r"shots: expected fewer than the n_points=6 points"):
        SamplerTasks(lambda rng: (np.zeros((6, 1)), np.zeros((6, 1))), shots=6)
    with pytest.raises(ValueError, match=r"shots: expected an integer >= 1, got 0"):
        ArrayTasks(X, np.zeros((3, 4, 1)), shots=0)


@pytest.mark.parametrize("preset, backend, kw, extra", [
    ("gist", "numba", {"meta_batch": 20, "dtype": "float64"}, ["--meta-batch", "20", "--dtype", "float64"]),
    ("maml-paper", "numba", {}, ["--preset", "maml-paper"]),   # meta-batch 25: two blocks of 13 and 12 tasks
])
def test_fit_equals_the_cli_above_meta_batch_16(tmp_path, preset, backend, kw, extra):
    main(["sine", "--iters", "4", "--eval-tasks", "2", "--no-plot", "--quiet", "--seed", "3", "--backend", backend,
          "--out", str(tmp_path), *extra])
    ck = load_checkpoint(tmp_path / "checkpoint.npz")
    model = Reptile.from_preset(preset, seed=3, backend=backend, **kw)
    assert model.config(4).task_block == ck["config"]["reptile"]["task_block"] == 2
    model.fit(preset, iters=4)
    assert np.array_equal(model.theta, ck["theta"])
    one_block = Reptile.from_preset(preset, seed=3, backend=backend, task_block=100, **kw)
    one_block.fit(preset, iters=4)
    assert not np.array_equal(one_block.theta, ck["theta"])   # the block size is part of the result


def test_save_and_load_keep_the_task_block(tmp_path):
    model = Reptile((1, 8, 1), backend="numpy", meta_batch=6, task_block=4)
    model.save(tmp_path / "m.npz")
    assert Reptile.load(tmp_path / "m.npz").config(1).task_block == 4
    assert Reptile((1, 8, 1), meta_batch=40).config(1).task_block == 3


@pytest.mark.parametrize("kw, message", [({"inner_lr": -1}, "inner_lr: expected a finite number > 0, got -1"),
                                         ({"adam_state": "keep"}, "adam_state: expected one of"),
                                         ({"task_block": 0}, "task_block: expected an integer >= 1")])
def test_constructor_errors_name_the_argument(kw, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        Reptile((1, 8, 1), **kw)


def test_the_adaptation_step_size_can_be_set_apart_from_training():
    model = Reptile((1, 8, 1), backend="numpy", seed=0, inner_lr=0.02, dtype="float64")
    x = np.linspace(-1, 1, 6)[:, None]
    y = np.sin(x)
    assert np.array_equal(model.adapt(x, y, steps=3, lr=0.02), model.adapt(x, y, steps=3))
    small, large = model.adapt(x, y, steps=1, lr=0.001), model.adapt(x, y, steps=1, lr=0.1)
    np.testing.assert_allclose(large - model.theta, 100 * (small - model.theta), rtol=1e-9, atol=1e-12)  # one SGD step
    ev = model.evaluate("gist", n_tasks=4, lr=0.02)
    assert np.array_equal(ev.losses, model.evaluate("gist", n_tasks=4).losses)
    assert not np.array_equal(model.evaluate("gist", n_tasks=4, lr=0.05).losses, ev.losses)
    with pytest.raises(ValueError, match="^lr: expected a finite number > 0, got -1"):
        model.adapt(x, y, lr=-1)

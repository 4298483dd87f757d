"""Regression task families and plans (minireptile.tasks.families)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minireptile.algorithms.maml import gather
from minireptile.tasks.families import FAMILIES, TaskFamily, family_block, family_eval_tasks, tail_plan


# ---------------------------------------------------------------------------------------------
# task families and plans
# ---------------------------------------------------------------------------------------------
@given(st.integers(1, 6), st.integers(2, 30), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_tail_plan_keeps_the_last_minibatch_disjoint(n_tasks, n_points, steps, seed):
    batch = max(1, n_points // 3)
    plan = tail_plan(np.random.default_rng(seed), n_tasks, n_points, steps, batch)
    assert plan.shape == (n_tasks, steps, batch) and plan.dtype == np.int64
    assert plan.min() >= 0 and plan.max() < n_points
    for i in range(n_tasks):
        tail = set(plan[i, -1].tolist())
        assert len(tail) == batch
        assert not tail & set(plan[i, :-1].ravel().tolist())


def test_tail_plan_rejects_a_tail_that_leaves_no_points():
    with pytest.raises(ValueError, match="n_points"):
        tail_plan(np.random.default_rng(0), 2, 5, 3, 5)


@pytest.mark.parametrize("name", FAMILIES)
def test_families_draw_their_documented_distributions(name):
    rng = np.random.default_rng(0)
    family = TaskFamily(name)
    X, Y = family.sample(rng, 400, 20)
    assert X.shape == Y.shape == (400, 20, 1) and X.dtype == np.float64
    if name == "harmonic":
        centres = X[..., 0].mean(axis=1)
        assert -5 < centres.min() < -3 and 3 < centres.max() < 5    # x ~ N(μ, 1), μ ~ U[-4, 4]
    else:
        assert X.min() >= -5 and X.max() <= 5
    if name == "sinusoid-and-line":
        # lines have constant slope: second differences of sorted points vanish
        order = np.argsort(X[..., 0], axis=1)
        xs, ys = np.take_along_axis(X[..., 0], order, 1), np.take_along_axis(Y[..., 0], order, 1)
        slopes = np.diff(ys, axis=1) / np.diff(xs, axis=1)
        is_line = np.ptp(slopes, axis=1) < 1e-6
        assert is_line.sum() == 200                                 # exactly half, as torchmeta
        assert np.abs(slopes[is_line, 0]).max() <= 3
    if name in ("sinusoid", "maml-paper", "reptile-paper"):
        assert np.abs(Y).max() <= 5


def _values_near_x(family_name, seed, lo=0.0, hi=1.0):
    X, Y = TaskFamily(family_name).sample(np.random.default_rng(seed), 3000, 20)
    near = (X > lo) & (X < hi)
    return Y[near]


def test_maml_presets_have_torchmetas_and_cbfinns_sinusoid_distribution():
    """A·sin(x + b), b ~ U[−π, 0] is A·sin(x − φ), φ ~ U[0, π]: same law of y at every x."""
    from scipy import stats
    for lo in (-4.0, 0.0, 2.0):
        ours, theirs = _values_near_x("maml-paper", 0, lo, lo + 1), _values_near_x("sinusoid", 1, lo, lo + 1)
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    # the 'maml' preset draws the same law; its mirror image sin(x + b), b ~ U[0, π], does not, and the test can tell
    assert stats.ks_2samp(_values_near_x("maml", 0), _values_near_x("sinusoid", 1)).pvalue > 1e-3
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 1.0, 20000)
    mirror = rng.uniform(0.1, 5.0, x.size) * np.sin(x + rng.uniform(0.0, np.pi, x.size))
    assert stats.ks_2samp(mirror, _values_near_x("sinusoid", 1)).pvalue < 1e-6


def test_noise_std_adds_gaussian_noise_of_that_size():
    clean = TaskFamily("sinusoid").sample(np.random.default_rng(0), 200, 50)
    noisy = TaskFamily("sinusoid", noise_std=0.3).sample(np.random.default_rng(0), 200, 50)
    np.testing.assert_array_equal(clean[0], noisy[0])
    assert np.std(noisy[1] - clean[1]) == pytest.approx(0.3, rel=0.05)
    with pytest.raises(ValueError, match="noise_std"):
        TaskFamily("sinusoid", noise_std=-1.0)
    with pytest.raises(ValueError, match="family"):
        TaskFamily("cosine")


def test_eval_tasks_are_fixed_by_the_seed_and_nested_in_shots():
    family = TaskFamily("maml-paper")
    a = family_eval_tasks(family, 3, 10, 10, 5)
    b = family_eval_tasks(family, 3, 10, 10, 5)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert a[0].shape == (10, 10, 1) and a[2].shape == (10, 5, 1)
    Xt, _ = family_block(family, 3, 0, 2, 5, 15)
    assert not np.isin(Xt, a[0]).any()         # training and evaluation streams differ
    np.testing.assert_array_equal(gather(a[0], np.zeros((10, 1), dtype=np.int64)), a[0][:, :1])

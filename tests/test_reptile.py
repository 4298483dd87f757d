"""Reptile invariants: the outer update, serial vs batched, task order, the k = 1 identity."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minireptile import (InnerOptimizer, MLPSpec, ReptileConfig, epsilon_schedule, get_backend, init_params,
                         inner_loop, loss_and_grad, meta_train, reptile_update)
from minireptile.reptile import train_chunk_generic

from helpers import mlp_problems

NUMPY = get_backend("numpy")


def meta_batch(problem, n_tasks, steps, batch):
    """Tasks for one outer step: n_tasks copies of the problem's shapes with fresh data."""
    spec, theta, X, Y, rng = problem
    n_points = max(X.shape[0], batch)
    Xs = rng.normal(size=(n_tasks, n_points, spec.d_in))
    if spec.loss == "ce":
        Ys = rng.integers(0, spec.d_out, size=(n_tasks, n_points))
    else:
        Ys = rng.normal(size=(n_tasks, n_points, spec.d_out))
    plan = rng.integers(0, n_points, size=(n_tasks, steps, batch))
    return spec, theta, Xs, Ys, plan


@given(st.integers(1, 6), st.integers(1, 50), st.integers(0, 2**32 - 1))
def test_update_endpoints(n_tasks, P, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=P)
    phi = rng.normal(size=(n_tasks, P))
    np.testing.assert_array_equal(reptile_update(theta, phi, 0.0), theta)          # ε = 0: unchanged
    np.testing.assert_allclose(reptile_update(theta, phi, 1.0), phi.mean(axis=0), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(reptile_update(theta, phi, 0.3), 0.7 * theta + 0.3 * phi.mean(axis=0),
                               rtol=1e-13, atol=1e-14)
    assert reptile_update(theta.astype(np.float32), phi.astype(np.float32), 0.3).dtype == np.float32


def test_epsilon_schedule_is_linear_from_eps0_to_eps_final():
    eps = epsilon_schedule(np.arange(5), 5, 0.1, 0.0)
    np.testing.assert_allclose(eps, [0.1, 0.08, 0.06, 0.04, 0.02])
    assert epsilon_schedule(0, 10, 0.5, 0.1) == pytest.approx(0.5)
    assert epsilon_schedule(10, 10, 0.5, 0.1) == pytest.approx(0.1)


@given(mlp_problems(), st.integers(1, 5), st.integers(1, 3), st.sampled_from(["sgd", "adam"]))
def test_eps_zero_leaves_theta_unchanged_through_a_whole_chunk(problem, n_tasks, steps, name):
    spec, theta, X, Y, plan = meta_batch(problem, n_tasks, steps, 3)
    out, losses, _ = train_chunk_generic(inner_loop, spec, theta, X[None], Y[None], plan[None], np.zeros(1),
                                         InnerOptimizer(name, 0.1))
    np.testing.assert_array_equal(out, theta)
    assert np.isfinite(losses).all()


@given(mlp_problems(), st.integers(1, 5), st.integers(1, 3))
def test_eps_one_gives_the_mean_of_adapted_parameters(problem, n_tasks, steps):
    spec, theta, X, Y, plan = meta_batch(problem, n_tasks, steps, 3)
    opt = InnerOptimizer("sgd", 0.1)
    out, _, _ = train_chunk_generic(inner_loop, spec, theta, X[None], Y[None], plan[None], np.ones(1), opt)
    phi = inner_loop(spec, theta, X, Y, plan, opt).phi
    np.testing.assert_allclose(out, phi.mean(axis=0), rtol=1e-13, atol=1e-14)


@given(mlp_problems(), st.integers(1, 4), st.integers(1, 3), st.sampled_from(["sgd", "adam"]))
def test_batched_with_one_task_equals_serial_reptile(problem, iters, steps, name):
    """meta_train with meta-batch 1 = the paper's serial loop written out by hand."""
    spec, theta, X, Y, plan = meta_batch(problem, iters, steps, 2)
    opt = InnerOptimizer(name, 0.05)
    cfg = ReptileConfig(iters=iters, meta_batch=1, eps0=0.5, eps_final=0.1, inner=opt, inner_steps=steps,
                        inner_batch=2)
    blocks = (X[:, None], Y[:, None], plan[:, None])            # (iters, 1, ...)
    batched, _ = meta_train(spec, theta, lambda b: blocks, iters, cfg, NUMPY)
    serial = theta.copy()
    for t in range(iters):                                       # serial Reptile, as in the paper
        phi = inner_loop(spec, serial, X[t:t + 1], Y[t:t + 1], plan[t:t + 1], opt).phi[0]
        eps = 0.5 + (0.1 - 0.5) * t / iters
        serial = serial + eps * (phi - serial)
    np.testing.assert_allclose(batched, serial, rtol=1e-12, atol=1e-14)


@given(mlp_problems(), st.integers(2, 6), st.integers(1, 3), st.randoms(use_true_random=False))
def test_update_is_invariant_to_task_order(problem, n_tasks, steps, random):
    spec, theta, X, Y, plan = meta_batch(problem, n_tasks, steps, 3)
    opt = InnerOptimizer("sgd", 0.1)
    order = list(range(n_tasks))
    random.shuffle(order)
    a = reptile_update(theta, inner_loop(spec, theta, X, Y, plan, opt).phi, 0.7)
    b = reptile_update(theta, inner_loop(spec, theta, X[order], Y[order], plan[order], opt).phi, 0.7)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@given(mlp_problems(), st.integers(1, 5))
def test_tasks_of_a_meta_batch_adapt_independently(problem, n_tasks):
    spec, theta, X, Y, plan = meta_batch(problem, n_tasks, 2, 3)
    opt = InnerOptimizer("adam", 0.05)
    together = inner_loop(spec, theta, X, Y, plan, opt)
    for i in range(n_tasks):
        alone = inner_loop(spec, theta, X[i:i + 1], Y[i:i + 1], plan[i:i + 1], opt)
        np.testing.assert_array_equal(together.phi[i], alone.phi[0])


@given(mlp_problems(), st.integers(1, 5), st.floats(0.05, 1.0))
def test_one_inner_step_reptile_is_joint_training(problem, n_tasks, eps):
    """k = 1: θ + ε(mean φ − θ) = θ − ε·α·mean_i ∇L_i(θ) (the paper's joint-training identity)."""
    spec, theta, X, Y, plan = meta_batch(problem, n_tasks, 1, 3)
    alpha = 0.1
    new = reptile_update(theta, inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", alpha)).phi, eps)
    grads = [loss_and_grad(spec, theta, X[i, plan[i, 0]], Y[i, plan[i, 0]])[1] for i in range(n_tasks)]
    np.testing.assert_allclose(new, theta - eps * alpha * np.mean(grads, axis=0), rtol=1e-10, atol=1e-13)


def test_adam_carry_policy_threads_the_mean_state_between_outer_steps():
    spec = MLPSpec((1, 4, 1))
    rng = np.random.default_rng(0)
    theta = init_params(spec, rng)
    X = rng.normal(size=(3, 2, 5, 1))
    Y = rng.normal(size=(3, 2, 5, 1))
    plan = rng.integers(0, 5, size=(3, 2, 2, 3))
    carry = InnerOptimizer("adam", 0.01, state_policy="carry")
    reset = InnerOptimizer("adam", 0.01)
    eps = np.full(3, 0.5)
    _, _, state = train_chunk_generic(inner_loop, spec, theta, X, Y, plan, eps, carry)
    assert state.t == 3 * 2 and state.m.shape == (spec.n_params,)
    _, _, none = train_chunk_generic(inner_loop, spec, theta, X, Y, plan, eps, reset)
    assert none is None
    a, _, _ = train_chunk_generic(inner_loop, spec, theta, X, Y, plan, eps, carry)
    b, _, _ = train_chunk_generic(inner_loop, spec, theta, X, Y, plan, eps, reset)
    assert not np.allclose(a, b)  # the policy changes the result after the first outer step


def test_config_rejects_non_positive_counts_and_steps():
    with pytest.raises(ValueError, match="iters"):
        ReptileConfig(iters=0)
    with pytest.raises(ValueError, match="meta_batch"):
        ReptileConfig(meta_batch=-1)
    with pytest.raises(ValueError, match="eps0"):
        ReptileConfig(eps0=0.0)
    with pytest.raises(ValueError, match="eps_final"):
        ReptileConfig(eps_final=-0.1)


def test_sine_eval_tasks_use_distinct_grid_points_and_fixed_seed():
    from minireptile import get_preset, sine_eval_tasks, stream_rng
    preset = get_preset("gist")
    a = sine_eval_tasks(stream_rng(5, 2), 50, preset)
    b = sine_eval_tasks(stream_rng(5, 2), 50, preset)
    np.testing.assert_array_equal(a.x_shots, b.x_shots)
    grid = preset.grid()
    for x in a.x_shots[:, :, 0]:
        assert len(np.unique(x)) == preset.eval_shots and np.isin(x, grid).all()
    np.testing.assert_allclose(a.y_grid[:, :, 0], a.amp[:, None] * np.sin(grid + a.phase[:, None]))

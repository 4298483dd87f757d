"""MAML and FOMAML meta-gradients (minireptile.algorithms.maml) and the §6.2 gradient combinations."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minireptile import InnerOptimizer, MLPSpec, init_params, inner_loop, loss_and_grad, reptile_update
from minireptile.algorithms import maml as maml_module
from minireptile.algorithms.maml import (MAMLConfig, adam_outer_step, combination_direction, fomaml_gradient,
                                         inner_gradients, maml_gradient, meta_train_maml, parse_combination)
from minireptile.tasks.families import TaskFamily, family_block, family_eval_tasks, support_query_plan

from helpers import (central_differences, far_from_kinks, max_rel_error, mlp_problems, tasks_for,
                     unrolled_objective)


# ---------------------------------------------------------------------------------------------
# MAML
# ---------------------------------------------------------------------------------------------
@given(mlp_problems(max_hidden_layers=2, max_width=8), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([0.05, 0.1, 0.3]))
def test_maml_gradient_matches_finite_differences_of_the_unrolled_loop(problem, k, n_tasks, lr):
    spec, theta, X, Y, plan, query = tasks_for(problem, n_tasks, k, 3, 4)
    mg = maml_gradient(spec, theta, X, Y, plan, query, lr)
    phis = maml_module.adapt_trajectory(spec, theta, X, Y, plan, lr)
    assume(far_from_kinks(spec, phis, X))
    fd = central_differences(unrolled_objective(spec, X, Y, plan, query, lr), theta)
    assert mg.grad.shape == (n_tasks, spec.n_params)
    assert max_rel_error(mg.grad.mean(axis=0), fd) <= 1e-6
    np.testing.assert_allclose(mg.phi, phis[-1], rtol=0, atol=0)


def torch_maml_gradient(spec, theta, X, Y, plan, query, lr):
    """The same meta-gradient from torch autograd (double precision, create_graph through the loop)."""
    import torch
    import torch.nn.functional as F

    def net(p, x):
        a = x
        for i, (w_off, b_off) in enumerate(spec.offsets):
            fan_in, fan_out = spec.sizes[i], spec.sizes[i + 1]
            z = a @ p[w_off:b_off].view(fan_out, fan_in).T + p[b_off:b_off + fan_out]
            a = z if i == spec.n_layers - 1 else (torch.tanh(z) if spec.activation == "tanh" else torch.relu(z))
        return a

    def task_loss(p, x, y):
        out = net(p, torch.from_numpy(x))
        if spec.loss == "mse":
            return ((out - torch.from_numpy(y)) ** 2).mean()
        return F.cross_entropy(out, torch.from_numpy(np.asarray(y, dtype=np.int64)))

    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    total = 0
    for i in range(len(X)):
        phi = t
        for s in range(plan.shape[1]):
            idx = plan[i, s]
            (g,) = torch.autograd.grad(task_loss(phi, X[i, idx], Y[i, idx]), phi, create_graph=True)
            phi = phi - lr * g
        total = total + task_loss(phi, X[i, query[i]], Y[i, query[i]])
    (total / len(X)).backward()
    return t.grad.numpy()


@settings(max_examples=10)
@given(mlp_problems(max_hidden_layers=2, max_width=8), st.integers(1, 3), st.integers(1, 3))
def test_maml_gradient_matches_torch_autograd(problem, k, n_tasks):
    pytest.importorskip("torch")
    spec, theta, X, Y, plan, query = tasks_for(problem, n_tasks, k, 3, 4)
    ours = maml_gradient(spec, theta, X, Y, plan, query, 0.1).grad.mean(axis=0)
    theirs = torch_maml_gradient(spec, theta, X, Y, plan, query, 0.1)
    assert max_rel_error(ours, theirs) <= 1e-10


@settings(max_examples=3)
@given(mlp_problems(max_hidden_layers=2, max_width=8), st.integers(1, 3))
def test_maml_gradient_matches_jax_autograd(problem, k):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    spec, theta, X, Y, plan, query = tasks_for(problem, 1, k, 3, 4)

    def net(p, x):
        a = x
        for i, (w_off, b_off) in enumerate(spec.offsets):
            fan_in, fan_out = spec.sizes[i], spec.sizes[i + 1]
            z = a @ p[w_off:b_off].reshape(fan_out, fan_in).T + p[b_off:b_off + fan_out]
            a = z if i == spec.n_layers - 1 else (jnp.tanh(z) if spec.activation == "tanh" else jax.nn.relu(z))
        return a

    def task_loss(p, x, y):
        out = net(p, x)
        if spec.loss == "mse":
            return jnp.mean((out - y) ** 2)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))

    def objective(p):
        total = 0.0
        for i in range(len(X)):
            phi = p
            for s in range(k):
                phi = phi - 0.1 * jax.grad(task_loss)(phi, X[i, plan[i, s]], Y[i, plan[i, s]])
            total = total + task_loss(phi, X[i, query[i]], Y[i, query[i]])
        return total / len(X)

    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)           # float64 for this test only
    try:
        theirs = np.asarray(jax.jit(jax.grad(objective))(jnp.asarray(theta)))
    finally:
        jax.config.update("jax_enable_x64", previous)
    assert theirs.dtype == np.float64
    ours = maml_gradient(spec, theta, X, Y, plan, query, 0.1).grad.mean(axis=0)
    assert max_rel_error(ours, theirs) <= 1e-10


@given(mlp_problems(max_width=8), st.integers(0, 3), st.integers(1, 3))
def test_first_order_maml_is_maml_with_the_hessian_terms_removed(problem, k, n_tasks):
    spec, theta, X, Y, plan, query = tasks_for(problem, n_tasks, k, 3, 4)
    first = maml_gradient(spec, theta, X, Y, plan, query, 0.1, first_order=True)
    # the same backward recursion with every H·v replaced by 0
    real = maml_module.batched_loss_grad_hvp

    def no_hessian(spec_, theta_, X_, Y_, v=None, **kw):
        value, grad, hv = real(spec_, theta_, X_, Y_, v, **kw)
        return value, grad, None if hv is None else np.zeros_like(hv)
    maml_module.batched_loss_grad_hvp = no_hessian
    try:
        dropped = maml_gradient(spec, theta, X, Y, plan, query, 0.1)
    finally:
        maml_module.batched_loss_grad_hvp = real
    np.testing.assert_array_equal(first.grad, dropped.grad)
    # and it is the plain query gradient at the adapted parameters
    phi = inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", 0.1)).phi if k else np.tile(theta, (n_tasks, 1))
    for i in range(n_tasks):
        np.testing.assert_allclose(first.grad[i], loss_and_grad(spec, phi[i], X[i, query[i]], Y[i, query[i]])[1],
                                   rtol=1e-12, atol=1e-14)
    if k:  # the Hessian terms are not zero: exact MAML differs
        exact = maml_gradient(spec, theta, X, Y, plan, query, 0.1)
        assert not np.allclose(exact.grad, first.grad, rtol=1e-8, atol=0)


@given(mlp_problems(max_width=8), st.integers(1, 4), st.integers(1, 3))
def test_fomaml_is_supervised_reptiles_last_step(problem, k, n_tasks):
    """supervised-reptile's FOML update is φ_k − φ_k−1 = −α · (gradient on minibatch k at φ_k−1)."""
    spec, theta, X, Y, plan, _ = tasks_for(problem, n_tasks, k, 3, 1)
    lr = 0.1
    g = fomaml_gradient(spec, theta, X, Y, plan, lr).grad
    opt = InnerOptimizer("sgd", lr)
    before = inner_loop(spec, theta, X, Y, plan[:, :-1], opt).phi if k > 1 else np.tile(theta, (n_tasks, 1))
    after = inner_loop(spec, theta, X, Y, plan, opt).phi
    scale = np.abs(g).max()
    np.testing.assert_allclose((before - after) / lr, g, rtol=0, atol=1e-9 * max(scale, 1.0))


@given(mlp_problems(max_width=8), st.integers(1, 4), st.floats(0.05, 1.0))
def test_reptile_with_one_inner_step_is_joint_training(problem, n_tasks, eps):
    """k = 1: the Reptile update is θ − εα·mean_i ∇L_i(θ), i.e. SGD on the joint (mixed-task) loss."""
    spec, theta, X, Y, plan, _ = tasks_for(problem, n_tasks, 1, 3, 1)
    lr = 0.1
    reptile = reptile_update(theta, inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", lr)).phi, eps)
    joint = maml_gradient(spec, theta, X, Y, plan[:, :0], plan[:, 0], lr).grad.mean(axis=0)   # zero inner steps
    np.testing.assert_allclose(reptile, theta - eps * lr * joint, rtol=1e-10, atol=1e-13)
    G, _ = inner_gradients(spec, theta, X, Y, plan, lr)
    np.testing.assert_allclose(combination_direction(G, [1.0]), joint, rtol=1e-12, atol=1e-14)


def test_maml_with_the_numba_backend_equals_the_numpy_reference():
    from minireptile import get_backend
    try:
        numba_backend = get_backend("numba")
    except ImportError as exc:  # the numba backend module is part of the package; numba is a core dep
        pytest.fail(f"numba backend unavailable: {exc}")
    spec = MLPSpec((1, 8, 8, 1), "relu")
    rng = np.random.default_rng(0)
    theta = init_params(spec, rng)
    X, Y = TaskFamily("maml-paper").sample(rng, 3, 20)
    plan, query = support_query_plan(3, 10, 10, 2)
    a = maml_gradient(spec, theta, X, Y, plan, query, 0.01)
    b = maml_gradient(spec, theta, X, Y, plan, query, 0.01, backend=numba_backend)
    np.testing.assert_allclose(b.grad, a.grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.phi, a.phi, rtol=1e-12, atol=1e-14)


def test_meta_train_maml_raises_divergence_with_the_last_finite_theta():
    from minireptile.errors import DivergenceError
    spec = MLPSpec((1, 4, 1))
    theta0 = init_params(spec, np.random.default_rng(0))
    X, Y = family_block(TaskFamily("maml-paper"), 0, 0, 4, 2, 20)
    Y = Y * 1e200                                                  # gradients overflow
    plan, query = support_query_plan(2, 10, 10, 1)
    blocks = lambda b: (X, Y, np.broadcast_to(plan, (4,) + plan.shape), np.broadcast_to(query, (4,) + query.shape))  # noqa: E731,E501
    with np.errstate(all="ignore"), pytest.raises(DivergenceError, match="non-finite") as exc:
        meta_train_maml(spec, theta0, blocks, 4, MAMLConfig(iters=8, meta_batch=2))
    assert exc.value.iteration == 0 and np.array_equal(exc.value.theta, theta0)


def test_maml_argument_errors_name_the_argument():
    spec = MLPSpec((1, 4, 1))
    theta = init_params(spec, np.random.default_rng(0))
    X, Y = np.zeros((2, 5, 1)), np.zeros((2, 5, 1))
    plan = np.zeros((2, 1, 3), dtype=np.int64)
    query = np.zeros((2, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="plan"):
        maml_gradient(spec, theta, X, Y, plan[0], query, 0.1)
    with pytest.raises(TypeError, match="plan"):
        maml_gradient(spec, theta, X, Y, plan.astype(float), query, 0.1)
    with pytest.raises(ValueError, match="query"):
        maml_gradient(spec, theta, X, Y, plan, query[:1], 0.1)
    with pytest.raises(ValueError, match="theta"):
        maml_gradient(spec, theta[:-1], X, Y, plan, query, 0.1)
    with pytest.raises(TypeError, match="X: expected float32"):      # a lossy conversion (the lossless one is fine)
        maml_gradient(spec, theta.astype(np.float32), X, Y.astype(np.float32), plan, query, 0.1)
    with pytest.raises(ValueError, match="lr"):
        maml_gradient(spec, theta, X, Y, plan, query, 0.0)
    with pytest.raises(ValueError, match="plan"):
        fomaml_gradient(spec, theta, X, Y, plan[:, :0], 0.1)
    with pytest.raises(ValueError, match="meta_batch"):
        MAMLConfig(meta_batch=0)
    with pytest.raises(ValueError, match="lr"):
        MAMLConfig(outer_lr=-1.0)
    with pytest.raises(ValueError, match="beta1"):
        MAMLConfig(beta1=1.0)


def test_meta_train_maml_is_adam_on_the_mean_meta_gradient_and_learns():
    spec = MLPSpec((1, 16, 1))
    rng = np.random.default_rng(3)
    theta0 = init_params(spec, rng)
    family = TaskFamily("maml-paper")
    iters, mb = 40, 4
    X, Y = family_block(family, 0, 0, iters, mb, 20)
    plan, query = support_query_plan(mb, 10, 10, 1)
    plans = np.broadcast_to(plan, (iters,) + plan.shape)
    queries = np.broadcast_to(query, (iters,) + query.shape)
    cfg = MAMLConfig(iters=iters, meta_batch=mb, inner_lr=0.01, outer_lr=0.03)
    seen = []
    block = lambda b: tuple(a[16 * b:16 * (b + 1)] for a in (X, Y, plans, queries))  # noqa: E731
    theta, state = meta_train_maml(spec, theta0, block, 16, cfg,
                                   callback=lambda it, th, losses: seen.append((it, losses.copy())))
    assert [it for it, _ in seen] == [16, 32, 40] and state.t == iters
    by_hand, st_ = theta0, None                                   # the same loop written out
    for j in range(iters):
        g = maml_gradient(spec, by_hand, X[j], Y[j], plans[j], queries[j], 0.01).grad.mean(axis=0)
        by_hand, st_ = adam_outer_step(by_hand, g, st_, cfg)
    np.testing.assert_allclose(theta, by_hand, rtol=1e-12, atol=1e-14)
    # it learns: the post-adaptation query loss on 200 held-out tasks falls
    Xs, Ys, Xq, Yq = family_eval_tasks(family, 0, 200, 10, 10)
    Xe, Ye = np.concatenate([Xs, Xq], axis=1), np.concatenate([Ys, Yq], axis=1)
    plan_e, query_e = support_query_plan(200, 10, 10, 1)
    score = lambda th: maml_gradient(spec, th, Xe, Ye, plan_e, query_e, 0.01).loss.mean()  # noqa: E731
    assert score(theta) < 0.8 * score(theta0)


# ---------------------------------------------------------------------------------------------
# gradient combinations
# ---------------------------------------------------------------------------------------------
def test_parse_combination_reads_the_papers_notation():
    np.testing.assert_array_equal(parse_combination("g1", 4), [1, 0, 0, 0])
    np.testing.assert_array_equal(parse_combination("g1+g2", 4), [1, 1, 0, 0])
    np.testing.assert_array_equal(parse_combination("1/2(g1+g2)", 4), [0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(parse_combination("0.25*(sum)", 4), [0.25] * 4)
    np.testing.assert_array_equal(parse_combination("last", 3), [0, 0, 1])
    with pytest.raises(ValueError, match="combination"):
        parse_combination("g5", 4)
    with pytest.raises(ValueError, match="combination"):
        parse_combination("h1", 4)


@given(mlp_problems(max_width=8), st.integers(1, 4), st.integers(1, 3), st.floats(0.1, 1.0))
def test_sum_of_inner_gradients_is_reptile_and_the_last_is_fomaml(problem, k, n_tasks, eps):
    spec, theta, X, Y, plan, _ = tasks_for(problem, n_tasks, k, 3, 1)
    lr = 0.05
    G, losses = inner_gradients(spec, theta, X, Y, plan, lr)
    res = inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", lr))
    reptile = reptile_update(theta, res.phi, eps)
    np.testing.assert_allclose(theta - eps * lr * combination_direction(G, parse_combination("sum", k)), reptile,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(losses.mean(axis=1), res.loss, rtol=1e-10)
    fomaml = fomaml_gradient(spec, theta, X, Y, plan, lr).grad.mean(axis=0)
    np.testing.assert_allclose(combination_direction(G, parse_combination("last", k)), fomaml,
                               rtol=1e-10, atol=1e-12 * max(np.abs(fomaml).max(), 1))

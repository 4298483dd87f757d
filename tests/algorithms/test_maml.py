"""MAML by hand-written Hessian-vector products, FOMAML, the paper's Taylor expansion, task families."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minireptile import InnerOptimizer, MLPSpec, init_params, inner_loop, loss, loss_and_grad, reptile_update
from minireptile.algorithms import maml as maml_module
from minireptile.algorithms.diagnostics import (combination_coefficients, diagnose, expected_directions, reptile_taylor,
                                     taylor_terms)
from minireptile.algorithms.hvp import batched_loss_grad_hvp, hvp, loss_grad_hvp
from minireptile.algorithms.maml import (MAMLConfig, adam_outer_step, combination_direction, fomaml_gradient, gather,
                              inner_gradients, maml_gradient, meta_train_maml, parse_combination)
from minireptile.tasks.families import (FAMILIES, TaskFamily, family_block, family_eval_tasks, support_query_plan,
                                       tail_plan)

from helpers import central_differences, max_rel_error, mlp_problems


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def tasks_for(problem, n_tasks, steps, batch, n_query):
    """n_tasks tasks with the problem's shapes: data, a support plan and query indices."""
    spec, theta, X, Y, rng = problem
    n_points = max(X.shape[0], batch, n_query)
    Xs = rng.normal(size=(n_tasks, n_points, spec.d_in))
    Ys = (rng.integers(0, spec.d_out, size=(n_tasks, n_points)) if spec.loss == "ce"
          else rng.normal(size=(n_tasks, n_points, spec.d_out)))
    plan = rng.integers(0, n_points, size=(n_tasks, steps, batch))
    query = rng.integers(0, n_points, size=(n_tasks, n_query))
    return spec, theta, Xs, Ys, plan, query


def min_abs_preactivation(spec, theta, X) -> float:
    """Smallest |z| over hidden units (relu kinks make finite differences of gradients jump)."""
    a, out = X, np.inf
    for i, (w_off, b_off) in enumerate(spec.offsets[:-1]):
        W = theta[w_off:b_off].reshape(spec.sizes[i + 1], spec.sizes[i])
        z = a @ W.T + theta[b_off:b_off + spec.sizes[i + 1]]
        out = min(out, float(np.abs(z).min()))
        a = np.maximum(z, 0) if spec.activation == "relu" else np.tanh(z)
    return out


def far_from_kinks(spec, phis, X, margin=1e-3) -> bool:
    """True if every adapted network's hidden pre-activations stay ``margin`` away from relu kinks."""
    if spec.activation != "relu":
        return True
    return all(min_abs_preactivation(spec, phi[i], X[i]) > margin for phi in phis for i in range(len(X)))


def unrolled_objective(spec, X, Y, plan, query, lr):
    """θ ↦ mean_i L_q,i(φ_k,i(θ)), the whole inner loop unrolled with the reference inner loop."""
    opt = InnerOptimizer("sgd", lr)

    def f(theta):
        phi = inner_loop(spec, theta, X, Y, plan, opt).phi
        return np.mean([loss(spec, phi[i], X[i, query[i]], Y[i, query[i]]) for i in range(len(X))])
    return f


# ---------------------------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------------------------
@given(mlp_problems())
def test_hvp_matches_central_differences_of_the_gradient(problem):
    spec, theta, X, Y, rng = problem
    assume(far_from_kinks(spec, [theta[None]], X[None]))
    v = rng.normal(size=theta.shape)
    value, grad, hv = loss_grad_hvp(spec, theta, X, Y, v)
    ref_value, ref_grad = loss_and_grad(spec, theta, X, Y)
    assert value == ref_value
    np.testing.assert_array_equal(grad, ref_grad)
    h = 1e-5
    fd = (loss_and_grad(spec, theta + h * v, X, Y)[1] - loss_and_grad(spec, theta - h * v, X, Y)[1]) / (2 * h)
    assert max_rel_error(hv, fd) <= 1e-6
    u = rng.normal(size=theta.shape)                                       # H is symmetric
    assert u @ hv == pytest.approx(v @ hvp(spec, theta, X, Y, u), rel=1e-9, abs=1e-12)


@given(mlp_problems(), st.integers(1, 4))
def test_batched_hvp_equals_the_one_task_oracle(problem, n_tasks):
    spec, theta, X, Y, rng = problem
    thetas = theta + rng.normal(0, 0.1, size=(n_tasks, theta.size))
    Xs = rng.normal(size=(n_tasks,) + X.shape)
    Ys = (rng.integers(0, spec.d_out, size=(n_tasks, len(X))) if spec.loss == "ce"
          else rng.normal(size=(n_tasks,) + Y.shape))
    vs = rng.normal(size=thetas.shape)
    losses, grads, hvs = batched_loss_grad_hvp(spec, thetas, Xs, Ys, vs)
    losses2, grads2, none = batched_loss_grad_hvp(spec, thetas, Xs, Ys)
    assert none is None
    np.testing.assert_array_equal(grads2, grads)
    for i in range(n_tasks):
        value, grad, hv = loss_grad_hvp(spec, thetas[i], Xs[i], Ys[i], vs[i])
        assert losses[i] == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(grads[i], grad, rtol=1e-10, atol=1e-12 * np.abs(grad).max())
        np.testing.assert_allclose(hvs[i], hv, rtol=1e-10, atol=1e-12 * np.abs(hv).max())


def test_hvp_rejects_a_direction_of_the_wrong_shape_or_dtype():
    spec = MLPSpec((2, 3, 1))
    theta = init_params(spec, np.random.default_rng(0))
    X, Y = np.ones((4, 2)), np.ones((4, 1))
    with pytest.raises(ValueError, match="v: expected shape"):
        hvp(spec, theta, X, Y, np.ones(spec.n_params + 1))
    with pytest.raises(TypeError, match="v: expected dtype"):
        hvp(spec, theta, X, Y, np.ones(spec.n_params, dtype=np.float32))
    with pytest.raises(ValueError, match="theta: expected shape"):
        batched_loss_grad_hvp(spec, np.ones((2, spec.n_params)), X[None], Y[None])


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

    def no_hessian(spec_, theta_, X_, Y_, v=None):
        value, grad, hv = real(spec_, theta_, X_, Y_, v)
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
    with pytest.raises(TypeError, match="X: expected dtype"):
        maml_gradient(spec, theta, X.astype(np.float32), Y, plan, query, 0.1)
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
# the paper's Taylor expansion and diagnostics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, seed, alpha0", [("tanh", 0, 0.02), ("tanh", 1, 0.02), ("relu", 2, 0.002)])
def test_reptile_minus_g1_plus_g2_minus_alpha_H2_g1_shrinks_as_alpha_squared(activation, seed, alpha0):
    """k = 2: (θ − φ_2)/α − (g1 + g2 − α·H2·g1) = O(α²): halving α divides it by about 4.

    relu is smooth only between kinks: its α must be small enough that no hidden unit of the
    inner loop changes sign (at α = 0.02 one does for this seed, and the expansion breaks there).
    """
    spec = MLPSpec((2, 12, 12, 1), activation)
    rng = np.random.default_rng(seed)
    theta = init_params(spec, rng)
    X, Y = rng.normal(size=(3, 10, 2)), rng.normal(size=(3, 10, 1))
    plan = tail_plan(rng, 3, 10, 2, 5)
    residual, first_order_residual = [], []
    alphas = [alpha0, alpha0 / 2, alpha0 / 4, alpha0 / 8]
    for alpha in alphas:
        phi = inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", alpha)).phi
        update = (theta - phi) / alpha
        pred = reptile_taylor(spec, theta, X, Y, plan, alpha)
        residual.append(np.abs(update - pred).max())
        G = np.stack([loss_and_grad(spec, theta, X[i, plan[i, s]], Y[i, plan[i, s]])[1]
                      for i in range(3) for s in range(2)]).reshape(3, 2, -1)
        first_order_residual.append(np.abs(update - G.sum(axis=1)).max())
    ratios = np.array(residual[:-1]) / np.array(residual[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.6)), ratios
    fo_ratios = np.array(first_order_residual[:-1]) / np.array(first_order_residual[1:])
    assert np.all((fo_ratios > 1.7) & (fo_ratios < 2.3)), fo_ratios     # without H2·g1 only O(α)


def test_taylor_prediction_is_exact_for_a_quadratic_loss():
    """A linear model with MSE has a constant Hessian: g1 + g2 − α·H2·g1 is the k = 2 update exactly."""
    spec = MLPSpec((3, 2))
    rng = np.random.default_rng(0)
    theta = rng.normal(size=spec.n_params)
    X, Y = rng.normal(size=(4, 8, 3)), rng.normal(size=(4, 8, 2))
    plan = rng.integers(0, 8, size=(4, 2, 4))
    alpha = 0.3
    phi = inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", alpha)).phi
    np.testing.assert_allclose((theta - phi) / alpha, reptile_taylor(spec, theta, X, Y, plan, alpha),
                               rtol=1e-10, atol=1e-12)


@given(mlp_problems(max_width=8))
def test_avg_grad_inner_is_half_the_gradient_of_the_minibatch_gradient_inner_product(problem):
    """For one task, k = 2: ½(H1·g2 + H2·g1) = ½ ∇_θ (g1 · g2) (the paper's identity)."""
    spec, theta, X, Y, plan, _ = tasks_for(problem, 1, 2, 3, 1)
    assume(far_from_kinks(spec, [theta[None]], X))
    terms = taylor_terms(spec, theta, X, Y, plan)

    def inner_product(t):
        g1 = loss_and_grad(spec, t, X[0, plan[0, 0]], Y[0, plan[0, 0]])[1]
        g2 = loss_and_grad(spec, t, X[0, plan[0, 1]], Y[0, plan[0, 1]])[1]
        return g1 @ g2
    fd = central_differences(inner_product, theta)
    assert max_rel_error(terms.avg_grad_inner, 0.5 * fd) <= 1e-6
    np.testing.assert_allclose(terms.avg_grad, terms.grads.mean(axis=(0, 1)))


def test_expected_directions_match_the_papers_k2_formulas_and_diagnose_reports_norms():
    ag, agi = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    d = expected_directions(ag, agi, 0.1, 2)
    np.testing.assert_allclose(d["maml"], ag - 2 * 0.1 * agi)
    np.testing.assert_allclose(d["fomaml"], ag - 0.1 * agi)
    np.testing.assert_allclose(d["reptile"], 2 * ag - 0.1 * agi)
    spec = MLPSpec((1, 8, 1))
    rng = np.random.default_rng(0)
    theta = init_params(spec, rng)
    X, Y = family_block(TaskFamily("gist"), 0, 0, 1, 5, 20)
    plan = tail_plan(rng, 5, 20, 2, 10)
    G, _ = inner_gradients(spec, theta, X[0], Y[0], plan, 0.02)
    direction = combination_direction(G, parse_combination("g1+g2", 2))
    diag = diagnose(spec, theta, X[0], Y[0], plan, direction)
    assert diag.update_norm == pytest.approx(np.linalg.norm(direction))
    assert diag.avg_grad_norm > 0 and diag.avg_grad_inner_norm > 0
    assert diag.cos_avg_grad > 0.9          # at small α the Reptile direction is mostly 2·AvgGrad
    assert 0 <= diag.residual < 1
    t = taylor_terms(spec, theta, X[0], Y[0], plan)
    fitted = diag.coef_avg_grad * t.avg_grad + diag.coef_avg_grad_inner * t.avg_grad_inner
    assert np.linalg.norm(direction - fitted) == pytest.approx(diag.residual * np.linalg.norm(direction), rel=1e-9)
    # the combination rule agrees with the paper's Reptile / FOMAML / MAML predictions
    for k in (2, 3, 4):
        ag, agi = np.array([1.0, 0.0]), np.array([0.0, 1.0])
        pred = expected_directions(ag, agi, 0.1, k)
        np.testing.assert_allclose(combination_coefficients(np.ones(k), 0.1), pred["reptile"])
        np.testing.assert_allclose(combination_coefficients(np.eye(k)[-1], 0.1), pred["fomaml"])
    with pytest.raises(ValueError, match="k >= 2"):
        taylor_terms(spec, theta, X[0], Y[0], plan[:, :1])


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


def test_maml_paper_preset_has_torchmetas_and_cbfinns_sinusoid_distribution():
    """A·sin(x + b), b ~ U[−π, 0] is A·sin(x − φ), φ ~ U[0, π]: same law of y at every x."""
    from scipy import stats
    for lo in (-4.0, 0.0, 2.0):
        ours, theirs = _values_near_x("maml-paper", 0, lo, lo + 1), _values_near_x("sinusoid", 1, lo, lo + 1)
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    # the 'maml' preset keeps sin(x + b), b ~ U[0, π]: a different law, and the test can tell
    assert stats.ks_2samp(_values_near_x("maml", 0), _values_near_x("sinusoid", 1)).pvalue < 1e-6


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

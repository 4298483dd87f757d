"""Hessian-vector products (minireptile.algorithms.hvp) against finite differences and the one-task oracle."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minireptile import MLPSpec, init_params, loss_and_grad
from minireptile.algorithms.hvp import batched_loss_grad_hvp, hvp, loss_grad_hvp

from helpers import far_from_kinks, max_rel_error, mlp_problems


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
    # the library's dtype rule: a lossless conversion is accepted, a lossy one refused naming the argument
    np.testing.assert_array_equal(hvp(spec, theta, X, Y, np.ones(spec.n_params, dtype=np.float32)),
                                  hvp(spec, theta, X, Y, np.ones(spec.n_params)))
    with pytest.raises(TypeError, match="v: expected float32"):
        hvp(spec, theta.astype(np.float32), X.astype(np.float32), Y.astype(np.float32), np.ones(spec.n_params))
    with pytest.raises(ValueError, match="theta: expected shape"):
        batched_loss_grad_hvp(spec, np.ones((2, spec.n_params)), X[None], Y[None])

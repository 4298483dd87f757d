"""The Reptile paper's Taylor expansion and the AvgGrad/AvgGradInner diagnostics (minireptile.algorithms.diagnostics)."""

import numpy as np
import pytest
from hypothesis import assume, given

from minireptile import InnerOptimizer, MLPSpec, init_params, inner_loop, loss_and_grad
from minireptile.algorithms.diagnostics import (combination_coefficients, diagnose, expected_directions, reptile_taylor,
                                                taylor_terms)
from minireptile.algorithms.maml import combination_direction, inner_gradients, parse_combination
from minireptile.tasks.families import TaskFamily, family_block, tail_plan

from helpers import central_differences, far_from_kinks, max_rel_error, mlp_problems, tasks_for


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

"""Every public function of the algorithms and of few-shot scoring checks its arguments (validation.py).

A query index of -1 used to wrap to the last point, a label of -1 to the last class, and NaN inputs or an
infinite θ gave numbers or NaN; each now raises, naming the argument.
"""

import numpy as np
import pytest

from minireptile import MLPSpec, init_params
from minireptile.algorithms.diagnostics import diagnose, reptile_taylor, taylor_terms
from minireptile.algorithms.hvp import batched_loss_grad_hvp, hvp, loss_grad_hvp
from minireptile.algorithms.maml import adapt_trajectory, fomaml_gradient, inner_gradients, maml_gradient
from minireptile.evaluation.fewshot import adapt_and_classify, nearest_neighbour_accuracy, query_scores
from minireptile import InnerOptimizer, get_backend

REG = MLPSpec((1, 4, 1))
CLS = MLPSpec((2, 4, 3), "tanh", "ce")


def problem(spec):
    theta = init_params(spec, np.random.default_rng(0))
    X = np.random.default_rng(1).normal(size=(2, 5, spec.d_in))
    Y = (np.zeros((2, 5), np.int64) if spec.loss == "ce" else np.zeros((2, 5, 1)))
    plan = np.zeros((2, 2, 3), np.int64)
    query = np.ones((2, 2), np.int64)
    return theta, X, Y, plan, query


def with_(a, index, value):
    a = np.array(a, copy=True)
    a[index] = value
    return a


@pytest.mark.parametrize("spec", [REG, CLS], ids=["mse", "ce"])
def test_item09_maml_hvp_and_diagnostics_refuse_bad_indices_labels_and_non_finite_values(spec):
    theta, X, Y, plan, query = problem(spec)
    calls = {
        "maml_gradient": lambda t, X, Y, p, q: maml_gradient(spec, t, X, Y, p, q, 0.1),
        "fomaml_gradient": lambda t, X, Y, p, q: fomaml_gradient(spec, t, X, Y, p, 0.1),
        "adapt_trajectory": lambda t, X, Y, p, q: adapt_trajectory(spec, t, X, Y, p, 0.1),
        "inner_gradients": lambda t, X, Y, p, q: inner_gradients(spec, t, X, Y, p, 0.1),
        "taylor_terms": lambda t, X, Y, p, q: taylor_terms(spec, t, X, Y, p),
        "reptile_taylor": lambda t, X, Y, p, q: reptile_taylor(spec, t, X, Y, p, 0.1),
        "diagnose": lambda t, X, Y, p, q: diagnose(spec, t, X, Y, p, np.ones(spec.n_params)),
    }
    for name, call in calls.items():
        call(theta, X, Y, plan, query)                                       # the clean call works
        bad = {"plan": (theta, X, Y, with_(plan, (0, 0, 0), -1), query),
               "X": (theta, with_(X, (0, 0, 0), np.nan), Y, plan, query),
               "theta": (with_(theta, 0, np.inf), X, Y, plan, query)}
        if name == "maml_gradient":
            bad["query"] = (theta, X, Y, plan, with_(query, (0, 0), -1))
        if spec.loss == "ce":
            bad["Y"] = (theta, X, with_(Y, (0, 0), -1), plan, query)
        for arg, args in bad.items():
            with pytest.raises(ValueError, match=f"^{arg}: expected"):
                call(*args)


def test_item09_hvp_refuses_nan_inf_and_bad_labels():
    theta, X, Y, plan, query = problem(CLS)
    v = np.ones(CLS.n_params)
    with pytest.raises(ValueError, match="^X: expected finite"):
        hvp(CLS, theta, with_(X[0], (0, 0), np.nan), Y[0], v)
    with pytest.raises(ValueError, match="^v: expected finite"):
        loss_grad_hvp(CLS, theta, X[0], Y[0], with_(v, 3, np.inf))
    with pytest.raises(ValueError, match="^Y: expected class labels"):
        batched_loss_grad_hvp(CLS, theta, X, with_(Y, (1, 1), -1))
    with pytest.raises(ValueError, match="^theta: expected finite"):
        batched_loss_grad_hvp(CLS, with_(theta, 0, np.inf), X, Y)


def test_item09_fewshot_scoring_refuses_bad_labels_indices_and_nan():
    theta, X, Y, plan, query = problem(CLS)
    phi = np.stack([theta, theta])
    query_scores(CLS, phi, X, Y)
    with pytest.raises(ValueError, match="^Y: expected class labels"):
        query_scores(CLS, phi, X, with_(Y, (0, 0), -1))
    with pytest.raises(ValueError, match="^phi: expected finite"):
        query_scores(CLS, with_(phi, (0, 0), np.nan), X, Y)
    with pytest.raises(ValueError, match="^Xq: expected finite"):
        nearest_neighbour_accuracy(X, Y, with_(X, (0, 0, 0), np.nan), Y)
    with pytest.raises(ValueError, match="^Ys: expected class labels"):
        nearest_neighbour_accuracy(X, with_(Y, (0, 0), -1), X, Y)
    be, opt = get_backend("numpy"), InnerOptimizer("sgd", 0.1)
    adapt_and_classify(CLS, theta, X, Y, X, Y, plan, opt, be)
    with pytest.raises(ValueError, match="^plan: expected support indices"):
        adapt_and_classify(CLS, theta, X, Y, X, Y, with_(plan, (0, 0, 0), -1), opt, be)
    with pytest.raises(ValueError, match="^Yq: expected class labels"):
        adapt_and_classify(CLS, theta, X, Y, X, with_(Y, (0, 0), 3), plan, opt, be)

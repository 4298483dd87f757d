"""The NumPy reference: gradients against finite differences, layout, init, optimizer steps."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minireptile import InnerOptimizer, MLPSpec, forward, init_params, inner_loop, loss, loss_and_grad, unflatten
from minireptile.reference import adam_step

from helpers import central_differences, max_rel_error, mlp_problems


@given(mlp_problems())
def test_gradient_matches_central_differences_float64(problem):
    spec, theta, X, Y, _ = problem
    if spec.activation == "relu":  # relu has a kink at 0: finite differences across it are meaningless
        a = X
        for W, b in unflatten(spec, theta)[:-1]:
            z = a @ W.T + b
            assume(np.abs(z).min() > 1e-3)
            a = np.maximum(z, 0)
    value, grad = loss_and_grad(spec, theta, X, Y)
    fd = central_differences(lambda t: loss(spec, t, X, Y), theta)
    assert value == pytest.approx(loss(spec, theta, X, Y), rel=1e-14)
    assert grad.shape == theta.shape and grad.dtype == theta.dtype
    assert max_rel_error(grad, fd) <= 1e-6


@given(mlp_problems())
def test_forward_matches_layer_by_layer_formula(problem):
    spec, theta, X, Y, _ = problem
    a = X
    layers = unflatten(spec, theta)
    for i, (W, b) in enumerate(layers):
        z = np.einsum("oi,bi->bo", W, a) + b
        if i < len(layers) - 1:
            a = np.tanh(z) if spec.activation == "tanh" else np.where(z > 0, z, 0.0)
        else:
            a = z
    np.testing.assert_allclose(forward(spec, theta, X), a, rtol=1e-12, atol=1e-12)


@given(mlp_problems(losses=("ce",)))
def test_cross_entropy_is_negative_log_softmax(problem):
    spec, theta, X, Y, _ = problem
    out = forward(spec, theta, X)
    p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(len(Y)), Y]))
    assert loss(spec, theta, X, Y) == pytest.approx(expected, rel=1e-10)


@given(st.lists(st.integers(1, 16), min_size=2, max_size=5))
def test_layout_offsets_are_contiguous_and_views_share_memory(sizes):
    spec = MLPSpec(tuple(sizes))
    theta = np.arange(spec.n_params, dtype=np.float64)
    covered = np.zeros(spec.n_params, dtype=int)
    expected_offset = 0
    for (w_off, b_off), (W, b), fan_in, fan_out in zip(spec.offsets, unflatten(spec, theta), sizes[:-1], sizes[1:]):
        assert w_off == expected_offset and b_off == w_off + fan_in * fan_out
        assert W.shape == (fan_out, fan_in) and b.shape == (fan_out,)
        assert np.shares_memory(W, theta) and np.shares_memory(b, theta)
        covered[w_off:b_off + fan_out] += 1
        expected_offset = b_off + fan_out
    assert expected_offset == spec.n_params
    assert np.all(covered == 1)  # every parameter belongs to exactly one view
    W0, _ = unflatten(spec, theta)[0]
    W0[0, 0] = -1.0
    assert theta[0] == -1.0
    table = spec.offsets_array()
    assert table.shape == (spec.n_layers, 4) and table.dtype == np.int64


@given(st.lists(st.integers(1, 64), min_size=2, max_size=4), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2**32 - 1))
def test_init_bounds_dtype_and_determinism(sizes, dtype, seed):
    spec = MLPSpec(tuple(sizes))
    theta = init_params(spec, np.random.default_rng(seed), dtype)
    assert theta.dtype == dtype and theta.shape == (spec.n_params,) and theta.flags.c_contiguous
    for W, b in unflatten(spec, theta):
        bound = 1 / np.sqrt(W.shape[1])
        assert np.all(np.abs(W) <= bound) and np.all(np.abs(b) <= bound)
    np.testing.assert_array_equal(theta, init_params(spec, np.random.default_rng(seed), dtype))
    big = MLPSpec((64, 64))
    W, _ = unflatten(big, init_params(big, np.random.default_rng(seed)))[0]
    assert np.abs(W).max() > 0.9 / 8  # fills the interval, not a narrower one


def test_spec_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sizes"):
        MLPSpec((3,))
    with pytest.raises(ValueError, match="sizes"):
        MLPSpec((3, 0, 1))
    with pytest.raises(ValueError, match="activation"):
        MLPSpec((1, 1), activation="sigmoid")
    with pytest.raises(ValueError, match="loss"):
        MLPSpec((1, 1), loss="hinge")
    with pytest.raises(ValueError, match="d_out >= 2"):
        MLPSpec((1, 1), loss="ce")
    with pytest.raises(TypeError, match="dtype"):
        init_params(MLPSpec((1, 1)), np.random.default_rng(0), np.int32)
    with pytest.raises(TypeError, match="rng"):
        init_params(MLPSpec((1, 1)), 0)


def test_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        InnerOptimizer(lr=0)
    with pytest.raises(ValueError, match="lr"):
        InnerOptimizer(lr=float("nan"))
    with pytest.raises(ValueError, match="beta1"):
        InnerOptimizer("adam", beta1=1.0)
    with pytest.raises(ValueError, match="optimizer"):
        InnerOptimizer("rmsprop")
    with pytest.raises(ValueError, match="state_policy"):
        InnerOptimizer("adam", state_policy="keep")


@given(mlp_problems(), st.integers(1, 4), st.sampled_from(["sgd", "adam"]))
def test_inner_loop_is_the_written_out_sequence_of_steps(problem, steps, name):
    spec, theta, X, Y, rng = problem
    opt = InnerOptimizer(name, lr=0.05, beta1=0.5)
    plan = rng.integers(0, X.shape[0], size=(1, steps, max(1, X.shape[0] // 2)))
    res = inner_loop(spec, theta, X[None], Y[None], plan, opt)
    phi = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    losses = []
    for s in range(steps):
        idx = plan[0, s]
        value, g = loss_and_grad(spec, phi, X[idx], Y[idx])
        losses.append(value)
        if name == "sgd":
            phi = phi - 0.05 * g
        else:
            m = 0.5 * m + 0.5 * g
            v = 0.999 * v + 0.001 * g * g
            phi = phi - 0.05 * (m / (1 - 0.5 ** (s + 1))) / (np.sqrt(v / (1 - 0.999 ** (s + 1))) + 1e-8)
    np.testing.assert_allclose(res.phi[0], phi, rtol=1e-12, atol=1e-14)
    assert res.loss[0] == pytest.approx(np.mean(losses), rel=1e-12)
    if name == "adam":
        assert res.state.t == steps
        np.testing.assert_allclose(res.state.m[0], m, rtol=1e-12, atol=1e-15)


def test_adam_with_beta1_zero_uses_the_current_gradient_only():
    theta = np.zeros(3)
    g = np.array([1.0, -2.0, 0.5])
    m, v = np.full(3, 7.0), np.zeros(3)
    adam_step(theta, g, m, v, 1, InnerOptimizer("adam", lr=0.1, beta1=0.0, beta2=0.5))
    np.testing.assert_array_equal(m, g)
    np.testing.assert_allclose(theta, -0.1 * g / (np.abs(g) + 1e-8))

"""Test helpers: random MLP problems drawn from hypothesis-chosen shapes."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from minireptile import MLPSpec, init_params


@st.composite
def mlp_problems(draw, max_hidden_layers=3, max_width=16, max_batch=8, losses=("mse", "ce"), dtype=np.float64):
    """An (spec, theta, X, Y) problem with hypothesis-drawn depth, widths, batch, activation, loss."""
    depth = draw(st.integers(1, max_hidden_layers))
    widths = draw(st.lists(st.integers(1, max_width), min_size=depth, max_size=depth))
    d_in = draw(st.integers(1, 4))
    loss = draw(st.sampled_from(losses))
    d_out = draw(st.integers(2, 4)) if loss == "ce" else draw(st.integers(1, 3))
    activation = draw(st.sampled_from(["tanh", "relu"]))
    batch = draw(st.integers(1, max_batch))
    seed = draw(st.integers(0, 2**32 - 1))
    spec = MLPSpec((d_in, *widths, d_out), activation, loss)
    rng = np.random.default_rng(seed)
    theta = init_params(spec, rng, np.float64)
    theta += rng.normal(0, 0.3, size=theta.shape)  # move off the init so no layer is special
    X = rng.normal(size=(batch, d_in))
    Y = rng.integers(0, d_out, size=batch) if loss == "ce" else rng.normal(size=(batch, d_out))
    return spec, theta.astype(dtype), X.astype(dtype), (Y if loss == "ce" else Y.astype(dtype)), rng


def central_differences(f, theta, h=1e-5):
    """Central finite-difference gradient of a scalar function of a float64 vector."""
    g = np.empty_like(theta)
    for i in range(theta.size):
        tp = theta.copy()
        tm = theta.copy()
        tp[i] += h
        tm[i] -= h
        g[i] = (f(tp) - f(tm)) / (2 * h)
    return g


def max_rel_error(a, b):
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))

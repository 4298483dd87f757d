"""JAX peer: Reptile on minireptile's tasks, the whole meta-iteration compiled by XLA.

Contract (shapes and arguments: see :mod:`peers`)
--------------------------------------------------
One outer iteration is a pure function ``meta_step(θ, X, Y, plan, ε) -> θ``: θ flat (P,) is cut
into per-layer ``(W (out, in), b)`` (static slices, no transposes), the inner loop is a
``lax.scan`` over the inner steps of ``jax.grad`` of the MSE, the tasks of a meta-batch are
``jax.vmap``-ed (a single task is not vmapped: serial Reptile), and the outer update
θ + ε·(mean φ − θ) closes it. Two ways to drive it:

``train_step``   ``jax.jit(meta_step)`` called once per outer iteration from a Python loop, fed
                 that iteration's numpy arrays (what a JAX user with a host-side sampler writes).
``train_scan``   ``jax.jit`` of a ``lax.scan`` of ``meta_step`` over the whole chunk of outer
                 iterations: one call, one transfer, no Python in the loop.

dtype follows θ. float64 needs JAX's x64 mode: each call enables it for its own duration only
(``jax.enable_x64``), so nothing leaks to the caller. Compiled functions are cached per (spec,
optimizer, serial/batched); a new chunk length retraces ``train_scan``. Adam
(``state_policy="reset"``) takes its bias corrections 1 − β^t computed on the host in float64 and
rounded to θ's dtype, as the NumPy reference does.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from . import check_inputs

try:
    import jax
    import jax.numpy as jnp
    from jax import lax
except ImportError:  # the peer is optional
    jax = None

AVAILABLE = jax is not None
INSTALL = 'jax is not installed: pip install jax (the CPU build), or pip install -e ".[bench]"'


def _require() -> None:
    if jax is None:
        raise ImportError(INSTALL)


def _unflatten(spec, theta):
    """[(W_l (out, in), b_l (out,)), ...] from flat θ (P,) by static slices."""
    return [(theta[w:b].reshape(o, i), theta[b:b + o]) for w, b, i, o in spec.offsets_array().tolist()]


def _flatten(params):
    return jnp.concatenate([a.reshape(-1) for layer in params for a in layer])


def _make_meta_step(spec, opt, batched: bool):
    """The pure function of one outer iteration (see the module docstring)."""
    act = jnp.tanh if spec.activation == "tanh" else (lambda z: jnp.maximum(z, 0))
    lr, b1, b2, adam_eps = opt.lr, opt.beta1, opt.beta2, opt.eps
    adam = opt.name == "adam"

    def loss(params, x, y):                                # x (batch, d_in), y (batch, d_out)
        a = x
        for layer, (W, b) in enumerate(params):
            a = a @ W.T + b
            if layer < len(params) - 1:
                a = act(a)
        return jnp.mean((a - y) ** 2)

    def inner(params, x, y, plan, bc1, bc2):               # one task: x (n_points, d_in), plan (steps, batch)
        def sgd(phi, idx):
            g = jax.grad(loss)(phi, x[idx], y[idx])
            return jax.tree.map(lambda p, gp: p - lr * gp, phi, g), None

        def adam_step(carry, xs):
            phi, m, v = carry
            idx, c1, c2 = xs
            g = jax.grad(loss)(phi, x[idx], y[idx])
            m = jax.tree.map(lambda mp, gp: b1 * mp + (1 - b1) * gp, m, g)
            v = jax.tree.map(lambda vp, gp: b2 * vp + (1 - b2) * gp * gp, v, g)
            phi = jax.tree.map(lambda p, mp, vp: p - lr * (mp / c1) / (jnp.sqrt(vp / c2) + adam_eps), phi, m, v)
            return (phi, m, v), None

        if not adam:
            return lax.scan(sgd, params, plan)[0]
        zeros = jax.tree.map(jnp.zeros_like, params)
        return lax.scan(adam_step, (params, zeros, zeros), (plan, bc1, bc2))[0][0]

    def meta_step(theta, X, Y, plan, eps, bc1, bc2):       # X (n_tasks, n_points, d_in), plan (n_tasks, steps, batch)
        params = _unflatten(spec, theta)
        if batched:
            phi = jax.vmap(inner, in_axes=(None, 0, 0, 0, None, None))(params, X, Y, plan, bc1, bc2)
            phi_mean = jax.tree.map(lambda p: p.mean(axis=0), phi)
        else:
            phi_mean = inner(params, X[0], Y[0], plan[0], bc1, bc2)
        return theta + eps * (_flatten(phi_mean) - theta)  # the Reptile outer update

    return meta_step


@functools.lru_cache(maxsize=None)
def _compiled(spec, opt, batched: bool, how: str):
    meta_step = _make_meta_step(spec, opt, batched)
    if how == "step":
        return jax.jit(meta_step)

    def chunk(theta, X, Y, plans, eps, bc1, bc2):          # X (iters, n_tasks, n_points, d_in)
        def body(th, xs):
            return meta_step(th, *xs, bc1, bc2), None
        return lax.scan(body, theta, (X, Y, plans, eps))[0]

    return jax.jit(chunk)


def _x64(dtype):
    """float64: JAX's x64 mode for the duration of the call; float32: the caller's setting, untouched."""
    return jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()


def _bias_corrections(opt, steps: int, dtype):
    t = np.arange(1, steps + 1, dtype=np.float64)
    return (1 - opt.beta1**t).astype(dtype), (1 - opt.beta2**t).astype(dtype)  # (steps,) each


def train_step(spec, theta, X, Y, plans, eps, opt) -> np.ndarray:
    """Reptile with one ``jax.jit``-compiled outer iteration per Python loop turn.

    Parameters and return: see :mod:`peers`. Returns θ (P,) after ``iters`` outer steps.
    """
    check_inputs(spec, theta, X, Y, plans, eps, opt)
    _require()
    with _x64(theta.dtype):
        step = _compiled(spec, opt, plans.shape[1] > 1, "step")
        bc1, bc2 = _bias_corrections(opt, plans.shape[2], theta.dtype)
        plans32 = plans.astype(np.int32)
        eps_t = eps.astype(theta.dtype)
        th = jnp.asarray(theta)
        for j in range(plans.shape[0]):
            th = step(th, X[j], Y[j], plans32[j], eps_t[j], bc1, bc2)
        return np.array(th)


def train_scan(spec, theta, X, Y, plans, eps, opt) -> np.ndarray:
    """Reptile with the whole chunk of outer iterations in one ``jax.jit`` (``lax.scan``).

    Parameters and return: see :mod:`peers`. Returns θ (P,) after ``iters`` outer steps.
    """
    check_inputs(spec, theta, X, Y, plans, eps, opt)
    _require()
    with _x64(theta.dtype):
        chunk = _compiled(spec, opt, plans.shape[1] > 1, "scan")
        bc1, bc2 = _bias_corrections(opt, plans.shape[2], theta.dtype)
        th = chunk(theta, X, Y, plans.astype(np.int32), eps.astype(theta.dtype), bc1, bc2)
        return np.array(th)


MODES = {"jit-step": train_step, "jit-scan": train_scan}

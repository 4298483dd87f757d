"""Conformance adapter for the JAX peer: every stage of ``minireptile conformance check``.

Run it (from the repository root)::

    PYTHONPATH=benchmarks minireptile conformance check --impl peers.conformance_jax:JaxAdapter
    PYTHONPATH=benchmarks minireptile conformance bench --impl peers.conformance_jax:JaxAdapter

``reptile`` is the peer itself (:func:`peers.jax_peer.train_step`, or ``train_scan`` with
``mode="jit-scan"``, which compiles anew for every number of iterations) where the peer's contract
covers the case (MSE, SGD or Adam with its state reset); other cases (cross-entropy, Adam with its
state carried) run a compiled Reptile iteration written here. Gradients are ``jax.grad``, the
Hessian-vector product ``jax.jvp`` of ``jax.grad``, the MAML meta-gradient ``jax.grad`` through the k
unrolled SGD steps, each compiled by ``jax.jit``. float64 runs in JAX's x64 mode, enabled for the
duration of each call.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from . import jax_peer

jax = jax_peer.jax
if jax is not None:
    import jax.numpy as jnp


def _x64(method):
    """Run ``method`` in x64 mode when the adapter is float64 (nothing leaks to the caller)."""
    @functools.wraps(method)
    def wrapper(self, *args):
        ctx = jax.enable_x64(True) if self.dtype == "float64" else contextlib.nullcontext()
        with ctx:
            return method(self, *args)
    return wrapper


def _loss(spec, theta, x, y):
    a = x
    for layer, (w, b, fan_in, fan_out) in enumerate(spec.offsets_array().tolist()):
        a = a @ theta[w:b].reshape(fan_out, fan_in).T + theta[b:b + fan_out]
        if layer < spec.n_layers - 1:
            a = jnp.tanh(a) if spec.activation == "tanh" else jnp.maximum(a, 0)
    if spec.loss == "mse":
        return jnp.mean((a - y) ** 2)
    logp = jax.nn.log_softmax(a, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


@functools.lru_cache(maxsize=None)
def _functions(spec, opt, x64: bool):
    """jit-compiled pieces for one (spec, optimizer); the cache key includes the x64 mode."""
    loss_grad = jax.value_and_grad(lambda th, x, y: _loss(spec, th, x, y))
    grad = jax.grad(lambda th, x, y: _loss(spec, th, x, y))

    def step(carry, idx_t, x, y):
        phi, m, v = carry
        idx, t = idx_t
        g = grad(phi, x[idx], y[idx])
        if opt.name == "sgd":
            return (phi - opt.lr * g, m, v)
        m = opt.beta1 * m + (1 - opt.beta1) * g
        v = opt.beta2 * v + (1 - opt.beta2) * g * g
        return (phi - opt.lr * (m / (1 - opt.beta1**t)) / (jnp.sqrt(v / (1 - opt.beta2**t)) + opt.eps), m, v)

    def inner(theta, x, y, plan, m, v, t0):               # one task: every φ_s and the final (m, v)
        carry, phis = (theta, m, v), []
        for s in range(plan.shape[0]):
            carry = step(carry, (plan[s], t0 + s + 1), x, y)
            phis.append(carry[0])
        return jnp.stack(phis), carry[1], carry[2]

    def unrolled(theta, x, y, plan, q, lr):               # MAML: the query loss after k SGD steps
        phi = theta
        for s in range(plan.shape[0]):
            phi = phi - lr * grad(phi, x[plan[s]], y[plan[s]])
        return _loss(spec, phi, x[q], y[q])

    def outer(theta, X, Y, plans, e, m, v, t0):            # one Reptile iteration over the meta-batch
        phis, ms, vs = jax.vmap(inner, in_axes=(None, 0, 0, 0, None, None, None))(theta, X, Y, plans, m, v, t0)
        return theta + e * (phis[:, -1].mean(0) - theta), ms.mean(0), vs.mean(0)

    def hvp(th, x, y, v):
        return jax.jvp(lambda t: grad(t, x, y), (th,), (v,))[1]

    return {"loss_grad": jax.jit(loss_grad), "hvp": jax.jit(hvp), "inner": jax.jit(inner),
            "maml": jax.jit(jax.grad(unrolled)), "outer": jax.jit(outer)}


class JaxAdapter:
    """The JAX peer behind the adapter protocol (docs/conformance.md)."""

    def __init__(self, dtype: str = "float64", mode: str = "jit-step"):
        jax_peer._require()
        self.dtype = dtype
        self.mode = mode
        self.name = f"JAX {jax.__version__} (the {mode} peer)"

    def _f(self, spec, opt=None):
        from minireptile import InnerOptimizer
        return _functions(spec, opt or InnerOptimizer("sgd"), self.dtype == "float64")

    def to_native(self, a: np.ndarray):
        with jax.enable_x64(True) if self.dtype == "float64" else contextlib.nullcontext():
            return jax.block_until_ready(jnp.asarray(a))

    @_x64
    def grad(self, spec, theta, x, y):
        loss, g = self._f(spec)["loss_grad"](theta, x, y)
        return float(loss), np.asarray(g)

    @_x64
    def hvp(self, spec, theta, x, y, v):
        return np.asarray(self._f(spec)["hvp"](theta, x, y, v))

    @_x64
    def inner_loop(self, spec, theta, x, y, plan, opt):
        zeros = np.zeros_like(theta)
        return np.asarray(self._f(spec, opt)["inner"](theta, x, y, plan, zeros, zeros, 0)[0])

    @_x64
    def fomaml(self, spec, theta, X, Y, plan, lr):
        from minireptile import InnerOptimizer
        f = self._f(spec, InnerOptimizer("sgd", lr))
        zeros = np.zeros_like(theta)
        out = []
        for i in range(X.shape[0]):
            phi = f["inner"](theta, X[i], Y[i], plan[i, :-1], zeros, zeros, 0)[0][-1] if plan.shape[1] > 1 else theta
            out.append(f["loss_grad"](phi, X[i, plan[i, -1]], Y[i, plan[i, -1]])[1])
        return np.asarray(jnp.stack(out))

    @_x64
    def maml(self, spec, theta, X, Y, plan, query, lr):
        f = self._f(spec)
        return np.stack([np.asarray(f["maml"](theta, X[i], Y[i], plan[i], query[i], float(lr)))
                         for i in range(X.shape[0])])

    @_x64
    def reptile(self, spec, theta, X, Y, plans, eps, opt):
        if spec.loss == "mse" and opt.state_policy == "reset":   # the peer's contract
            return jax_peer.MODES[self.mode](spec, theta, X, Y, plans, eps, opt)
        outer = self._f(spec, opt)["outer"]
        th, m, v = jnp.asarray(theta), jnp.zeros_like(theta), jnp.zeros_like(theta)
        carry = opt.name == "adam" and opt.state_policy == "carry"
        k = plans.shape[2]
        for j, e in enumerate(eps.astype(theta.dtype)):
            zeros = jnp.zeros_like(th)
            th, m2, v2 = outer(th, X[j], Y[j], plans[j], e, m if carry else zeros, v if carry else zeros,
                               j * k if carry else 0)
            m, v = m2, v2
        return np.asarray(th)

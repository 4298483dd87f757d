"""Framework peers: the same Reptile experiment written the way PyTorch and JAX users write it.

Contract
--------
Every peer function has one signature and consumes exactly what minireptile's own samplers make,
in minireptile's layout (θ flat, each layer's W stored (out, in) like ``torch.nn.Linear``, so no
transposes anywhere):

    train(spec, theta, X, Y, plans, eps, opt) -> theta_final

    spec    MLPSpec with loss="mse" (the sine experiment; tanh or relu hidden layers)
    theta   (P,)                              float32 or float64, from ``minireptile.init_params``
    X, Y    (iters, n_tasks, n_points, d)     same dtype as θ, from ``minireptile.sine_block``
    plans   (iters, n_tasks, steps, batch)    int minibatch indices, from ``sine_block``
    eps     (iters,)                          from ``minireptile.epsilon_schedule``
    opt     InnerOptimizer                    SGD, or Adam with ``state_policy="reset"``
    returns (P,) numpy array, θ after ``iters`` outer iterations

``n_tasks == 1`` is serial Reptile (openai's sine gist); ``n_tasks > 1`` batched Reptile, with
θ ← θ + ε·(mean_i φ_i − θ) as :func:`minireptile.reptile_update`. The peers are benchmarks and
cross-checks, not backends: they return θ only (no per-iteration losses, no carried Adam state).

Files: :mod:`peers.torch_peer` (eager as the gist; ``torch.func.vmap``) and :mod:`peers.jax_peer`
(one ``jax.jit`` per outer step; ``lax.scan`` over a chunk of outer steps). Each imports its
framework behind a guard: ``AVAILABLE`` is False and ``INSTALL`` says what to install when it is
missing. Import them with ``benchmarks/`` on ``sys.path`` (``from peers import torch_peer``).
"""

from __future__ import annotations

import numpy as np

from minireptile import InnerOptimizer, MLPSpec


def check_inputs(spec, theta, X, Y, plans, eps, opt) -> None:
    """Raise TypeError / ValueError, naming the argument, unless the inputs follow the contract."""
    if not isinstance(spec, MLPSpec):
        raise TypeError(f"spec: expected MLPSpec, got {type(spec).__name__}")
    if spec.loss != "mse":
        raise ValueError(f"spec: the peers implement loss='mse' (the sine experiment), got {spec.loss!r}")
    if not isinstance(opt, InnerOptimizer):
        raise TypeError(f"opt: expected InnerOptimizer, got {type(opt).__name__}")
    if opt.name == "adam" and opt.state_policy != "reset":
        raise ValueError(f"opt: the peers implement Adam with state_policy='reset', got {opt.state_policy!r}")
    for name, a in (("theta", theta), ("X", X), ("Y", Y), ("plans", plans), ("eps", eps)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if theta.dtype not in (np.float32, np.float64):
        raise TypeError(f"theta: expected float32 or float64, got {theta.dtype}")
    for name, a in (("X", X), ("Y", Y)):
        if a.dtype != theta.dtype:
            raise TypeError(f"{name}: expected dtype {theta.dtype} like theta, got {a.dtype}")
    if not np.issubdtype(plans.dtype, np.integer):
        raise TypeError(f"plans: expected an integer array, got {plans.dtype}")
    if theta.shape != (spec.n_params,):
        raise ValueError(f"theta: expected shape ({spec.n_params},), got {theta.shape}")
    if X.ndim != 4 or X.shape[-1] != spec.d_in:
        raise ValueError(f"X: expected shape (iters, n_tasks, n_points, {spec.d_in}), got {X.shape}")
    if Y.shape != X.shape[:3] + (spec.d_out,):
        raise ValueError(f"Y: expected shape {X.shape[:3] + (spec.d_out,)}, got {Y.shape}")
    if plans.ndim != 4 or plans.shape[:2] != X.shape[:2]:
        raise ValueError(f"plans: expected shape {X.shape[:2]} + (steps, batch), got {plans.shape}")
    if plans.size and (plans.min() < 0 or plans.max() >= X.shape[2]):
        raise ValueError(f"plans: indices must lie in [0, {X.shape[2]}), got [{plans.min()}, {plans.max()}]")
    if eps.shape != (X.shape[0],):
        raise ValueError(f"eps: expected shape ({X.shape[0]},), got {eps.shape}")

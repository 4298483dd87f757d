"""PyTorch peer: Reptile on minireptile's tasks, written the way PyTorch users write it.

Contract (shapes and arguments: see :mod:`peers`)
--------------------------------------------------
``train_eager``  openai's Reptile sine demo (the gist): an ``nn.Sequential`` of ``Linear`` and
                 ``Tanh``, autograd, manual SGD on ``.grad``, then the outer update written on the
                 parameters. One task at a time; a meta-batch is a Python loop over its tasks.
``train_vmap``   the meta-batch as one batched computation: ``torch.func.grad`` of a
                 ``functional_call`` of the same module, ``vmap``-ed over tasks; one Python loop
                 over inner steps.

θ0 is copied into the ``Linear`` layers as it is (``W`` is (out, in) in both), and the final
parameters are concatenated back in ``nn.Sequential`` order W_0, b_0, W_1, ..., which is
minireptile's flat layout. Adam (``state_policy="reset"``) is the reference formula written out by
hand, not ``torch.optim.Adam`` (which rounds differently). Nothing here draws random numbers:
modules are built with ``skip_init`` and filled from θ0.
"""

from __future__ import annotations

import numpy as np

from minireptile import unflatten

from . import check_inputs

try:
    import torch
    from torch import nn
    from torch.func import functional_call, grad, vmap
except ImportError:  # the peer is optional
    torch = None

AVAILABLE = torch is not None
INSTALL = 'torch is not installed: pip install torch==2.13.0 (CPU wheel), or pip install -e ".[bench]"'


def _require() -> None:
    if torch is None:
        raise ImportError(INSTALL)


def gist_model(spec, theta: np.ndarray):
    """The gist's network ``nn.Sequential(Linear, Tanh, Linear, Tanh, Linear)`` holding θ.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,), float32 or float64

    Returns
    -------
    torch.nn.Sequential in θ's dtype, its parameters copies of θ's views (no transposes).
    """
    _require()
    dtype = torch.float64 if theta.dtype == np.float64 else torch.float32
    act = nn.Tanh if spec.activation == "tanh" else nn.ReLU
    layers = []
    for layer, (W, b) in enumerate(unflatten(spec, theta)):
        if layer:
            layers.append(act())
        lin = nn.utils.skip_init(nn.Linear, W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))          # (out, in) both sides
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
    return nn.Sequential(*layers)


def _flat(tensors) -> np.ndarray:
    """Concatenate W_0, b_0, W_1, ... into minireptile's flat θ (P,)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors]).numpy().copy()


def _eps(theta: np.ndarray, eps: np.ndarray) -> list[float]:
    # ε rounded to θ's dtype first, as minireptile.reptile_update does
    return [float(e) for e in eps.astype(theta.dtype)]


def train_eager(spec, theta, X, Y, plans, eps, opt) -> np.ndarray:
    """Reptile as openai's PyTorch sine demo: eager autograd, manual SGD on ``.grad``.

    Parameters and return: see :mod:`peers` (θ (P,), X/Y (iters, n_tasks, n_points, d),
    plans (iters, n_tasks, steps, batch), eps (iters,)). Returns θ (P,) after ``iters`` steps.
    """
    check_inputs(spec, theta, X, Y, plans, eps, opt)
    _require()
    model = gist_model(spec, theta)
    params = list(model.parameters())
    Xt, Yt, Pt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(plans)
    iters, n_tasks, steps, _ = plans.shape
    lr, b1, b2, adam_eps = opt.lr, opt.beta1, opt.beta2, opt.eps
    adam = opt.name == "adam"

    def train_on_batch(x, y, t, m, v):
        model.zero_grad()
        ypred = model(x)
        loss = (ypred - y).pow(2).mean()
        loss.backward()
        if not adam:
            for param in params:
                param.data -= lr * param.grad.data         # the gist's inner update
            return
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        with torch.no_grad():
            for param, mi, vi in zip(params, m, v):
                g = param.grad
                mi.mul_(b1).add_((1 - b1) * g)
                vi.mul_(b2).add_((1 - b2) * g * g)
                param.sub_(lr * (mi / bc1) / (torch.sqrt(vi / bc2) + adam_eps))

    for j, e in enumerate(_eps(theta, eps)):
        weights_before = [p.detach().clone() for p in params]
        phi_sum = None
        for i in range(n_tasks):
            if i:                                          # every task starts from θ
                with torch.no_grad():
                    for p, p0 in zip(params, weights_before):
                        p.copy_(p0)
            m = [torch.zeros_like(p) for p in params] if adam else None
            v = [torch.zeros_like(p) for p in params] if adam else None
            for s in range(steps):
                idx = Pt[j, i, s]
                train_on_batch(Xt[j, i, idx], Yt[j, i, idx], s + 1, m, v)
            if n_tasks > 1:
                phi = [p.detach().clone() for p in params]
                phi_sum = phi if phi_sum is None else [a + b for a, b in zip(phi_sum, phi)]
        weights_after = params if n_tasks == 1 else [s / n_tasks for s in phi_sum]
        with torch.no_grad():                              # the gist's outer update
            for p, before, after in zip(params, weights_before, weights_after):
                p.copy_(before + (after - before) * e)
    return _flat(params)


def train_vmap(spec, theta, X, Y, plans, eps, opt) -> np.ndarray:
    """Reptile with the meta-batch vectorised by ``torch.func.vmap`` over ``functional_call``.

    Parameters and return: see :mod:`peers`. Returns θ (P,) after ``iters`` outer steps.
    """
    check_inputs(spec, theta, X, Y, plans, eps, opt)
    _require()
    model = gist_model(spec, theta)
    names = [name for name, _ in model.named_parameters()]
    theta_t = {name: p.detach() for name, p in model.named_parameters()}
    Xt, Yt, Pt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(plans)
    iters, n_tasks, steps, _ = plans.shape
    lr, b1, b2, adam_eps = opt.lr, opt.beta1, opt.beta2, opt.eps
    adam = opt.name == "adam"
    rows = torch.arange(n_tasks)[:, None]                  # (n_tasks, 1)

    def task_loss(params, x, y):                           # one task: x (batch, d_in)
        return (functional_call(model, params, (x,)) - y).pow(2).mean()

    task_grads = vmap(grad(task_loss))                     # params (n_tasks, ...), x (n_tasks, batch, d_in)

    with torch.no_grad():
        for j, e in enumerate(_eps(theta, eps)):
            phi = {k: t.expand(n_tasks, *t.shape) for k, t in theta_t.items()}
            if adam:
                m = {k: torch.zeros_like(t) for k, t in phi.items()}
                v = {k: torch.zeros_like(t) for k, t in phi.items()}
            for s in range(steps):
                idx = Pt[j, :, s]                          # (n_tasks, batch)
                g = task_grads(phi, Xt[j][rows, idx], Yt[j][rows, idx])
                if not adam:
                    phi = {k: phi[k] - lr * g[k] for k in names}
                    continue
                bc1, bc2 = 1 - b1 ** (s + 1), 1 - b2 ** (s + 1)
                for k in names:
                    m[k] = b1 * m[k] + (1 - b1) * g[k]
                    v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k]
                    phi[k] = phi[k] - lr * (m[k] / bc1) / (torch.sqrt(v[k] / bc2) + adam_eps)
            theta_t = {k: theta_t[k] + e * (phi[k].mean(0) - theta_t[k]) for k in names}
    return _flat(theta_t[k] for k in names)


MODES = {"eager": train_eager, "vmap": train_vmap}

"""Conformance adapter for the PyTorch peer: every stage of ``minireptile conformance check``.

Run it (from the repository root)::

    PYTHONPATH=benchmarks minireptile conformance check --impl peers.conformance_torch:TorchAdapter
    PYTHONPATH=benchmarks minireptile conformance bench --impl peers.conformance_torch:TorchAdapter

``reptile`` is the peer itself (:func:`peers.torch_peer.train_vmap`, or ``train_eager`` with
``mode="eager"``) where the peer's contract covers the case (MSE, SGD or Adam with its state reset);
other cases (cross-entropy, Adam with its state carried) run the same loop written here with
``torch.func``. Gradients come from autograd, the Hessian-vector product from a double backward
(the gradient of ⟨∇L, v⟩), and the MAML meta-gradient from autograd through the k unrolled SGD steps
(``create_graph=True``). dtype follows the arrays it is given (float64 by default, ``dtype="float32"``).
"""

from __future__ import annotations

import numpy as np

from . import torch_peer

torch = torch_peer.torch


class TorchAdapter:
    """The PyTorch peer behind the adapter protocol (docs/conformance.md)."""

    def __init__(self, dtype: str = "float64", mode: str = "vmap"):
        torch_peer._require()
        self.dtype = dtype
        self.mode = mode
        self.name = f"PyTorch {torch.__version__} (the train_{mode} peer)"

    # -- the pieces, on a flat θ tensor ------------------------------------------------------------
    @staticmethod
    def _loss(spec, theta, x, y):
        """Mean loss of one batch; theta (P,) tensor, x (B, d_in), y (B, d_out) or (B,) int64."""
        a = x
        for layer, (w, b, fan_in, fan_out) in enumerate(spec.offsets_array().tolist()):
            a = a @ theta[w:b].reshape(fan_out, fan_in).T + theta[b:b + fan_out]
            if layer < spec.n_layers - 1:
                a = torch.tanh(a) if spec.activation == "tanh" else torch.relu(a)
        if spec.loss == "mse":
            return (a - y).pow(2).mean()
        return torch.nn.functional.cross_entropy(a, y)          # mean over the batch

    def _grad(self, spec, theta, x, y, create_graph=False):
        if not theta.requires_grad:
            theta = theta.detach().requires_grad_(True)
        loss = self._loss(spec, theta, x, y)
        return loss, torch.autograd.grad(loss, theta, create_graph=create_graph)[0]

    def _inner(self, spec, theta, x, y, plan, opt, state=None):
        """k steps on one task; returns φ after each step (list) and the final Adam (m, v, t)."""
        phi, phis = theta, []
        if opt.name == "adam":
            m, v, t = state if state is not None else (torch.zeros_like(theta), torch.zeros_like(theta), 0)
        for s in range(plan.shape[0]):
            g = self._grad(spec, phi, x[plan[s]], y[plan[s]])[1]
            with torch.no_grad():
                if opt.name == "sgd":
                    phi = phi - opt.lr * g
                else:
                    t += 1
                    m = opt.beta1 * m + (1 - opt.beta1) * g
                    v = opt.beta2 * v + (1 - opt.beta2) * g * g
                    phi = phi - opt.lr * (m / (1 - opt.beta1**t)) / (torch.sqrt(v / (1 - opt.beta2**t)) + opt.eps)
            phis.append(phi.detach())
        return phis, ((m, v, t) if opt.name == "adam" else None)

    # -- the protocol ------------------------------------------------------------------------------
    def to_native(self, a: np.ndarray):
        return torch.from_numpy(a)

    def grad(self, spec, theta, x, y):
        loss, g = self._grad(spec, torch.from_numpy(theta), torch.from_numpy(x), torch.from_numpy(y))
        return float(loss.detach()), g.numpy()

    def hvp(self, spec, theta, x, y, v):
        theta_t = torch.from_numpy(theta).clone().requires_grad_(True)
        g = self._grad(spec, theta_t, torch.from_numpy(x), torch.from_numpy(y), create_graph=True)[1]
        return torch.autograd.grad(g @ torch.from_numpy(v), theta_t)[0].numpy()   # double backward: H·v

    def inner_loop(self, spec, theta, x, y, plan, opt):
        phis, _ = self._inner(spec, torch.from_numpy(theta), torch.from_numpy(x), torch.from_numpy(y),
                              torch.from_numpy(plan), opt)
        return torch.stack(phis).numpy()

    def fomaml(self, spec, theta, X, Y, plan, lr):
        from minireptile import InnerOptimizer
        out = []
        for i in range(X.shape[0]):
            x, y, p = torch.from_numpy(X[i]), torch.from_numpy(Y[i]), torch.from_numpy(plan[i])
            phi = self._inner(spec, torch.from_numpy(theta), x, y, p[:-1], InnerOptimizer("sgd", lr))[0]
            phi = phi[-1] if phi else torch.from_numpy(theta)
            out.append(self._grad(spec, phi, x[p[-1]], y[p[-1]])[1])
        return torch.stack(out).numpy()

    def maml(self, spec, theta, X, Y, plan, query, lr):
        out = []
        for i in range(X.shape[0]):
            x, y, p, q = (torch.from_numpy(a[i]) for a in (X, Y, plan, query))
            theta_t = torch.from_numpy(theta).clone().requires_grad_(True)
            phi = theta_t
            for s in range(p.shape[0]):                           # unrolled, differentiable
                phi = phi - lr * self._grad(spec, phi, x[p[s]], y[p[s]], create_graph=True)[1]
            out.append(torch.autograd.grad(self._loss(spec, phi, x[q], y[q]), theta_t)[0])
        return torch.stack(out).numpy()

    def reptile(self, spec, theta, X, Y, plans, eps, opt):
        if spec.loss == "mse" and opt.state_policy == "reset":   # the peer's contract
            return torch_peer.MODES[self.mode](spec, theta, X, Y, plans, eps, opt)
        th = torch.from_numpy(theta.copy())
        Xt, Yt, Pt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(plans)
        carried = None
        for j, e in enumerate(eps.astype(theta.dtype).tolist()):
            phis, states = [], []
            for i in range(X.shape[1]):
                state = carried if opt.state_policy == "carry" else None
                phi, st = self._inner(spec, th, Xt[j, i], Yt[j, i], Pt[j, i], opt, state)
                phis.append(phi[-1])
                states.append(st)
            th = th + e * (torch.stack(phis).mean(0) - th)        # the Reptile outer update
            if opt.name == "adam" and opt.state_policy == "carry":
                carried = (torch.stack([s[0] for s in states]).mean(0), torch.stack([s[1] for s in states]).mean(0),
                           states[0][2])
        return th.numpy()

"""Per-element math shared by the compiled backends.

Contract
--------
Plain, undecorated scalar functions. The Numba CPU backend compiles them with ``numba.njit`` and
the CUDA backend with ``numba.cuda.jit(device=True)``, so the activation, its derivative and the
optimizer updates are written once for both (the NumPy reference in :mod:`minireptile.reference`
is the oracle they are tested against). Only scalar arithmetic and ``math`` functions that both
targets support may appear here; no arrays are allocated and nothing random is drawn.

Integer codes select behaviour at run time, so one compiled signature serves every choice.
"""

from __future__ import annotations

import math

ACT_TANH = 0
ACT_RELU = 1
LOSS_MSE = 0
LOSS_CE = 1
OPT_SGD = 0
OPT_ADAM = 1

ACT_CODES = {"tanh": ACT_TANH, "relu": ACT_RELU}
LOSS_CODES = {"mse": LOSS_MSE, "ce": LOSS_CE}
OPT_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}


def activate(z, act):
    """Hidden activation of a pre-activation ``z``."""
    if act == ACT_TANH:
        return math.tanh(z)
    return z if z > 0 else z * 0


def activate_grad(z, a, act):
    """d act/dz from the pre-activation ``z`` and the activation ``a``."""
    if act == ACT_TANH:
        return 1 - a * a
    return (z > 0) * (a * 0 + 1)


def adam_update(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2):
    """One Adam update of one parameter; ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t``.

    Returns (p, m, v). Mirrors :func:`minireptile.reference.adam_step`.
    """
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr * (m / bc1) / (math.sqrt(v / bc2) + eps)
    return p, m, v

"""Per-element math shared by the compiled backends.

Contract
--------
Plain, undecorated scalar functions. The Numba CPU backend compiles them with ``numba.njit`` and
the CUDA backend with ``numba.cuda.jit(device=True)``, so the activation, its derivative and the
optimizer updates are written once for both (the NumPy reference in :mod:`minireptile.reference`
is the oracle they are tested against). Only scalar arithmetic and ``math`` functions that both
targets support may appear here; no arrays are allocated and nothing random is drawn.

Integer codes select behaviour at run time, so one compiled signature serves every choice.

Precision: every function returns the dtype it is given. Constants that must not promote float32
to float64 are written ``np.float32(c)`` (exact for 0, 1, 2; float32 op float64 stays float64), and
the tanh approximations come in one version per dtype (:func:`tanh_f32`, :func:`tanh_f64`).

Why a tanh of our own: the Numba build we ship against has no SVML, so ``math.tanh`` in a loop is
one scalar libm call per element and keeps the loop from vectorising (it alone made the CPU kernel
~4.5x slower). :func:`tanh_f32` and :func:`tanh_f64` are branch-free arithmetic (a clamp, a
rational function, one division, selects). Both propagate NaN, keep the sign of ±0 and saturate to
±1 for huge or infinite inputs. Accuracy against ``np.tanh`` (tested on a dense grid and on
hypothesis-drawn values): float32 max abs error < 4e-7, float64 max rel error < 1e-15. The CUDA
backend compiles them as written (NVVM, like nvcc, may fuse ``a * b + c`` into one multiply-add by
default); the Numba CPU kernel evaluates the same formulas in LLVM vector code with each ``a * b + c``
fused where the CPU has FMA (:func:`minireptile.backends.numba_simd.tanh_inplace`), which takes a
fifth of tanh's operations away; it runs them on |x| and puts the sign back (the formulas are odd and
sign-symmetric, so that changes no bit) to drop half of each clamp. Both meet the accuracy bounds above, and they differ by less (at
most 4e-7 in float32 and a relative 1e-15 in float64, tested).
"""

from __future__ import annotations

import math

import numpy as np

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
    """Hidden activation of a pre-activation ``z`` (libm tanh; see :func:`tanh_f32` for speed)."""
    if act == ACT_TANH:
        return math.tanh(z)
    return relu(z)


def relu(z):
    """max(z, 0) in z's dtype; NaN stays NaN, -0 and negatives give ±0 like ``np.maximum(z, 0)``."""
    return z if z > np.float32(0) else z * np.float32(0)


def activate_grad(z, a, act):
    """d act/dz from the pre-activation ``z`` and the activation ``a``.

    For relu, ``z > 0`` exactly when ``relu(z) > 0``, so passing ``a`` for ``z`` gives the same.
    """
    if act == ACT_TANH:
        return np.float32(1) - a * a
    return np.float32(1) if z > np.float32(0) else np.float32(0)


# ---------------------------------------------------------------------------------------------
# vectorisable tanh
# ---------------------------------------------------------------------------------------------
# float32: the rational approximation of Eigen's / XLA's fast tanh (odd degree-13 numerator,
# even degree-6 denominator) on [-7.905, 7.905]; beyond, tanh rounds to within 4e-7 of ±1.
_T32_CLAMP = 7.90531110763549805
_T32_TINY = 0.0004  # below this tanh(x) = x to float32 precision
_T32_A13, _T32_A11, _T32_A9 = -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11
_T32_A7, _T32_A5, _T32_A3 = 5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04
_T32_A1 = 4.89352455891786e-03
_T32_B6, _T32_B4 = 1.19825839466702e-06, 1.18534705686654e-04
_T32_B2, _T32_B0 = 2.26843463243900e-03, 4.89352518554385e-03


def tanh_f32(x):
    """tanh of a float32 in float32 arithmetic: max abs error vs ``np.tanh`` < 4e-7."""
    c = np.float32(_T32_CLAMP)
    xc = c if x > c else (-c if x < -c else x)            # NaN falls through unchanged
    x2 = xc * xc
    p = x2 * np.float32(_T32_A13) + np.float32(_T32_A11)
    p = p * x2 + np.float32(_T32_A9)
    p = p * x2 + np.float32(_T32_A7)
    p = p * x2 + np.float32(_T32_A5)
    p = p * x2 + np.float32(_T32_A3)
    p = p * x2 + np.float32(_T32_A1)
    q = x2 * np.float32(_T32_B6) + np.float32(_T32_B4)
    q = q * x2 + np.float32(_T32_B2)
    q = q * x2 + np.float32(_T32_B0)
    r = (xc * p) / q
    return x if abs(x) < np.float32(_T32_TINY) else r   # also keeps ±0


# float64: Cephes' rational approximation of tanh on |y| <= 0.625 (rel. error 2.5e-16), applied to
# y = x / 32 and carried back up by five doublings tanh(2y) = 2t / (1 + t²), kept as a fraction
# p/q so that the whole thing costs one division. Each doubling has relative condition number
# (1 - t²)/(1 + t²) <= 1, so errors do not grow beyond a few ulp. |x| is clamped to 20, where
# tanh rounds to ±1; below 1e-8, tanh(x) = x to double precision.
_T64_CLAMP = 20.0
_T64_TINY = 1e-8
_T64_P0, _T64_P1, _T64_P2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_T64_Q1, _T64_Q2, _T64_Q3 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


def tanh_f64(x):
    """tanh of a float64: max relative error vs ``np.tanh`` < 1e-15."""
    xc = _T64_CLAMP if x > _T64_CLAMP else (-_T64_CLAMP if x < -_T64_CLAMP else x)
    y = xc * 0.03125                                       # x / 32, exact
    s = y * y
    ps = (_T64_P0 * s + _T64_P1) * s + _T64_P2
    qs = ((s + _T64_Q1) * s + _T64_Q2) * s + _T64_Q3
    p = y * (qs + s * ps)                                  # tanh(y) = p / q
    q = qs
    for _ in range(5):                                     # tanh(2y) = 2pq / (p² + q²)
        p, q = 2.0 * p * q, p * p + q * q
    r = p / q
    r = 1.0 if r > 1.0 else (-1.0 if r < -1.0 else r)      # rounding can land one ulp beyond ±1
    return x if abs(x) < _T64_TINY else r


def adam_update(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2):
    """One Adam update of one parameter; ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t``.

    Returns (p, m, v). Mirrors :func:`minireptile.reference.adam_step`.
    """
    one = np.float32(1)
    m = beta1 * m + (one - beta1) * g
    v = beta2 * v + (one - beta2) * g * g
    p = p - lr * (m / bc1) / (math.sqrt(v / bc2) + eps)
    return p, m, v

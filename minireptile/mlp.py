"""MLP layout: one flat parameter vector and the offsets table into it.

Contract
--------
An MLP is described by a frozen :class:`MLPSpec` (layer sizes, hidden activation, loss).
Its parameters θ are ONE contiguous 1-D array of length ``spec.n_params``. Layer ``l``
(0-based) owns

    W_l  shape (sizes[l+1], sizes[l])   stored (out, in) like ``torch.nn.Linear.weight``
    b_l  shape (sizes[l+1],)

at offsets ``spec.offsets[l] = (w_off, b_off)``, laid out W_0, b_0, W_1, b_1, ... with no gaps.
:func:`unflatten` hands out named *views* into θ (no copies), so writing into a view writes θ.

This module computes no math on data: forward/backward live in :mod:`minireptile.reference`
(the readable oracle) and in the compiled backends, which take θ and the offsets table.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("tanh", "relu")
LOSSES = ("mse", "ce")
DTYPES = (np.float32, np.float64)


@dataclass(frozen=True)
class MLPSpec:
    """Architecture of a multilayer perceptron.

    Parameters
    ----------
    sizes : tuple of int
        ``(d_in, h_1, ..., h_H, d_out)``; at least two entries, all >= 1.
    activation : {"tanh", "relu"}
        Hidden-layer nonlinearity (the output layer is linear).
    loss : {"mse", "ce"}
        ``"mse"``: mean over batch and outputs of ``(out - y)**2`` with float targets ``(B, d_out)``.
        ``"ce"``: softmax cross-entropy, mean over the batch, integer labels ``(B,)`` in
        ``[0, d_out)``.
    """

    sizes: tuple[int, ...]
    activation: str = "tanh"
    loss: str = "mse"
    offsets: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    n_params: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        raw = self.sizes
        if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
            raise TypeError(f"sizes: expected a sequence of ints, got {raw!r}")
        raw = tuple(raw)
        if any(isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) for s in raw):
            raise TypeError(f"sizes: expected a sequence of ints (not floats, bools or text), got {raw!r}")
        sizes = tuple(int(s) for s in raw)
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least (d_in, d_out), got {sizes!r}")
        if any(s < 1 for s in sizes):
            raise ValueError(f"sizes: every layer size must be >= 1, got {sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {self.activation!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.loss == "ce" and sizes[-1] < 2:
            raise ValueError(f"sizes: loss='ce' needs d_out >= 2 classes, got d_out={sizes[-1]}")
        offsets = []
        off = 0
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            offsets.append((off, off + fan_out * fan_in))
            off += fan_out * fan_in + fan_out
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "offsets", tuple(offsets))
        object.__setattr__(self, "n_params", off)

    @property
    def n_layers(self) -> int:
        """Number of linear layers (hidden layers + 1)."""
        return len(self.sizes) - 1

    @property
    def d_in(self) -> int:
        return self.sizes[0]

    @property
    def d_out(self) -> int:
        return self.sizes[-1]

    def offsets_array(self) -> np.ndarray:
        """Offsets table for compiled code: int64 array (n_layers, 4) of (w_off, b_off, fan_in, fan_out)."""
        return np.array(
            [(w, b, i, o) for (w, b), i, o in zip(self.offsets, self.sizes[:-1], self.sizes[1:])],
            dtype=np.int64,
        )

    def flops_per_example(self) -> int:
        """Multiply-adds x2 of one forward + backward pass for one example (weights only).

        Forward: one MAC per weight. Backward: one MAC per weight for dW and one for the
        input gradient (skipped for the first layer, whose input needs no gradient).
        """
        macs = 0
        for layer, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = fan_in * fan_out
            macs += 2 * w if layer == 0 else 3 * w
        return 2 * macs

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes), "activation": self.activation, "loss": self.loss}

    @classmethod
    def from_dict(cls, d: dict) -> "MLPSpec":
        return cls(tuple(d["sizes"]), d["activation"], d["loss"])


def unflatten(spec: MLPSpec, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Named views ``[(W_0, b_0), ...]`` into a flat θ.

    Parameters
    ----------
    spec : MLPSpec
    theta : ndarray, shape (P,)
        Must be C-contiguous so that the views share its memory.

    Returns
    -------
    list of (W, b)
        ``W`` has shape (out, in) and ``b`` shape (out,); both are views of ``theta``.
    """
    if theta.ndim != 1 or theta.shape[0] != spec.n_params:
        raise ValueError(f"theta: expected shape ({spec.n_params},), got {theta.shape}")
    layers = []
    for (w_off, b_off), fan_in, fan_out in zip(spec.offsets, spec.sizes[:-1], spec.sizes[1:]):
        W = theta[w_off:b_off].reshape(fan_out, fan_in)
        b = theta[b_off : b_off + fan_out]
        layers.append((W, b))
    return layers


def init_params(spec: MLPSpec, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Initialise θ like ``torch.nn.Linear``'s default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Parameters
    ----------
    spec : MLPSpec
    rng : numpy.random.Generator
        The only source of randomness; draws W_0, b_0, W_1, ... in that order, in float64,
        then casts, so float32 and float64 θ start from the same numbers.
    dtype : {numpy.float32, numpy.float64}

    Returns
    -------
    theta : ndarray, shape (P,), dtype ``dtype``
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected numpy.random.Generator, got {type(rng).__name__}")
    theta = np.empty(spec.n_params, dtype=np.float64)
    for W, b in unflatten(spec, theta):
        bound = 1.0 / np.sqrt(W.shape[1])
        W[...] = rng.uniform(-bound, bound, size=W.shape)
        b[...] = rng.uniform(-bound, bound, size=b.shape)
    return theta.astype(dtype)

"""Exceptions a user of minireptile can meet (docs/errors.md lists each with what to do).

Bad arguments raise the built-in ``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong
shape or value); every message starts with the argument's name.
"""

from __future__ import annotations

import numpy as np


class BackendUnavailableError(RuntimeError):
    """A backend's optional dependency or device is missing. The message says what to install."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or θ.

    Attributes
    ----------
    iteration : int
        The outer iteration (0-based) at which the non-finite value appeared.
    theta : ndarray, shape (P,)
        The last finite θ (before that iteration).
    """

    def __init__(self, message: str, iteration: int, theta: np.ndarray):
        super().__init__(message)
        self.iteration = iteration
        self.theta = theta


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, foreign or of another format version."""


def missing_extra(package: str, extra: str) -> str:
    """Message for an optional dependency that is not installed."""
    return f"{package} is not installed: install it with  pip install \"minireptile[{extra}]\""

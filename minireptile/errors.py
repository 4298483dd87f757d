"""Exceptions a user of minireptile can meet (docs/errors.md lists each with what to do).

Bad arguments raise the built-in ``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong
shape or value); every message starts with the argument's name.
"""

from __future__ import annotations

import numpy as np


class BackendUnavailableError(RuntimeError):
    """A backend's optional dependency or device is missing. The message says what to install."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or θ (NaN or inf).

    Raised by :func:`minireptile.meta_train` (and evaluation, when adapting gives a non-finite
    loss). The ``minireptile`` commands catch it, write ``theta`` to the checkpoint and exit with
    status 3. What to do: lower the inner learning rate or the outer step size.

    Attributes
    ----------
    iteration : int or None
        The outer iteration (0-based) at which the non-finite value appeared; that many
        iterations completed. None outside training.
    theta : ndarray, shape (P,) or None
        The last finite θ (before that iteration).
    state : AdamState or None
        The carried Adam state that goes with ``theta`` (policy 'carry'), else None.
    """

    def __init__(self, message: str, iteration: int | None = None, theta: np.ndarray | None = None,
                 state=None):
        super().__init__(message)
        self.iteration = iteration
        self.theta = theta
        self.state = state


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, foreign or of another format version.

    The message names the file and what is wrong with it. The ``minireptile`` commands report it
    on one line and exit with status 2.
    """


def missing_extra(package: str, extra: str) -> str:
    """Message for an optional dependency that is not installed."""
    return f"{package} is not installed: install it with  pip install \"minireptile[{extra}]\""

"""Inner-loop optimizer settings and the values an inner loop hands back.

These are plain frozen records shared by every backend; the update rules themselves are in
:mod:`minireptile.reference` (``sgd_step``, ``adam_step``) and mirrored by the compiled kernels.

Adam state policy
-----------------
``state_policy="reset"`` (default): every task starts Adam from m = v = 0, t = 0, so a task's
adaptation depends only on θ and its own data. ``state_policy="carry"``: like
openai/supervised-reptile, whose single TF Adam optimizer keeps its moments from task to task.
Here the tasks of a meta-batch run in parallel, so each starts from the carried (m, v, t); after
the outer step the carried moments become the mean over the meta-batch's tasks, and t advances by
the number of inner steps k per outer iteration. supervised-reptile runs the tasks one after the
other through one optimizer, so its t advances by k per task, k·n per outer iteration, and its
moments are handed from task to task rather than averaged. Adam's bias correction
√(1 − β2^t) / (1 − β1^t) therefore differs early in training: after 100 iterations of meta-batch 5
with k = 5, t = 500 here and 2500 there, √(1 − 0.999^t) = 0.627 against 0.958. With one task per
outer step (meta-batch 1) the two are the same algorithm. The carried state is saved in checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

OPTIMIZERS = ("sgd", "adam")
STATE_POLICIES = ("reset", "carry")


@dataclass(frozen=True)
class InnerOptimizer:
    """Optimizer used inside a task.

    Parameters
    ----------
    name : {"sgd", "adam"}
    lr : float
        Step size, > 0.
    beta1, beta2 : float
        Adam moment decays in [0, 1); ``beta1=0`` as in the Reptile paper.
    eps : float
        Adam denominator guard, > 0.
    state_policy : {"reset", "carry"}
        Whether Adam moments restart for every task (default) or carry across tasks.
    """

    name: str = "sgd"
    lr: float = 0.02
    beta1: float = 0.0
    beta2: float = 0.999
    eps: float = 1e-8
    state_policy: str = "reset"

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.name!r}")
        _positive("lr", self.lr)
        _positive("eps", self.eps)
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
        if self.state_policy not in STATE_POLICIES:
            raise ValueError(
                f"state_policy: expected one of {STATE_POLICIES}, got {self.state_policy!r}"
            )

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "lr", "beta1", "beta2", "eps", "state_policy")}


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")


class AdamState(NamedTuple):
    """Adam moments. ``m``, ``v``: shape (P,) or (n_tasks, P); ``t``: steps taken so far."""

    m: np.ndarray
    v: np.ndarray
    t: int


class InnerResult(NamedTuple):
    """What an inner loop returns.

    phi : ndarray, shape (n_tasks, P)   adapted parameters
    loss : ndarray, shape (n_tasks,)    mean minibatch loss over the inner steps (pre-update)
    state : AdamState or None           final Adam moments per task, or None for SGD
    """

    phi: np.ndarray
    loss: np.ndarray
    state: AdamState | None

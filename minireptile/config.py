"""Outer-loop hyperparameters as a frozen dataclass, shared by the training driver and validation.

:class:`ReptileConfig` lives in its own module so that :mod:`minireptile.validation` can check it
without importing the training driver (:mod:`minireptile.reptile`) that validation serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .optim import InnerOptimizer


@dataclass(frozen=True)
class ReptileConfig:
    """Outer-loop hyperparameters.

    Parameters
    ----------
    iters : int
        Outer iterations T (> 0).
    meta_batch : int
        Tasks per outer iteration (1 = serial Reptile).
    eps0, eps_final : float
        ε schedule end points (eps0 > 0, eps_final >= 0).
    inner : InnerOptimizer
    inner_steps, inner_batch : int
        k inner steps of minibatches of this size.
    task_block : int or None
        Tasks per reduction block: the compiled backends and the distributed meta-batch sum φ over
        the tasks of each block in task order, then the block sums in block order, so a run gives
        bitwise the same θ in one process and on any number of workers. None (default): one block.
        The reference's ``mean`` is the definition the blocked sums equal to rounding.
    """

    iters: int = 30000
    meta_batch: int = 1
    eps0: float = 0.1
    eps_final: float = 0.0
    inner: InnerOptimizer = field(default_factory=InnerOptimizer)
    inner_steps: int = 5
    inner_batch: int = 10
    task_block: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inner, InnerOptimizer):
            raise TypeError(f"inner: expected an InnerOptimizer (e.g. InnerOptimizer('sgd', 0.02)), got "
                            f"{type(self.inner).__name__} {self.inner!r}")
        for name in ("iters", "meta_batch", "inner_steps", "inner_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        tb = self.task_block
        if tb is not None and (isinstance(tb, bool) or not isinstance(tb, (int, np.integer)) or tb < 1):
            raise ValueError(f"task_block: expected an integer >= 1 or None, got {tb!r}")
        if not (np.isfinite(self.eps0) and self.eps0 > 0):
            raise ValueError(f"eps0: expected a finite number > 0, got {self.eps0!r}")
        if not (np.isfinite(self.eps_final) and self.eps_final >= 0):
            raise ValueError(f"eps_final: expected a finite number >= 0, got {self.eps_final!r}")

    def to_dict(self) -> dict:
        """JSON-serialisable fields (``ReptileConfig(**d, inner=InnerOptimizer(**d["inner"]))`` rebuilds it)."""
        d = {k: getattr(self, k) for k in ("iters", "meta_batch", "eps0", "eps_final", "inner_steps", "inner_batch",
                                        "task_block")}
        d["inner"] = self.inner.to_dict()
        return d


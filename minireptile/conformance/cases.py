"""The cases of the golden suite: what each one runs, and its inputs drawn from a fixed seed.

Contract
--------
A case is a frozen :class:`Case` (network, optimizer, meta-batch size); :func:`case_inputs` draws its
input arrays from ``numpy.random.default_rng((SEED, index))``, so the inputs depend only on the
case's position in :data:`CASES`. Every array is float64 or int64 (shapes: n = n_tasks, k = inner
steps, b = minibatch, T = outer iterations, P = parameters):

    theta0   (P,)             the initial parameters, flat (layout: :mod:`minireptile.mlp`)
    X        (T, n, N, d_in)  the tasks' inputs, one meta-batch per outer iteration
    Y        (T, n, N, d_out) float targets ("mse"), or (T, n, N) int64 class labels ("ce")
    plans    (T, n, k, b)     int64 point indices of each inner step's minibatch
    eps      (T,)             the outer step sizes, ε_t = ε0 + (ε_final − ε0)·t/T
    v        (P,)             the direction of the Hessian-vector product
    query    (n, q)           int64 query points of iteration 0's tasks (MAML's outer loss)

X and float Y are multiples of 1/16 in [−2, 2] (exact in float32 and float64, and they compress);
θ0 and v are full-precision float64. Nothing else here is random.

The stages (the expected outputs, in the order a port is usually written) are listed in
:data:`STAGES`; :mod:`minireptile.conformance.generate` computes them with the NumPy reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mlp import MLPSpec, init_params
from ..optim import InnerOptimizer
from ..reptile import epsilon_schedule

FORMAT = "minireptile-conformance"
VERSION = 1
SEED = 2018
ITERS = 100                     # T: θ is checked after 1, 10 and 100 outer iterations
CHECKPOINTS = (1, 10, 100)
N_POINTS, STEPS, BATCH, QUERY = 8, 3, 4, 4
EPS0, EPS_FINAL = 0.5, 0.05
D_IN = 3
SHAPES = {"wide": (D_IN, 8, 8), "narrow": (D_IN, 5, 1)}    # hidden layers; "narrow" has a hidden layer of 1
D_OUT = {"mse": 2, "ce": 3}
OPTIMIZERS = {
    "sgd": InnerOptimizer("sgd", lr=0.05),
    "adam0": InnerOptimizer("adam", lr=0.01, beta1=0.0, beta2=0.999, eps=1e-8, state_policy="reset"),
    "adamcarry": InnerOptimizer("adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, state_policy="carry"),
}
META_BATCHES = (1, 5)

# the stages, in order: (output name, what it is). "phi_s" stands for phi_1 ... phi_k.
STAGES = (
    ("loss", "loss L(θ0) on the first minibatch (task 0 of iteration 0, inner step 1)"),
    ("grad", "∇L(θ0) on the same minibatch"),
    ("hvp", "∇²L(θ0)·v on the same minibatch"),
    ("phi_s", "φ_s, task 0 of iteration 0 after inner step s = 1 … k"),
    ("fomaml_grad", "FOMAML gradient of iteration 0's tasks: k−1 SGD steps, then ∇L_k(φ_{k−1})"),
    ("maml_grad", "exact MAML meta-gradient of iteration 0's tasks through k SGD steps, query loss"),
    ("theta_1", "θ after 1 outer iteration"),
    ("theta_10", "θ after 10 outer iterations"),
    ("theta_100", "θ after 100 outer iterations"),
)


@dataclass(frozen=True)
class Case:
    """One case of the suite: a network, an inner optimizer and a meta-batch size.

    Parameters
    ----------
    shape : {"wide", "narrow"}
        Hidden layers (see :data:`SHAPES`).
    activation : {"tanh", "relu"}
    loss : {"mse", "ce"}
    optimizer : {"sgd", "adam0", "adamcarry"}
        SGD; Adam β1 = 0 with its state reset for every task; Adam β1 = 0.9 with its state carried.
    meta_batch : int
        Tasks per outer iteration (1 = serial Reptile).
    """

    shape: str
    activation: str
    loss: str
    optimizer: str
    meta_batch: int

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.activation}-{self.loss}-{self.optimizer}-mb{self.meta_batch}"

    @property
    def spec(self) -> MLPSpec:
        return MLPSpec((*SHAPES[self.shape], D_OUT[self.loss]), self.activation, self.loss)

    @property
    def opt(self) -> InnerOptimizer:
        return OPTIMIZERS[self.optimizer]

    @property
    def algorithms(self) -> bool:
        """Whether the case holds the FOMAML and MAML gradients (SGD inner loops only)."""
        return self.optimizer == "sgd"

    def outputs(self) -> list[str]:
        """The names of the expected outputs, in stage order."""
        names = ["loss", "grad", "hvp"] + [f"phi_{s}" for s in range(1, STEPS + 1)]
        if self.algorithms:
            names += ["fomaml_grad", "maml_grad"]
        return names + [f"theta_{t}" for t in CHECKPOINTS]


def _cases() -> tuple[Case, ...]:
    """Every activation × loss × optimizer × meta-batch (24), the shape alternating so that each
    shape meets every activation, loss, optimizer and meta-batch size."""
    out = []
    for a, act in enumerate(("tanh", "relu")):
        for l, loss in enumerate(("mse", "ce")):
            for o, opt in enumerate(OPTIMIZERS):
                for m, mb in enumerate(META_BATCHES):
                    shape = ("wide", "narrow")[(a + l + o + m) % 2]
                    out.append(Case(shape, act, loss, opt, mb))
    return tuple(out)


CASES = _cases()


def _grid(rng: np.random.Generator, shape) -> np.ndarray:
    """float64 multiples of 1/16 in [−2, 2]."""
    return rng.integers(-32, 33, size=shape).astype(np.float64) / 16


def case_inputs(index: int) -> dict[str, np.ndarray]:
    """The input arrays of ``CASES[index]`` (see the module docstring for names and shapes)."""
    case = CASES[index]
    spec = case.spec
    rng = np.random.default_rng((SEED, index))
    n = case.meta_batch
    theta0 = init_params(spec, rng)
    X = _grid(rng, (ITERS, n, N_POINTS, spec.d_in))
    if case.loss == "mse":
        Y = _grid(rng, (ITERS, n, N_POINTS, spec.d_out))
    else:
        Y = rng.integers(0, spec.d_out, size=(ITERS, n, N_POINTS)).astype(np.int64)
    plans = rng.integers(0, N_POINTS, size=(ITERS, n, STEPS, BATCH)).astype(np.int64)
    v = rng.standard_normal(spec.n_params)
    query = rng.integers(0, N_POINTS, size=(n, QUERY)).astype(np.int64)
    eps = np.asarray(epsilon_schedule(np.arange(ITERS), ITERS, EPS0, EPS_FINAL), dtype=np.float64)
    return {"theta0": theta0, "X": X, "Y": Y, "plans": plans, "eps": eps, "v": v, "query": query}


def case_config(case: Case) -> dict:
    """The case's settings as JSON-ready values (for the manifest)."""
    return {"spec": case.spec.to_dict(), "optimizer": case.opt.to_dict(), "meta_batch": case.meta_batch,
            "inner_steps": STEPS, "inner_batch": BATCH, "n_points": N_POINTS, "iters": ITERS,
            "eps0": EPS0, "eps_final": EPS_FINAL, "checkpoints": list(CHECKPOINTS),
            "n_params": case.spec.n_params, "algorithms": case.algorithms}

"""Expected outputs of every case, computed by the NumPy reference in float64, and the suite's files.

Contract
--------
:func:`expected_outputs` calls the reference functions and nothing else (no second copy of the math):

    loss, grad     reference.loss_and_grad at θ0 on minibatch plans[0, 0, 0] of task 0
    hvp            algorithms.hvp.hvp at θ0, same minibatch, direction v
    phi_s          reference.inner_loop on task 0 of iteration 0, stopped after s steps
    fomaml_grad    algorithms.maml.fomaml_gradient on iteration 0's tasks  (n_tasks, P)
    maml_grad      algorithms.maml.maml_gradient on iteration 0's tasks, query points ``query``
    theta_t        the NumPy backend's train_chunk (reference inner loop + reptile_update) for t
                   outer iterations from θ0, ε = eps[:t]

Regenerate the shipped suite (maintainers; the content hash pinned in tests/conformance changes
only when the math or the cases change)::

    python -m minireptile.conformance.generate
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import reference
from ..algorithms.hvp import hvp
from ..algorithms.maml import fomaml_gradient, maml_gradient
from ..backends import get_backend
from .cases import CASES, CHECKPOINTS, STEPS, case_inputs
from .suite import SUITE_DIR, manifest_for, save_npz


def expected_outputs(index: int, inputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every expected output of ``CASES[index]`` as float64 arrays (``loss`` has shape ())."""
    case = CASES[index]
    spec, opt = case.spec, case.opt
    a = case_inputs(index) if inputs is None else inputs
    theta0, X, Y, plans = a["theta0"], a["X"], a["Y"], a["plans"]
    idx = plans[0, 0, 0]
    out: dict[str, np.ndarray] = {}
    loss, grad = reference.loss_and_grad(spec, theta0, X[0, 0, idx], Y[0, 0, idx])
    out["loss"], out["grad"] = np.float64(loss), grad
    out["hvp"] = hvp(spec, theta0, X[0, 0, idx], Y[0, 0, idx], a["v"])
    for s in range(1, STEPS + 1):
        out[f"phi_{s}"] = reference.inner_loop(spec, theta0, X[0, :1], Y[0, :1], plans[0, :1, :s], opt).phi[0]
    if case.algorithms:
        out["fomaml_grad"] = fomaml_gradient(spec, theta0, X[0], Y[0], plans[0], opt.lr).grad
        out["maml_grad"] = maml_gradient(spec, theta0, X[0], Y[0], plans[0], a["query"], opt.lr).grad
    numpy = get_backend("numpy")
    for t in CHECKPOINTS:
        out[f"theta_{t}"] = numpy.train_chunk(spec, theta0, X[:t], Y[:t], plans[:t], a["eps"][:t], opt)[0]
    assert list(out) == case.outputs()
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def write_suite(folder: Path) -> None:
    """Write the whole suite (manifest.json and cases/NAME.npz) into ``folder``, which must not exist.

    Written into a temporary folder beside it and renamed into place, so ``folder`` is never half-written.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "cases").mkdir()
        arrays = {}
        for i, case in enumerate(CASES):
            inputs = case_inputs(i)
            expected = expected_outputs(i, inputs)
            arrays[case.name] = {**inputs, **{f"expected/{k}": v for k, v in expected.items()}}
            save_npz(tmp / "cases" / f"{case.name}.npz", arrays[case.name])
        (tmp / "manifest.json").write_text(json.dumps(manifest_for(arrays), indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main() -> int:
    """Replace the shipped suite with a freshly generated one (the old one is removed only on success)."""
    new = SUITE_DIR.with_name(SUITE_DIR.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    write_suite(new)
    old = SUITE_DIR.with_name(SUITE_DIR.name + ".old")
    if SUITE_DIR.exists():
        os.replace(SUITE_DIR, old)
    os.replace(new, SUITE_DIR)
    shutil.rmtree(old, ignore_errors=True)
    from .suite import load_suite
    print(f"wrote {SUITE_DIR} ({len(CASES)} cases), content hash {load_suite().content_hash()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

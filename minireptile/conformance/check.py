"""Compare an implementation's results with the suite, output by output, and name the first stage that fails.

Contract
--------
Results are ``{case name: {output name: array}}`` (output names as in the manifest: ``loss``, ``grad``,
``hvp``, ``phi_1`` …, ``fomaml_grad``, ``maml_grad``, ``theta_1``, ``theta_10``, ``theta_100``). Each
present output is compared with its expected float64 array by the normwise relative error

    rel = max |result − expected| / max |expected|

and passes when it is finite, has the expected shape, and rel <= the manifest's tolerance for the
result's dtype (float64 or float32; any other dtype fails). An output or case that is absent is
*skipped*, never passed. For each case the report names the first output that fails, with a hint
of the usual mistake at that stage.

:func:`read_results` reads a results folder written by any program: ``DIR/NAME.npz`` holding arrays
named like the outputs, or a folder ``DIR/NAME/`` of ``OUTPUT.npy`` files.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .suite import Suite, stage_of, tolerance

PASS, FAIL, SKIP = "pass", "FAIL", "skipped"
STRAY = "(files)"        # read_results: the files that name no case, listed under this key


@dataclass
class Row:
    """One output of one case."""

    case: str
    output: str
    status: str                       # "pass", "FAIL" or "skipped"
    dtype: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    rtol: float | None = None
    note: str = ""


@dataclass
class Report:
    """Rows of every case and output, and per case the first failing output with a hint."""

    rows: list[Row]
    first_failures: dict[str, dict] = field(default_factory=dict)   # case -> {"output", "summary", "hint"}
    implementation: str = ""
    ignored: list[str] = field(default_factory=list)   # result arrays or files that match no output or case

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, SKIP: 0}
        for r in self.rows:
            out[r.status] += 1
        return out

    @property
    def exit_status(self) -> int:
        """0 when every present output passes, 1 when any fails."""
        return 1 if self.counts()[FAIL] else 0

    def to_json(self) -> dict:
        return {"implementation": self.implementation, "counts": self.counts(), "passed": self.exit_status == 0,
                "first_failures": self.first_failures, "ignored": self.ignored, "rows": [asdict(r) for r in self.rows]}

    def lines(self, verbose: bool = True) -> list[str]:
        """The table (every row, or only failures when ``verbose`` is False), then per-case summaries."""
        out = []
        if self.implementation:
            out.append(f"implementation: {self.implementation}")
        head = f"{'case':34} {'output':12} {'status':7} {'dtype':8} {'max abs err':>11} {'max rel err':>11} {'rtol':>7}"
        out += [head, "-" * len(head)]
        for r in self.rows:
            if not verbose and r.status != FAIL:
                continue
            num = (f"{r.max_abs:11.3e} {r.max_rel:11.3e}" if r.max_abs is not None and np.isfinite(r.max_abs)
                   else f"{'-':>11} {'-':>11}")
            tol = f"{r.rtol:7.0e}" if r.rtol is not None else f"{'-':>7}"
            line = f"{r.case:34} {r.output:12} {r.status:7} {r.dtype or '-':8} {num} {tol}"
            out.append(line + (f"  {r.note}" if r.note else ""))
        c = self.counts()
        out.append(f"{c[PASS]} passed, {c[FAIL]} failed, {c[SKIP]} skipped "
                   f"({len({r.case for r in self.rows})} cases)")
        if self.ignored:
            shown = ", ".join(self.ignored[:8]) + (f", and {len(self.ignored) - 8} more (--json lists them)"
                                                   if len(self.ignored) > 8 else "")
            out.append(f"ignored (no such case or output in the suite): {shown}")
        for case, f in self.first_failures.items():
            out.append(f"{case}: {f['summary']}: {f['hint']}")
        stage = self.first_failing_stage()
        if stage is not None:
            out.append(f"first stage that fails: {stage}")
        return out

    def first_failing_stage(self) -> str | None:
        """The earliest stage (in stage order) at which some case fails, by name."""
        if not self.first_failures:
            return None
        order = {}
        for i, r in enumerate(self.rows):
            order.setdefault(r.output, i)
        first = min(self.first_failures.values(), key=lambda f: order.get(f["output"], 0))
        return stage_label(first["output"])


def stage_label(output: str) -> str:
    """Human name of an output: ``phi_2`` -> "inner step 2", ``theta_10`` -> "θ after 10 iterations"."""
    if output.startswith("phi_"):
        return f"inner step {output[4:]}"
    if output.startswith("theta_"):
        n = output[6:]
        return f"θ after {n} iteration{'s' if n != '1' else ''}"
    return {"loss": "loss", "grad": "gradient", "hvp": "Hessian-vector product", "fomaml_grad": "FOMAML gradient",
            "maml_grad": "MAML meta-gradient"}.get(output, output)


def compare_array(result, expected: np.ndarray, output: str) -> tuple[str, str | None, float | None, float | None,
                                                                      float | None, str]:
    """(status, dtype, max_abs, max_rel, rtol, note) of one result against its expected array."""
    r = np.asarray(result)
    if r.dtype not in (np.float32, np.float64):
        return FAIL, r.dtype.name, None, None, None, f"dtype {r.dtype.name}: expected float64 or float32"
    dtype = r.dtype.name
    rtol = tolerance(output, dtype)
    if expected.shape == () and r.shape == (1,):
        r = r.reshape(())
    if r.shape != expected.shape:
        return FAIL, dtype, None, None, rtol, f"shape {r.shape}: expected {expected.shape}"
    if not np.isfinite(r).all():
        return FAIL, dtype, float("nan"), float("nan"), rtol, "holds NaN or inf"
    diff = float(np.max(np.abs(r.astype(np.float64) - expected))) if r.size else 0.0
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    rel = diff / max(scale, np.finfo(np.float64).tiny)
    return (PASS if rel <= rtol else FAIL), dtype, diff, rel, rtol, ""


def check_results(suite: Suite, results: dict[str, dict], skipped: dict | None = None,
                  implementation: str = "", errors: dict | None = None) -> Report:
    """Compare ``results`` with every case of ``suite``.

    Parameters
    ----------
    suite : Suite
    results : dict
        ``{case: {output: array-like}}``; missing cases or outputs are skipped.
    skipped : dict, optional
        ``{(case, output): reason}`` for outputs an adapter declined (the reason is shown).
    implementation : str
        Its name, for the report.
    errors : dict, optional
        ``{(case, output): message}`` for outputs whose computation raised: each fails with the message.

    Returns
    -------
    Report
    """
    skipped, errors = skipped or {}, errors or {}
    rows = []
    first = {}
    for c in suite.cases:
        name = c["name"]
        got = results.get(name)
        expected = None
        case_rows = []
        for output in c["outputs"]:
            if (name, output) in errors:
                case_rows.append(Row(name, output, FAIL, note=errors[name, output]))
                continue
            if got is None or output not in got:
                note = skipped.get((name, output), "case absent" if got is None else "output absent")
                case_rows.append(Row(name, output, SKIP, note=note))
                continue
            if expected is None:
                expected = suite.arrays(name)
            status, dtype, mabs, mrel, rtol, note = compare_array(got[output], expected[f"expected/{output}"], output)
            case_rows.append(Row(name, output, status, dtype, mabs, mrel, rtol, note))
        rows += case_rows
        failed = [r for r in case_rows if r.status == FAIL]
        if failed:
            first[name] = _first_failure(c, case_rows, failed[0])
    known = {c["name"]: set(c["outputs"]) for c in suite.cases}
    inputs = {c["name"]: set(c["inputs"]) for c in suite.cases}   # a case's inputs beside the results: not stray
    ignored = sorted(k if name == STRAY else f"{name}/{k}" for name, got in results.items() for k in got
                     if k not in known.get(name, ()) and k not in inputs.get(name, ()))
    return Report(rows, first, implementation, ignored)


def _first_failure(case: dict, rows: list[Row], bad: Row) -> dict:
    done = []
    for r in rows:
        if r is bad:
            break
        done.append(f"{stage_label(r.output)} {'ok' if r.status == PASS else 'skipped'}")
    summary = ", ".join(done + [f"{stage_label(bad.output)} differs"])
    return {"output": bad.output, "summary": summary, "hint": hint(case["config"], bad.output, bad.note)}


def hint(config: dict, output: str, note: str = "") -> str:
    """The usual mistake when ``output`` is the first to fail in a case with these settings."""
    if note:
        return note
    loss = config["spec"]["loss"]
    opt = config["optimizer"]
    adam = opt["name"] == "adam"
    carry = adam and opt["state_policy"] == "carry"
    batched = config["meta_batch"] > 1
    stage = stage_of(output)
    if stage == "loss":
        return ("check the loss: softmax cross-entropy is −log softmax(out)[y] averaged over the batch (the mean, "
                "not the sum)" if loss == "ce" else
                "check the loss: MSE is the mean of (out − y)² over the batch and the outputs")
    if stage == "grad":
        text = "check the backward pass and the θ layout (per layer W (out, in) row-major, then b)"
        return text + ("; the cross-entropy gradient softmax − onehot(y) is divided by the batch size"
                       if loss == "ce" else "; the MSE gradient is 2(out − y)/(B·d_out)")
    if stage == "hvp":
        return "check the second-order pass: the activation's second derivative" + \
            (" and the softmax Jacobian" if loss == "ce" else "")
    if stage == "phi_s":
        s = int(output[4:])
        batch = "inner step s uses minibatch plan[s−1] (rows of the task's points in plan order)"
        if s == 1:
            return ("check the first Adam step (m, v from zero, bias corrections with t = 1, eps added after the "
                    f"square root) and that {batch}" if adam else
                    f"check the inner update φ ← φ − α·∇L(φ) and that {batch}")
        return ("check your Adam bias correction: step s uses t = s (1 − β^t with t = 1, 2, 3, …) and m, v carry "
                f"from step to step; and that {batch}" if adam else f"check that {batch}")
    if stage == "fomaml_grad":
        return ("check FOMAML: k−1 SGD steps on minibatches 1 … k−1, then the gradient at φ_{k−1} on minibatch k, "
                "one row per task")
    if stage == "maml_grad":
        return ("check the second-order term: the MAML meta-gradient is (I − αH_1)⋯(I − αH_k)·∇L_q(φ_k), H_s the "
                "Hessian at φ_{s−1} on minibatch s, L_q the loss on the task's query points")
    if output == "theta_1":
        text = "check the outer update θ ← θ + ε_0·(mean_i φ_i − θ): its sign, ε_0 = eps[0], the mean over tasks"
        if adam and batched:
            text += ("; with state carried every task starts from the same carried moments" if carry else
                     "; and that Adam's state is reset for every task")
        return text
    if output == "theta_10":
        text = "check the ε schedule: iteration t uses eps[t] = ε0 + (ε_final − ε0)·t/T (annealed, not constant)"
        if carry:
            text += "; and the carried Adam state: after each outer step m, v are the mean over tasks, t advances by k"
        elif adam:
            text += "; and that Adam's state (m, v and t) is reset for every task and every iteration"
        return text
    return ("differences that grow over many iterations: check the end of the ε schedule and the precision of "
            "the arithmetic (ε rounded to θ's dtype)")


def read_results(folder: Path | str, suite: Suite) -> dict[str, dict[str, np.ndarray]]:
    """Read ``folder/NAME.npz`` or ``folder/NAME/OUTPUT.npy`` for each case of ``suite``.

    Files and folders that name no case are listed under the key ``STRAY`` (``"(files)"``), so that the
    report can show them as ignored.

    Raises
    ------
    ValueError
        ``folder`` is not a folder, holds no result of any case, or a file cannot be read as npz/npy.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    results = {}
    for c in suite.cases:
        name = c["name"]
        npz, sub = folder / f"{name}.npz", folder / name
        try:
            if npz.is_file():
                with np.load(npz, allow_pickle=False) as z:
                    results[name] = {k.removeprefix("expected/"): z[k] for k in z.files}
            elif sub.is_dir():
                results[name] = {f.stem: np.load(f, allow_pickle=False) for f in sorted(sub.glob("*.npy"))}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{npz if npz.is_file() else sub}: unreadable ({' '.join(str(exc).split())})") from None
    names = {c["name"] for c in suite.cases}
    stray = sorted(f.name for f in folder.iterdir() if (f.suffix == ".npz" and f.stem not in names)
                   or (f.is_dir() and f.name not in names and any(f.glob("*.npy"))))
    if stray:
        results[STRAY] = dict.fromkeys(stray)
    if all(name == STRAY for name in results):
        raise ValueError(f"{folder}: holds no results (expected NAME.npz or NAME/OUTPUT.npy for a case NAME of "
                         f"the suite, e.g. {suite.cases[0]['name']}.npz)")
    return results


def write_json(report: Report, path: Path | str) -> None:
    """Write the report as JSON (atomically: a temporary file renamed into place)."""
    from ..checkpoint import atomic_write
    data = (json.dumps(report.to_json(), indent=1) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(data))

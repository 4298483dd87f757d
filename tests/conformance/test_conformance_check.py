"""`minireptile conformance check`: every mistake is caught at the stage where it starts; exit statuses.

The broken adapters are one hand-written NumPy Reptile (:class:`Loop`) with one deliberate mistake
each. Written correctly it passes every case, so each failure below is the mistake's alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from minireptile import reference
from minireptile.algorithms.maml import maml_gradient
from minireptile.cli import main
from minireptile.conformance.adapters import ReferenceAdapter, run_adapter
from minireptile.conformance.check import check_results, read_results
from minireptile.conformance.suite import load_suite

MISTAKES = ("sign", "eps_const", "adam_no_reset", "adam_bias", "plan_off", "maml_first_order", "ce_sum")


class Loop:
    """Reptile, FOMAML and MAML written out in NumPy, optionally with one mistake."""

    def __init__(self, mistake=None):
        assert mistake in (None, *MISTAKES)
        self.mistake = mistake
        self.name = f"Loop({mistake})"

    def grad(self, spec, theta, x, y):
        loss, g = reference.loss_and_grad(spec, theta, x, y)
        if self.mistake == "ce_sum" and spec.loss == "ce":          # cross-entropy summed over the batch
            return loss * len(x), g * len(x)
        return loss, g

    def hvp(self, spec, theta, x, y, v):
        from minireptile.algorithms.hvp import hvp
        return hvp(spec, theta, x, y, v)

    def _inner(self, spec, theta, x, y, plan, opt, state=None):
        phi, phis = theta.copy(), []
        m, v, t = state if state is not None else (np.zeros_like(theta), np.zeros_like(theta), 0)
        k = len(plan)
        for s in range(k):
            rows = plan[(s + 1) % k] if self.mistake == "plan_off" else plan[s]   # the next step's minibatch
            g = self.grad(spec, phi, x[rows], y[rows])[1]
            if opt.name == "sgd":
                phi = phi - opt.lr * g
            else:
                t += 1
                tb = max(1, t - 1) if self.mistake == "adam_bias" else t           # bias correction one step late
                m = opt.beta1 * m + (1 - opt.beta1) * g
                v = opt.beta2 * v + (1 - opt.beta2) * g * g
                phi = phi - opt.lr * (m / (1 - opt.beta1**tb)) / (np.sqrt(v / (1 - opt.beta2**tb)) + opt.eps)
            phis.append(phi)
        return phis, (m, v, t)

    def inner_loop(self, spec, theta, x, y, plan, opt):
        return np.stack(self._inner(spec, theta, x, y, plan, opt)[0])

    def fomaml(self, spec, theta, X, Y, plan, lr):
        from minireptile import InnerOptimizer
        out = []
        for i in range(len(X)):
            phi = self._inner(spec, theta, X[i], Y[i], plan[i, :-1], InnerOptimizer("sgd", lr))[0][-1]
            out.append(self.grad(spec, phi, X[i, plan[i, -1]], Y[i, plan[i, -1]])[1])
        return np.stack(out)

    def maml(self, spec, theta, X, Y, plan, query, lr):
        first_order = self.mistake == "maml_first_order"                            # no second-order term
        return maml_gradient(spec, theta, X, Y, plan, query, lr, first_order=first_order).grad

    def reptile(self, spec, theta, X, Y, plans, eps, opt):
        carry = opt.name == "adam" and opt.state_policy == "carry"
        carried = running = None
        for j in range(len(eps)):
            e = eps[0] if self.mistake == "eps_const" else eps[j]                   # ε not annealed
            phis, states = [], []
            for i in range(X.shape[1]):
                state = carried if carry else (running if self.mistake == "adam_no_reset" else None)
                phi, running = self._inner(spec, theta, X[j, i], Y[j, i], plans[j, i], opt, state)
                phis.append(phi[-1])
                states.append(running)
            mean = np.mean(phis, axis=0)
            theta = theta - e * (mean - theta) if self.mistake == "sign" else theta + e * (mean - theta)
            if carry:
                carried = (np.mean([s[0] for s in states], 0), np.mean([s[1] for s in states], 0), states[0][2])
        return theta


@pytest.fixture(scope="module")
def suite():
    return load_suite()


def first_failures(adapter, suite, cases):
    results, skipped, errors = run_adapter(adapter, suite, cases)
    report = check_results(suite, results, skipped, adapter.name, errors)
    assert not [r for r in report.rows if r.case in cases and r.status == "skipped"]
    return report, {c: report.first_failures.get(c, {}).get("output") for c in cases}


def test_the_hand_written_loop_passes_every_case(suite):
    report, _ = first_failures(Loop(), suite, [c["name"] for c in suite.cases])
    assert report.exit_status == 0 and report.counts() == {"pass": 232, "FAIL": 0, "skipped": 0}


# mistake -> {case: the first output that must fail (None: the case must pass)}, and a word of the hint
EXPECTED = {
    "sign": ({"wide-tanh-mse-sgd-mb1": "theta_1", "wide-relu-ce-adam0-mb5": "theta_1"}, "sign"),
    "eps_const": ({"narrow-tanh-mse-sgd-mb5": "theta_10", "wide-relu-ce-adamcarry-mb1": "theta_10"}, "annealed"),
    "adam_no_reset": ({"wide-tanh-mse-adam0-mb5": "theta_1", "narrow-tanh-mse-adam0-mb1": "theta_10",
                       "narrow-tanh-mse-sgd-mb5": None, "wide-relu-mse-adamcarry-mb5": None}, "reset"),
    "adam_bias": ({"narrow-tanh-mse-adam0-mb1": "phi_2", "wide-tanh-mse-adamcarry-mb1": "phi_2",
                   "wide-tanh-mse-sgd-mb1": None}, "bias correction"),
    "plan_off": ({"wide-tanh-mse-sgd-mb1": "phi_1", "narrow-relu-ce-adam0-mb1": "phi_1"}, "minibatch"),
    "maml_first_order": ({"wide-tanh-mse-sgd-mb1": "maml_grad", "narrow-relu-ce-sgd-mb5": "maml_grad",
                          "wide-relu-mse-adam0-mb1": None}, "second-order"),
    "ce_sum": ({"narrow-tanh-ce-sgd-mb1": "loss", "wide-relu-ce-adamcarry-mb1": "loss",
                "wide-tanh-mse-sgd-mb1": None}, "mean"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_caught_where_it_starts(suite, mistake):
    expected, word = EXPECTED[mistake]
    report, first = first_failures(Loop(mistake), suite, list(expected))
    assert first == expected
    for case, output in expected.items():
        if output is not None:
            assert word in report.first_failures[case]["hint"]
            text = "\n".join(report.lines())
            assert f"{case}: " in text and " differs: " in text


def test_the_summary_names_the_stages_before_the_failure(suite):
    report, _ = first_failures(Loop("adam_bias"), suite, ["narrow-tanh-mse-adam0-mb1"])
    summary = report.first_failures["narrow-tanh-mse-adam0-mb1"]["summary"]
    assert summary == ("loss ok, gradient ok, Hessian-vector product ok, inner step 1 ok, "
                       "inner step 2 differs")
    assert report.first_failing_stage() == "inner step 2"


class Partial:
    """Implements only the gradient; one method raises, one declines."""

    name = "partial"

    def grad(self, spec, theta, x, y):
        return reference.loss_and_grad(spec, theta, x, y)

    def hvp(self, spec, theta, x, y, v):
        raise NotImplementedError("no second order yet")

    def inner_loop(self, spec, theta, x, y, plan, opt):
        raise RuntimeError("boom")

    def supports(self, spec, opt, meta_batch):
        return True if spec.loss == "mse" else "cross-entropy is not implemented"


def test_missing_stages_are_skipped_and_errors_fail(suite):
    results, skipped, errors = run_adapter(Partial(), suite)
    report = check_results(suite, results, skipped, "partial", errors)
    rows = {(r.case, r.output): r for r in report.rows}
    assert rows["wide-tanh-mse-sgd-mb1", "grad"].status == "pass"
    assert rows["wide-tanh-mse-sgd-mb1", "hvp"].status == "skipped"
    assert "no second order yet" in rows["wide-tanh-mse-sgd-mb1", "hvp"].note
    assert rows["wide-tanh-mse-sgd-mb1", "theta_1"].note == "the adapter has no reptile()"
    assert rows["wide-tanh-ce-sgd-mb5", "loss"].status == "skipped"
    assert rows["wide-tanh-ce-sgd-mb5", "loss"].note == "cross-entropy is not implemented"
    bad = rows["wide-tanh-mse-sgd-mb1", "phi_2"]
    assert bad.status == "FAIL" and bad.note == "inner_loop() raised RuntimeError: boom"
    assert report.exit_status == 1


# ---------------------------------------------------------------------------------------------
# results folders and the command line
# ---------------------------------------------------------------------------------------------
CASES = ["wide-tanh-mse-sgd-mb1", "narrow-relu-ce-adamcarry-mb5"]


def write_results(folder, suite, dtype=np.float64, cases=CASES):
    folder.mkdir(exist_ok=True)
    results, _, _ = run_adapter(ReferenceAdapter(), suite, cases)
    for name, outputs in results.items():
        np.savez(folder / f"{name}.npz", **{k: np.asarray(v, dtype=dtype) for k, v in outputs.items()})
    return results


def test_results_in_float32_pass_at_the_float32_tolerance(suite, tmp_path):
    write_results(tmp_path, suite, np.float32)
    report = check_results(suite, read_results(tmp_path, suite))
    present = [r for r in report.rows if r.status != "skipped"]
    assert len(present) == 20 and all(r.status == "pass" and r.dtype == "float32" for r in present)
    assert all(r.rtol >= 2e-5 for r in present)
    # the same numbers are not float64-accurate: claimed as float64 they fail
    for f in tmp_path.glob("*.npz"):
        with np.load(f) as z:
            np.savez(f, **{k: z[k].astype(np.float64) for k in z.files})
    assert check_results(suite, read_results(tmp_path, suite)).exit_status == 1


def test_absent_cases_and_outputs_are_skipped_not_passed(suite, tmp_path, capsys):
    results = write_results(tmp_path, suite, cases=CASES[:1])
    del results[CASES[0]]["theta_100"]
    np.savez(tmp_path / f"{CASES[0]}.npz", **results[CASES[0]])
    assert main(["conformance", "check", "--results", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "10 passed, 0 failed, 222 skipped" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["counts"] == {"pass": 10, "FAIL": 0, "skipped": 222} and data["passed"] is True
    row = next(r for r in data["rows"] if r["case"] == CASES[0] and r["output"] == "theta_100")
    assert row["status"] == "skipped" and row["note"] == "output absent"


def test_a_wrong_number_fails_with_exit_1_and_names_the_stage(suite, tmp_path, capsys):
    results = write_results(tmp_path, suite)
    name = CASES[1]
    results[name]["theta_10"] = results[name]["theta_10"] * (1 + 1e-8)
    np.savez(tmp_path / f"{name}.npz", **results[name])
    assert main(["conformance", "check", "--results", str(tmp_path), "--failures-only"]) == 1
    out = capsys.readouterr().out
    assert f"{name}: loss ok, gradient ok" in out and "θ after 10 iterations differs: check the ε schedule" in out
    assert "first stage that fails: θ after 10 iterations" in out


def test_nan_wrong_shape_and_wrong_dtype_fail(suite, tmp_path):
    results = write_results(tmp_path, suite, cases=CASES[:1])
    r = results[CASES[0]]
    r["grad"] = r["grad"].copy()
    r["grad"][0] = np.nan
    r["phi_1"] = r["phi_1"][:-1]
    r["theta_1"] = r["theta_1"].astype(np.int64)
    report = check_results(suite, {CASES[0]: r})
    notes = {row.output: (row.status, row.note) for row in report.rows if row.case == CASES[0]}
    assert notes["grad"] == ("FAIL", "holds NaN or inf")
    assert notes["phi_1"][0] == "FAIL" and notes["phi_1"][1].startswith("shape (121,)")
    assert notes["theta_1"] == ("FAIL", "dtype int64: expected float64 or float32")


def test_npy_folders_are_read_like_npz(suite, tmp_path):
    results = write_results(tmp_path / "unused", suite, cases=CASES[:1])
    sub = tmp_path / "res" / CASES[0]
    sub.mkdir(parents=True)
    for k, v in results[CASES[0]].items():
        np.save(sub / f"{k}.npy", v)
    assert check_results(suite, read_results(tmp_path / "res", suite)).counts()["pass"] == 11


@pytest.mark.parametrize("make", ["missing", "empty", "corrupt"])
def test_unreadable_results_exit_2_with_one_line(tmp_path, capsys, make):
    folder = tmp_path / "res"
    if make != "missing":
        folder.mkdir()
    if make == "corrupt":
        (folder / f"{CASES[0]}.npz").write_bytes(b"not a zip")
    assert main(["conformance", "check", "--results", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("minireptile conformance: error: argument --results:")
    assert {"missing": "not a folder", "empty": "holds no results", "corrupt": "unreadable"}[make] in err


@pytest.mark.parametrize("target, words", [
    ("no_such_module_xyz:A", "cannot import 'no_such_module_xyz'"),
    ("minireptile.conformance.adapters:Nope", "has no attribute 'Nope'"),
    ("minireptile.conformance.cases:Case", "is not an adapter"),
    ("missing_file.py:A", "no such file"),
])
def test_a_bad_impl_exits_2_naming_it(capsys, target, words):
    assert main(["conformance", "check", "--impl", target]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "argument --impl:" in err and words in err


def test_check_impl_from_a_file_and_a_case(tmp_path, capsys):
    (tmp_path / "my_port.py").write_text("from minireptile.conformance.adapters import ReferenceAdapter as A\n")
    argv = ["conformance", "check", "--impl", f"{tmp_path / 'my_port.py'}:A", "--case", CASES[0]]
    assert main(argv) == 0
    assert "11 passed, 0 failed, 221 skipped" in capsys.readouterr().out
    assert main(["conformance", "check", "--impl", f"{tmp_path / 'my_port.py'}:A", "--case", "nope"]) == 2
    assert "argument --case: no case 'nope'" in capsys.readouterr().err


def test_export_writes_raw_arrays_and_refuses_a_used_folder(suite, tmp_path, capsys):
    out = tmp_path / "suite"
    assert main(["conformance", "export", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    c = m["cases"][1]
    arrays = suite.arrays(c["name"])
    for key, entry in [("X", c["inputs"]["X"]), ("expected/theta_10", c["outputs"]["theta_10"])]:
        raw = np.fromfile(out / entry["raw"], dtype=np.dtype(entry["dtype"]).newbyteorder("<"))
        np.testing.assert_array_equal(raw.reshape(entry["shape"]), arrays[key])
    index = (out / "index.txt").read_text().splitlines()
    assert index[0].split()[:8] == ["case", m["cases"][0]["name"], "3", "3", "8", "8", "2", "tanh"]
    assert sum(line.startswith("case ") for line in index) == len(m["cases"])
    capsys.readouterr()
    assert main(["conformance", "export", str(out)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_misnamed_outputs_and_files_are_listed_as_ignored(suite, tmp_path, capsys):
    results = write_results(tmp_path, suite, cases=CASES[:1])
    r = results[CASES[0]]
    r["theta1"] = r.pop("theta_1")                                 # a typo: not an output
    np.savez(tmp_path / f"{CASES[0]}.npz", **r)
    np.savez(tmp_path / "wide-tanh-mse-sgd-mb2.npz", loss=np.zeros(()))   # no such case
    assert main(["conformance", "check", "--results", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert ("ignored (no such case or output in the suite): wide-tanh-mse-sgd-mb1/theta1, "
            "wide-tanh-mse-sgd-mb2.npz") in out
    assert json.loads((tmp_path / "r.json").read_text())["ignored"] == ["wide-tanh-mse-sgd-mb1/theta1",
                                                                      "wide-tanh-mse-sgd-mb2.npz"]


def test_dtype_flag_runs_the_adapter_in_float32(capsys):
    argv = ["conformance", "check", "--impl", "minireptile.conformance.adapters:ReferenceAdapter", "--case",
            CASES[1], "--dtype", "float32"]
    assert main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(CASES[1])]
    assert len(rows) == 9 and all(r[2] == "pass" and r[3] == "float32" for r in rows)
    assert main(["conformance", "check", "--results", ".", "--dtype", "float32"]) == 2
    assert "argument --dtype: applies to --impl only" in capsys.readouterr().err

"""The C port (docs/ports/reptile_sgd.c) reads an exported suite and passes `conformance check --results`.

Skipped when no C compiler (gcc or cc) is found.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.conformance.check import check_results, read_results
from minireptile.conformance.suite import export, load_suite

SOURCE = Path(__file__).resolve().parents[2] / "docs" / "ports" / "reptile_sgd.c"


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc or cc) found")
    exe = tmp_path_factory.mktemp("c") / "reptile_sgd"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Werror", "-o", str(exe), str(SOURCE), "-lm"], check=True,
                   capture_output=True, text=True)
    return exe


def test_the_c_port_passes_every_sgd_case(port, tmp_path, capsys):
    suite_dir, results = tmp_path / "suite", tmp_path / "results"
    export(suite_dir)
    proc = subprocess.run([str(port), str(suite_dir), str(results)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote results of 8 cases" in proc.stdout
    suite = load_suite()
    report = check_results(suite, read_results(results, suite))
    sgd = [c["name"] for c in suite.cases if c["config"]["optimizer"]["name"] == "sgd"]
    passed = {(r.case, r.output) for r in report.rows if r.status == "pass"}
    expected = {(c, o) for c in sgd for o in suite.case(c)["outputs"]
                if o in ("loss", "grad") or o.startswith(("phi_", "theta_"))}
    assert passed == expected and report.exit_status == 0
    assert main(["conformance", "check", "--results", str(results)]) == 0
    assert "64 passed, 0 failed, 168 skipped" in capsys.readouterr().out


def test_a_broken_c_port_is_caught(port, tmp_path):
    # the same program with the outer update's sign flipped must fail at θ after 1 iteration
    broken = tmp_path / "broken.c"
    text = SOURCE.read_text()
    assert text.count("theta[p] += e[t] *") == 1
    broken.write_text(text.replace("theta[p] += e[t] *", "theta[p] -= e[t] *"))
    exe = tmp_path / "broken"
    subprocess.run([shutil.which("gcc") or shutil.which("cc"), "-std=c99", "-O2", "-o", str(exe), str(broken), "-lm"],
                   check=True)
    suite_dir, results = tmp_path / "suite", tmp_path / "results"
    export(suite_dir)
    subprocess.run([str(exe), str(suite_dir), str(results)], check=True, capture_output=True)
    suite = load_suite()
    report = check_results(suite, read_results(results, suite))
    assert {f["output"] for f in report.first_failures.values()} == {"theta_1"}
    assert len(report.first_failures) == 8
    loss = np.load(results / "wide-tanh-mse-sgd-mb1" / "loss.npy")
    assert loss.shape == () and loss.dtype == np.float64

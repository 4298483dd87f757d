"""The PyTorch and JAX peers (benchmarks/peers) pass the conformance suite through their adapters.

Skipped, with the install line, when the framework does not import (the ``bench`` extra installs both).
Each peer runs every case in float64; PyTorch also runs five cases covering every loss, optimizer, activation,
shape and meta-batch size in float32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from minireptile.conformance.adapters import run_adapter
from minireptile.conformance.check import check_results
from minireptile.conformance.suite import load_suite

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

# every loss, optimizer, activation, shape and meta-batch size; the peers' own train functions (MSE, SGD and
# Adam reset) and the adapters' loops (cross-entropy, Adam carried); FOMAML and MAML with both losses
SUBSET = ["wide-tanh-mse-sgd-mb1", "narrow-tanh-mse-adam0-mb1", "narrow-relu-ce-sgd-mb5", "wide-relu-ce-adam0-mb5",
          "narrow-tanh-ce-adamcarry-mb1"]


def passes(adapter, cases=None):
    suite = load_suite()
    results, skipped, errors = run_adapter(adapter, suite, cases)
    report = check_results(suite, results, skipped, adapter.name, errors)
    mine = [r for r in report.rows if cases is None or r.case in cases]
    bad = [r for r in mine if r.status != "pass"]
    assert not bad, "\n".join(report.lines(verbose=False))
    return len(mine)


@pytest.fixture
def torch_one_thread():
    torch = pytest.importorskip("torch", reason='torch not installed (pip install -e ".[bench]")')
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_the_torch_peer_passes_every_case(torch_one_thread):
    from peers.conformance_torch import TorchAdapter
    assert passes(TorchAdapter("float64")) == 232


def test_the_torch_peer_passes_in_float32(torch_one_thread):
    from peers.conformance_torch import TorchAdapter
    assert passes(TorchAdapter("float32"), SUBSET) == sum(len(load_suite().case(c)["outputs"]) for c in SUBSET)


def test_the_jax_peer_passes(monkeypatch):
    pytest.importorskip("jax", reason='jax not installed (pip install -e ".[bench]")')
    from peers.conformance_jax import JaxAdapter
    suite = load_suite()
    assert {c["name"] for c in suite.cases} >= set(SUBSET)
    assert passes(JaxAdapter()) == 232


def test_the_docs_example_adapter_passes_its_stages(torch_one_thread, tmp_path, monkeypatch, capsys):
    import re
    from minireptile.cli import main
    doc = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc, flags=re.S).group(1)
    (tmp_path / "my_port.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["conformance", "check", "--impl", "my_port:MyPort"]) == 0
    assert "48 passed, 0 failed, 184 skipped (24 cases)" in capsys.readouterr().out

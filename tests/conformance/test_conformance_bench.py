"""`minireptile conformance bench`: the table's structure and its agreement check (nothing is timed here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.conformance.adapters import ReferenceAdapter
from minireptile.conformance.bench import WORKLOADS, Workload, bench, table


class Converting(ReferenceAdapter):
    name = "reference with a declared conversion"
    calls = 0

    def to_native(self, a):
        Converting.calls += 1
        return np.array(a, copy=True)


def test_bench_rows_compare_with_numba_and_report_conversion():
    small = [Workload("tiny-float64", 3, 2, "float64"), Workload("tiny-float32", 1, 4, "float32")]
    result = bench(Converting(), small, repeats=2)
    rows = {r["workload"]: r for r in result["rows"]}
    assert list(rows) == ["tiny-float64", "tiny-float32"]
    for r in rows.values():
        assert r["ratio"] == pytest.approx(r["adapter_s_per_iter"] / r["numba_s_per_iter"])
        assert r["conversion_s"] is not None and r["conversion_s"] >= 0
    assert Converting.calls == 2 * 2 * 5              # workloads x repeats x arrays (θ, X, Y, plans, eps)
    assert rows["tiny-float64"]["max_rel_diff"] < 1e-12   # the reference and numba agree: the same work
    assert rows["tiny-float32"]["max_rel_diff"] < 1e-4
    text = "\n".join(table(result))
    assert "tiny-float64" in text and "ratio = adapter time / numba time" in text


def test_the_workloads_are_the_gist_serial_and_meta_batch_256_in_both_dtypes():
    assert {(w.meta_batch, w.dtype) for w in WORKLOADS} == {(1, "float32"), (1, "float64"), (256, "float32"),
                                                             (256, "float64")}


def test_bench_command_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["conformance", "bench", "--impl", "minireptile.conformance.adapters:ReferenceAdapter",
            "--workload", "serial-float64", "--repeats", "1", "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [r["workload"] for r in data["rows"]] == ["serial-float64"] and data["rows"][0]["conversion_s"] is None
    assert "serial-float64" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--workload", "nope"], "argument --workload: expected one of serial-float32"),
    (["--impl", "minireptile.conformance.check:Row"], "argument --impl:"),
])
def test_bench_flag_errors_exit_2(capsys, argv, words):
    base = ["conformance", "bench", "--impl", "minireptile.conformance.adapters:ReferenceAdapter"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err

"""``minireptile compare`` end to end on a tiny budget, and its flag errors."""

import json

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.commands.compare import ALGORITHMS, LABELS


def test_compare_prints_the_table_for_every_algorithm_and_writes_json(tmp_path, capsys):
    out = tmp_path / "compare.json"
    status = main(["compare", "--iters", "3", "--meta-batch", "2", "--eval-tasks", "6", "--backend", "numpy",
                   "--quiet", "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    header = "| algorithm | K=5, 1 step | K=5, 5 steps | K=5, 10 steps | K=10, 1 step | K=10, 5 steps | K=10, 10 steps |"
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "±" in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [LABELS[a] for a in ALGORITHMS]
    summary = json.loads(out.read_text())
    assert summary["iters"] == 3 and set(summary["results"]) == set(ALGORITHMS)
    maml = summary["results"]["maml"]["10"]
    assert maml["steps"] == [0, 1, 5, 10] and np.isfinite(maml["mean"]).all()
    # random init is θ0 unchanged: its step-0 loss is the same for K = 5 and 10 (same query points)
    rnd = summary["results"]["random"]
    assert rnd["5"]["mean"][0] == rnd["10"]["mean"][0]
    # every trained algorithm moved away from θ0
    for name in ("reptile", "fomaml", "maml", "joint"):
        assert summary["results"][name]["10"]["mean"][0] != rnd["10"]["mean"][0]


def test_compare_runs_on_a_torchmeta_family_with_noise(capsys):
    assert main(["compare", "--family", "harmonic", "--noise-std", "0.1", "--iters", "2", "--meta-batch", "2",
                 "--eval-tasks", "4", "--algorithms", "maml", "random", "--shots", "5", "--eval-steps", "1",
                 "--backend", "numpy", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| algorithm | K=5, 1 step |" in text and "harmonic" in text
    assert "Reptile" not in text


@pytest.mark.parametrize("flags, message", [
    (["--iters", "0"], "--iters"),
    (["--family", "cosine"], "--family"),
    (["--noise-std", "-1"], "--noise-std"),
    (["--algorithms", "sgd"], "--algorithms"),
    (["--inner-lr", "0"], "--inner-lr"),
])
def test_compare_rejects_bad_flags_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_outlier_notes_count_diverged_adaptations():
    from minireptile.commands.compare import outlier_notes
    from minireptile.evaluation.regression import EvalResult
    losses = np.ones((600, 3))
    losses[:4, 2] = 1e6                                         # four tasks blow up after 5 steps
    r = EvalResult((0, 1, 5), losses, losses.mean(axis=0), np.zeros(3))
    notes = outlier_notes({"maml": {5: r}}, threshold=40.0)
    assert notes == ["note: MAML, K=5, 5 steps: 4 of 600 tasks above MSE 40 (adaptation diverged); median 1.000"]
    assert outlier_notes({"maml": {5: EvalResult((0, 1), np.ones((5, 2)), np.ones(2), np.zeros(2))}}, 40.0) == []


def test_compare_saves_every_theta(tmp_path):
    path = tmp_path / "thetas.npz"
    assert main(["compare", "--iters", "2", "--meta-batch", "2", "--eval-tasks", "3", "--algorithms", "fomaml",
                 "random", "--backend", "numpy", "--quiet", "--save", str(path)]) == 0
    saved = np.load(path)
    assert set(saved.files) == {"theta0", "fomaml", "random"}
    np.testing.assert_array_equal(saved["random"], saved["theta0"])
    assert not np.array_equal(saved["fomaml"], saved["theta0"])

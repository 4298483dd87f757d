"""The commands' figures and the training-loss curve in `sine --json`."""

import json

import numpy as np
import pytest

from minireptile.cli import main


def test_sine_json_has_the_training_curve_and_the_figure_is_written(tmp_path):
    out = tmp_path / "run"
    assert main(["sine", "--iters", "300", "--eval-tasks", "4", "--quiet", "--backend", "numpy", "--out", str(out),
                 "--json", str(tmp_path / "s.json")]) == 0
    curve = json.loads((tmp_path / "s.json").read_text())["train_loss"]
    assert curve["every"] == 1 and len(curve["loss"]) == 300 and curve["iteration"][-1] == 300
    assert np.isfinite(curve["loss"]).all()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "sine.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_and_omniglot_figures(tmp_path):
    pytest.importorskip("matplotlib")
    from minireptile.commands.plots import compare_figure, omniglot_figure
    from minireptile.evaluation.fewshot import FewShotResult

    it = np.arange(1, 11)
    assert compare_figure(tmp_path / "c.png", {"reptile": (it, 1 / it, 1)}, {"reptile": "Reptile"}) is not None
    acc = np.random.default_rng(0).random((5, 3))
    res = FewShotResult((0, 1, 5), acc, acc)
    assert omniglot_figure(tmp_path / "o.png", steps=res.steps, meta=res, random=res, nn=(0.4, 0.01)) is not None
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "o.png").stat().st_size > 1000

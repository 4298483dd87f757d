"""The sweep's summary figure and compare's learning curves: one y-axis per quantity, titles that say what ran."""

import pytest

pytest.importorskip("matplotlib", reason="figures need matplotlib")

import numpy as np  # noqa: E402

from minireptile.commands import plots  # noqa: E402
from minireptile.commands.sweep_summary import summarise, summary_figure, sweep_title  # noqa: E402


def _rows(values_by_seed, point=None, iters=3000):
    return [{"name": f"s{seed}", "seed": seed, "point": point or {}, "state": "done",
             "result": {"config": {"preset": "gist", "reptile": {"iters": iters}},
                        "eval": {"steps": [0, 32], "meta_mse": [4.0, meta], "random_mse": [4.0, random]}}}
            for seed, (meta, random) in values_by_seed.items()]


def test_two_seeds_share_one_axis_whose_range_follows_the_values():
    rows = _rows({0: (0.5, 3.0), 1: (1.5, 3.4)})      # two seeds: the t interval is ±12.7 x the spread
    table = summarise("sine", rows, [])
    ci = table[0]["metrics"]["meta-learned MSE @32"]["ci95"]
    fig = summary_figure(table, [], sweep_title("sine", rows))
    assert len(fig.axes) == 1                            # meta-learned and random init on one y-axis
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["meta-learned MSE\nafter 32 steps", "random-init MSE\nafter 32 steps"]
    low, high = ax.get_ylim()
    assert low == 0 and 3.4 < high < 1.0 + ci            # the values fill the panel, the CI bar is clipped
    assert fig._suptitle.get_text().startswith("minireptile sweep sine: 2 seeds, 3000 iterations (preset gist)")
    texts = [t.get_text() for t in ax.texts]
    assert f"1 ± {ci:.2g}" in texts                      # the clipped interval is printed


def test_a_grid_with_a_diverging_setting_gets_a_log_axis():
    rows = (_rows({0: (2.0, 3.0), 1: (2.2, 3.1)}, {"--inner-lr": "0.01"})
            + _rows({0: (5e18, 1e14), 1: (6e18, 2e14)}, {"--inner-lr": "0.04"}))
    axes = [("--inner-lr", ("0.01", "0.04"))]
    fig = summary_figure(summarise("sine", rows, axes), axes, "t")
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.01", "0.04"]


def test_compare_puts_each_quantity_on_its_own_axis(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, plt, path: figures.append(fig))
    it = np.arange(1, 11)
    curves = {name: (it, np.full(10, k + 1.0), 1) for k, name in enumerate(["reptile", "fomaml", "maml", "joint"])}
    query = "query MSE after 1 inner step"
    plots.compare_figure(tmp_path / "c.png", curves, {n: n.upper() for n in curves},
                         quantities={"maml": query, "fomaml": query, "reptile": "inner-loop MSE", "joint": "joint MSE"})
    (fig,) = figures
    assert [ax.get_ylabel().split("\n")[0] for ax in fig.axes] == ["inner-loop MSE", query, "joint MSE"]
    assert [[line.get_label() for line in ax.get_lines()] for ax in fig.axes] == [["REPTILE"], ["FOMAML", "MAML"],
                                                                                  ["JOINT"]]

"""A sweep's results: each run's metrics, the mean ± 95% CI over seeds per grid point, and its files.

:func:`summarise` turns the finished runs' JSON summaries into one row per grid point;
:func:`format_table` prints it; :func:`write_summary` writes ``summary.csv``, ``summary.json`` and
``summary.png`` (:func:`plot_summary`: the metrics on one y-axis, each against each grid value, with
CI bars; titled by :func:`sweep_title`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..progress import format_number


# ---------------------------------------------------------------------------------------------
# metrics and the summary
# ---------------------------------------------------------------------------------------------
def metrics(command: str, summary: dict) -> dict:
    """The metrics a run's JSON reports, by name (the table's columns)."""
    if command == "compare":
        return _compare_metrics(summary)
    e = summary["eval"]
    if command == "sine":
        k = e["steps"][-1]
        return {f"meta-learned MSE @{k}": e["meta_mse"][-1], f"random-init MSE @{k}": e["random_mse"][-1]}
    k = e["steps"][-1]
    return {f"meta-learned acc @{k}": e["meta"]["accuracy"], f"random-init acc @{k}": e["random_init"]["accuracy"]}


def _compare_metrics(summary: dict) -> dict:
    """`compare`: each algorithm's mean test loss at its last step, for the most shots evaluated."""
    out = {}
    for name, per_k in summary["results"].items():
        K = max(per_k, key=int)
        out[f"{name} loss K={K} @{per_k[K]['steps'][-1]}"] = per_k[K]["mean"][-1]
    return out


def summarise(command: str, rows: list, axes: list) -> list[dict]:
    """One entry per grid point: its flags, seeds done, and each metric's mean and 95% CI half-width."""
    from ..evaluation.regression import mean_ci95

    groups: dict = {}
    for r in rows:
        key = tuple(r["point"].get(f) for f, _ in axes)
        groups.setdefault(key, []).append(r)
    table = []
    for values in itertools.product(*[vals for _, vals in axes]):
        done = [r for r in groups.get(tuple(values), []) if r["state"] == "done" and r["result"]]
        entry = {"point": dict(zip([f for f, _ in axes], values)), "seeds": sorted(r["seed"] for r in done),
                 "metrics": {}}
        per_metric: dict = {}
        for r in sorted(done, key=lambda r: r["seed"]):
            for name, value in metrics(command, r["result"]).items():
                per_metric.setdefault(name, []).append(value)
        for name, values_ in per_metric.items():
            mean = float(np.mean(values_))
            ci = float(mean_ci95(np.array(values_))[1]) if len(values_) >= 2 else None
            entry["metrics"][name] = {"mean": mean, "ci95": ci, "values": values_}
        table.append(entry)
    return table


def format_table(table: list, axes: list) -> str:
    names = [f.lstrip("-") for f, _ in axes]
    metric_names = list(dict.fromkeys(m for e in table for m in e["metrics"]))
    header = [*names, "seeds", *metric_names]
    lines = []
    for e in table:
        cells = [e["point"][f] for f, _ in axes] + [str(len(e["seeds"]))]
        for m in metric_names:
            v = e["metrics"].get(m)
            cells.append("-" if v is None else f"{format_number(v['mean'])} ± {format_number(v['ci95'])}"
                         if v["ci95"] is not None else f"{format_number(v['mean'])} (1 seed)")
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(c).rjust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(header)] + [fmt(r) for r in lines])


def write_summary(out: Path, command: str, table: list, axes: list, failed: list) -> list[Path]:
    """summary.csv and summary.json (atomically); returns their paths."""
    metric_names = list(dict.fromkeys(m for e in table for m in e["metrics"]))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([f.lstrip("-") for f, _ in axes] + ["seeds"] + [x for m in metric_names for x in (m, f"{m} ci95")])
    for e in table:
        row = [e["point"][f] for f, _ in axes] + [" ".join(map(str, e["seeds"]))]
        for m in metric_names:
            v = e["metrics"].get(m)
            row += ["", ""] if v is None else [repr(v["mean"]), "" if v["ci95"] is None else repr(v["ci95"])]
        w.writerow(row)
    csv_path, json_path = out / "summary.csv", out / "summary.json"
    atomic_write(csv_path, lambda f: f.write(buf.getvalue().encode()))
    doc = {"command": command, "grid": {f.lstrip("-"): list(v) for f, v in axes}, "points": table,
           "failed": failed, "ci": "Student-t 95% confidence interval of the mean over seeds"}
    atomic_write(json_path, lambda f: f.write(json.dumps(doc, indent=2, allow_nan=False).encode()))
    return [csv_path, json_path]


def sweep_title(command: str, rows: list) -> str:
    """``minireptile sweep sine: 2 seeds, 2000 iterations (preset gist)`` from the finished runs' configurations."""
    configs = [r["result"]["config"] for r in rows if r.get("state") == "done" and r.get("result")]
    seeds = sorted({r["seed"] for r in rows})
    text = f"minireptile sweep {command}: {len(seeds)} seed{'s' * (len(seeds) != 1)}"
    iters = sorted({c.get("reptile", c).get("iters") for c in configs if isinstance(c.get("reptile", c), dict)}
                   - {None})
    if iters:
        text += f", {'/'.join(map(str, iters))} iterations"
    presets = sorted({c["preset"] for c in configs if isinstance(c.get("preset"), str)})
    if presets:
        text += f" (preset {'/'.join(presets)})"
    return text


def plot_summary(path: Path, table: list, axes: list, title: str | None = None) -> bool:
    """The metrics of a sweep in one panel per grid axis, all on one y-axis (95% CI bars).

    Without a grid: each seed's value (grey) and the mean with its 95% CI, every metric side by side
    on one axis (the y-range follows the values; a CI reaching past it is clipped, and its value is
    printed). With a grid: each metric against each grid value, one line per metric and setting of
    the other axes.
    """
    try:
        import matplotlib
    except ImportError:
        print('plot skipped: matplotlib is not installed (pip install "minireptile[plot]")', file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = summary_figure(table, axes, title)
    if fig is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def summary_figure(table: list, axes: list, title: str | None = None):
    """The matplotlib figure of :func:`plot_summary` (None when no run reported a metric)."""
    import matplotlib.pyplot as plt

    metric_names = list(dict.fromkeys(m for e in table for m in e["metrics"]))
    if not metric_names:
        return None
    cols = axes if axes else [(None, ())]
    fig, grid = plt.subplots(1, len(cols), figsize=(max(5.5, 1.9 * len(metric_names) + 2) if not axes else 5.5
                                                    * len(cols), 4.6), squeeze=False)
    for j, (flag, values) in enumerate(cols):
        ax = grid[0][j]
        if flag is None:
            _plot_seeds(ax, table[0], metric_names)
        else:
            _plot_axis(ax, table, axes, flag, values, metric_names)
        ax.set_ylabel(_quantity(metric_names))
        ax.grid(alpha=0.3)
    n = max((len(e["seeds"]) for e in table), default=0)
    what = (f"each seed and the mean over {n} seeds, bars: 95% CI of the mean" if not axes else
            f"mean over up to {n} seeds, bars: 95% CI of the mean")
    fig.suptitle(f"{title}\n{what}" if title else what, fontsize=11)
    fig.tight_layout()
    return fig


def _quantity(names: list) -> str:
    """The y-axis label: what the metrics measure (they are the same kind within a command)."""
    for word, label in (("MSE", "MSE on held-out tasks"), ("acc", "query accuracy"), ("loss", "test loss")):
        if all(word in name for name in names):
            return label
    return "metric"


def _plot_seeds(ax, entry: dict, names: list) -> None:
    shown = []
    for i, m in enumerate(names):
        v = entry["metrics"].get(m)
        if v is None:
            continue
        vals = np.asarray(v["values"], dtype=float)
        jitter = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.plot(i - 0.12 + jitter, vals, "o", color="0.55", ms=5, label="each seed" if i == 0 else None)
        ci = v["ci95"]
        ax.errorbar([i + 0.22], [v["mean"]], yerr=None if ci is None else [[ci], [ci]], fmt="s", color=f"C{i}",
                    capsize=6, ms=7, label="mean ± 95% CI" if i == 0 else None)
        ax.annotate(f"{v['mean']:.3g}" + ("" if ci is None else f" ± {ci:.2g}"), (i + 0.3, v["mean"]),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        shown += [*vals.tolist(), v["mean"]]
    lo, hi = min(shown), max(shown)
    pad = 0.15 * (hi - lo) if hi > lo else 0.15 * (abs(hi) or 1.0)
    ax.set_ylim(0.0 if lo >= 0 else lo - pad, hi + pad)   # follows the values, not the CI
    ax.set_xlim(-0.6, len(names) - 0.1)
    ax.set_xticks(range(len(names)), [m.replace(" @", "\nafter ") + " steps" if " @" in m else m for m in names],
                  fontsize=9)
    ax.legend(fontsize=8)


def _plot_axis(ax, table: list, axes: list, flag: str, values, names: list) -> None:
    others = [f for f, _ in axes if f != flag]
    settings: dict = {}
    for e in table:
        settings.setdefault(tuple(e["point"][f] for f in others), []).append(e)
    numeric = all(_is_number(x) for x in values)
    markers = "osD^v<>"
    means = []
    for i, m in enumerate(names):
        for k, (key, entries) in enumerate(settings.items()):
            xs, ys, cis = [], [], []
            for e in entries:
                v = e["metrics"].get(m)
                if v is None:
                    continue
                xs.append(float(e["point"][flag]) if numeric else values.index(e["point"][flag]))
                ys.append(v["mean"])
                cis.append(v["ci95"] or 0.0)
            means += ys
            setting = ", ".join(f"{f.lstrip('-')}={x}" for f, x in zip(others, key))
            ax.errorbar(xs, ys, yerr=cis, marker=markers[k % len(markers)], capsize=4, color=f"C{i}",
                        linestyle=("-", "--", ":", "-.")[k % 4],
                        label=m.replace(" @", " after ") + (" steps" if " @" in m else "")
                        + (f" ({setting})" if setting else ""))
    if numeric and all(float(x) > 0 for x in values) and max(map(float, values)) / min(map(float, values)) >= 10:
        ax.set_xscale("log")
    ax.set_xticks([float(x) for x in values] if numeric else range(len(values)), values)
    ax.minorticks_off()
    if means and min(means) > 0 and max(means) / min(means) >= 30:   # e.g. a diverging setting: a log axis
        ax.set_yscale("log", nonpositive="clip")
        ax.set_ylim(min(means) / 3, max(means) * 3)                  # follows the means; CI bars are clipped
    elif means and min(means) >= 0:
        ax.set_ylim(bottom=0)
    ax.set_xlabel(flag.lstrip("-"))
    ax.legend(fontsize=8)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False

"""A sweep's results: each run's metrics, the mean ± 95% CI over seeds per grid point, and its files.

:func:`summarise` turns the finished runs' JSON summaries into one row per grid point;
:func:`format_table` prints it; :func:`write_summary` writes ``summary.csv``, ``summary.json`` and
``summary.png`` (:func:`plot_summary`: each metric against each grid value, with CI bars).
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
            cells.append("-" if v is None else f"{v['mean']:.4f} ± {v['ci95']:.4f}" if v["ci95"] is not None
                         else f"{v['mean']:.4f} (1 seed)")
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


def plot_summary(path: Path, table: list, axes: list) -> bool:
    """Each metric against each grid value (one line per setting of the other axes), 95% CI bars."""
    try:
        import matplotlib
    except ImportError:
        print('plot skipped: matplotlib is not installed (pip install "minireptile[plot]")', file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric_names = list(dict.fromkeys(m for e in table for m in e["metrics"]))
    if not metric_names:
        return False
    cols = axes if axes else [(None, ())]
    fig, grid = plt.subplots(len(metric_names), len(cols), figsize=(4.5 * len(cols), 3.2 * len(metric_names)),
                             squeeze=False)
    for i, m in enumerate(metric_names):
        for j, (flag, values) in enumerate(cols):
            ax = grid[i][j]
            if flag is None:  # seeds only: one point per seed and the mean ± CI
                e = table[0]
                v = e["metrics"].get(m)
                if v is None:
                    continue
                ax.plot(e["seeds"], v["values"], "o", color="0.5", label="runs")
                ax.axhline(v["mean"], color="C0", label="mean")
                if v["ci95"] is not None:
                    ax.axhspan(v["mean"] - v["ci95"], v["mean"] + v["ci95"], color="C0", alpha=0.2, label="95% CI")
                ax.set_xticks(e["seeds"])
                ax.set_xlabel("seed")
                ax.legend(fontsize=8)
            else:
                others = [f for f, _ in axes if f != flag]
                lines: dict = {}
                for e in table:
                    key = tuple(e["point"][f] for f in others)
                    lines.setdefault(key, []).append(e)
                numeric = all(_is_number(x) for x in values)
                for k, (key, entries) in enumerate(lines.items()):
                    xs, ys, cis = [], [], []
                    for e in entries:
                        v = e["metrics"].get(m)
                        if v is None:
                            continue
                        xs.append(float(e["point"][flag]) if numeric else values.index(e["point"][flag]))
                        ys.append(v["mean"])
                        cis.append(v["ci95"] or 0.0)
                    label = ", ".join(f"{f.lstrip('-')}={x}" for f, x in zip(others, key)) or None
                    ax.errorbar(xs, ys, yerr=cis, marker="o", capsize=4, label=label, color=f"C{k}")
                if numeric and all(float(x) > 0 for x in values) and max(map(float, values)) / min(
                        map(float, values)) >= 10:
                    ax.set_xscale("log")
                if not numeric:
                    ax.set_xticks(range(len(values)), values)
                ax.set_xlabel(flag.lstrip("-"))
                if len(lines) > 1:
                    ax.legend(fontsize=8)
            ax.set_ylabel(m)
            ax.grid(alpha=0.3)
    fig.suptitle("each run, the mean over seeds and its 95% CI" if not axes else "mean over seeds, bars: 95% CI")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False

"""The commands' figures (matplotlib, the ``plot`` extra): what a run shows better as a picture.

    sine_figure      one held-out task adapted from the meta-learned θ and from the random θ0 side by
                     side (a sequential colormap for the number of steps, y-range from the task); MSE
                     versus adaptation steps with 95% CI bands; the training-loss curve
    omniglot_figure  query accuracy versus inner steps: meta-learned, random init, pixel nearest neighbour
    compare_figure   every algorithm's learning curve on the shared task stream

Each function writes a PNG atomically and returns its path, or prints why it skipped (matplotlib
missing) and returns None. Nothing here computes a result the tables do not already report, except
the adapted predictions of the one plotted task.
"""

from __future__ import annotations

import io
import sys

import numpy as np

from ..checkpoint import atomic_write

META, RANDOM, NN = "#1f5fa8", "#c8553d", "#555555"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        print('plot skipped: matplotlib is not installed (pip install "minireptile[plot]")', file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    try:
        atomic_write(path, lambda f: f.write(buf.getvalue()))
    except OSError as exc:   # a full disk loses the figure, not the outputs written after it (--json)
        print(f"warning: plot not written: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return
    print(f"plot: {path}")


def _band(ax, x, mean, ci, color, label, marker="o"):
    mean, ci = np.asarray(mean), np.asarray(ci)
    ax.plot(x, mean, marker=marker, ms=4, color=color, label=label)
    ax.fill_between(x, mean - ci, mean + ci, color=color, alpha=0.2, lw=0)


def sine_figure(path, *, x, y_true, x_shots, y_shots, steps, meta_preds, random_preds, meta, random,
                curve=None, title=""):
    """Write the sine figure.

    Parameters
    ----------
    x, y_true : ndarray, (m,)                 the plotted task on its grid
    x_shots, y_shots : ndarray, (shots,)      the points it adapts on
    steps : sequence of int, (S,)             step counts of the predictions and of the MSE table
    meta_preds, random_preds : ndarray, (S, m) predictions after each step count
    meta, random : EvalResult                 MSE over the held-out tasks (mean, ci95 of shape (S,))
    curve : (iterations, loss, every) or None  the training-loss curve (``Progress.curve()``)
    """
    plt = _pyplot()
    if plt is None:
        return None
    from matplotlib import colormaps, colors

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (a_meta, a_rand), (a_mse, a_train) = axes
    cmap = colormaps["viridis"]
    norm = colors.Normalize(0, len(steps) - 1)
    top = 1.6 * float(np.max(np.abs(y_true)))
    for ax, preds, name in ((a_meta, meta_preds, "meta-learned θ"), (a_rand, random_preds, "random init θ0")):
        ax.plot(x, y_true, color="black", lw=2.5, label="true function", zorder=3)
        ax.plot(x_shots, y_shots, "o", mfc="white", mec="black", ms=7, mew=1.5, label="adaptation points", zorder=4)
        for j, (s, p) in enumerate(zip(steps, preds)):
            ax.plot(x, p, color=cmap(norm(j)), lw=1.6, label=f"after {s} step{'s' if s != 1 else ''}")
        ax.set_ylim(-top, top)
        ax.set_xlim(float(x[0]), float(x[-1]))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"adapting from the {name}")
        ax.grid(alpha=0.3)
    handles, names = a_meta.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=len(names), fontsize=8, bbox_to_anchor=(0.5, 0.955),
               frameon=False, handlelength=1.5, columnspacing=1.0)

    _band(a_mse, steps, meta.mean, meta.ci95, META, "meta-learned θ")
    _band(a_mse, steps, random.mean, random.ci95, RANDOM, "random init θ0", marker="s")
    a_mse.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    a_mse.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))   # plain numbers (0.5, 2, 3), not 2×10⁰
    a_mse.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    a_mse.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    a_mse.set_xlabel("adaptation steps (full-batch SGD on the adaptation points)")
    a_mse.set_ylabel("MSE on the task's grid")
    a_mse.set_title(f"held-out tasks: mean MSE with 95% CI (n = {len(meta.losses)})")
    a_mse.set_xticks(list(steps))
    a_mse.grid(alpha=0.3, which="both")
    a_mse.legend()

    if curve is not None and len(curve[0]):
        it, loss, every = curve
        a_train.plot(it, loss, color=META)
        a_train.set_ylim(0, None)
        a_train.set_title(f"meta-training: inner training loss (mean over {every} iteration{'s' * (every > 1)})")
    else:
        a_train.text(0.5, 0.5, "no training in this run\n(resumed at its last iteration)", ha="center",
                     va="center", transform=a_train.transAxes)
        a_train.set_title("meta-training loss")
    a_train.set_xlabel("outer iteration")
    a_train.set_ylabel("mean inner-loop MSE")
    a_train.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    _save(fig, plt, path)
    return path


def omniglot_figure(path, *, steps, meta, random, nn, title=""):
    """Write query accuracy versus inner steps.

    Parameters
    ----------
    steps : sequence of int, (K,)
    meta, random : FewShotResult        per-episode accuracy after each scored step count
    nn : (float, float)                 pixel nearest-neighbour accuracy, mean and 95% CI
    """
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for res, color, label, marker in ((meta, META, "Reptile: meta-learned init", "o"),
                                      (random, RANDOM, "random init, trained the same way", "s")):
        m, c = res.curve("accuracy")
        _band(ax, steps, 100 * m, 100 * c, color, label, marker)
    ax.axhline(100 * nn[0], color=NN, ls="--", label="pixel nearest neighbour")
    ax.axhspan(100 * (nn[0] - nn[1]), 100 * (nn[0] + nn[1]), color=NN, alpha=0.15, lw=0)
    ax.set_xlabel("inner steps on the support set")
    ax.set_ylabel("query accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "few-shot query accuracy (mean with 95% CI over meta-test episodes)")
    fig.tight_layout()
    _save(fig, plt, path)
    return path


def compare_figure(path, curves: dict, labels: dict, title="", quantities: dict | None = None):
    """Write the learning curves of ``compare``: one panel per quantity, each with its own y-axis.

    Parameters
    ----------
    curves : {algorithm: (iterations, loss, every)}
        Training curve of each trained algorithm (``Progress.curve()``-like).
    labels : {algorithm: str}
    quantities : {algorithm: str}, optional
        What each curve measures (its panel's y-label, e.g. "query MSE after 1 inner step"); curves
        of the same quantity share a panel. Default: one panel for all.
    """
    plt = _pyplot()
    if plt is None:
        return None
    drawn = {name: c for name, c in curves.items() if len(c[0])}
    quantities = quantities or {}
    groups: dict = {}
    for name in drawn:
        groups.setdefault(quantities.get(name, "training MSE"), []).append(name)
    groups = groups or {"training MSE": []}
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.2 + 2.9 * len(groups)), sharex=True, squeeze=False)
    for k, (ax, (quantity, names)) in enumerate(zip(axes[:, 0], groups.items())):
        every = 1
        for name in names:
            it, loss, every = drawn[name]
            ax.plot(it, loss, label=labels[name], lw=1.5, color=f"C{list(curves).index(name)}")
        ax.set_ylim(0, None)
        ax.set_ylabel(f"{quantity}\n(mean over {every} iterations)", fontsize=9)
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=9)
    axes[-1, 0].set_xlabel("outer iteration")
    axes[0, 0].set_title(title or "learning curves on the shared task stream")
    fig.tight_layout()
    _save(fig, plt, path)
    return path

"""Figures for the documentation pages, drawn at every build (``conf.py`` calls :func:`draw_all`).

The tutorials draw their own figures in their cells; this file draws the ones the plain pages show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _tasks():
    """Three tasks on θ ∈ R²: L_τ(θ) = ½ (a_τ·θ − b_τ)², whose solution sets 𝒲_τ are lines."""
    a = np.array([[1.0, 0.35], [-0.25, 1.0], [1.0, -1.1]])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.array([1.0, 1.2, -0.1])
    return a, b


def _adapt(theta, a, b, k=5, alpha=0.6):
    """k gradient steps on one task: the inner path φ_0 = θ, …, φ_k."""
    path = [theta]
    for _ in range(k):
        phi = path[-1]
        path.append(phi - alpha * a * (a @ phi - b))
    return np.array(path)


def reptile_geometry(path: Path) -> None:
    """Reptile's update in parameter space (the paper's Figure 1): θ moves towards the tasks' solution sets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = _tasks()
    colors = ["tab:blue", "tab:orange", "tab:green"]
    s = np.linspace(-3, 3, 2)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax in axes:
        for tau, (at, bt) in enumerate(zip(a, b)):
            base, direction = at * bt, np.array([-at[1], at[0]])      # a point on 𝒲_τ and the line's direction
            pts = base + s[:, None] * direction
            ax.plot(pts[:, 0], pts[:, 1], color=colors[tau], lw=2,
                    label=rf"$\mathcal{{W}}_{tau + 1}$: solutions of task $\tau = {tau + 1}$")
        ax.set_aspect("equal")
        ax.set(xlim=(-1.6, 1.9), ylim=(-1.4, 1.9), xlabel=r"coordinate 1 of $\theta$", ylabel=r"coordinate 2 of $\theta$")
    # left: one batched outer step from θ
    theta = np.array([0.2, -1.1])
    ax = axes[0]
    phis = []
    for tau, (at, bt) in enumerate(zip(a, b)):
        p = _adapt(theta, at, bt)
        phis.append(p[-1])
        ax.plot(p[:, 0], p[:, 1], ".-", color=colors[tau], ms=5, lw=1)
        ax.annotate(f"$\\phi^{{({tau + 1})}}$", p[-1], textcoords="offset points", xytext=(6, -10), color=colors[tau])
    eps = 0.5
    new = theta + eps * (np.mean(phis, axis=0) - theta)
    ax.plot(*theta, "ko", ms=7)
    ax.annotate(r"$\theta$", theta, textcoords="offset points", xytext=(-14, -4))
    ax.plot(*np.mean(phis, axis=0), "k+", ms=10, mew=2)
    ax.annotate(r"mean $\phi^{(\tau)}$", np.mean(phis, axis=0), textcoords="offset points", xytext=(6, 4))
    ax.annotate("", new, theta, arrowprops=dict(arrowstyle="->", lw=2))
    ax.annotate(r"new $\theta$", new, textcoords="offset points", xytext=(6, -4))
    ax.set_title("one outer step: 5 inner steps per task, ε = 0.5", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    # right: serial Reptile over many outer steps, with ε annealed, ends near all three sets
    rng = np.random.default_rng(0)
    traj = [theta]
    T = 300
    for t in range(T):
        tau = rng.integers(3)
        phi = _adapt(traj[-1], a[tau], b[tau])[-1]
        traj.append(traj[-1] + 0.5 * (1 - t / T) * (phi - traj[-1]))
    traj = np.array(traj)
    # the point with the least summed squared distance to the three lines: Σ_τ (a_τ·θ − b_τ)² minimal
    best = np.linalg.lstsq(a, b, rcond=None)[0]
    ax = axes[1]
    ax.plot(traj[:, 0], traj[:, 1], "k-", lw=0.8, alpha=0.6)
    ax.plot(*traj[0], "ko", ms=7)
    ax.plot(*traj[-1], "k*", ms=12, label=r"$\theta$ after 300 serial steps")
    ax.plot(*best, "rx", ms=10, mew=2, label="least summed squared distance")
    ax.set_title("300 serial outer steps, ε annealed 0.5 → 0", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def from_scratch_plot(path: Path, iters: int = 10000) -> None:
    """from_scratch.py's own figure: meta-train for ``iters`` iterations, adapt to a new task, plot."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("from_scratch", Path(__file__).resolve().parent / "from_scratch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(iters=iters, out=str(path))


def numba_before_after(path: Path, data: Path = Path(__file__).resolve().parent / "data" / "numba_before_after.json") -> None:
    """The numba backend before and after the performance work: four panels from measured numbers."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(Path(data).read_text())
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2))
    colors = ["tab:gray", "tab:blue", "tab:green"]

    ax = axes[0, 0]  # speed against JAX, per workload
    sp = d["speed_vs_jax"]
    x = np.arange(len(sp["workloads"]))
    w = 0.8 / len(sp["runs"])
    for j, (label, vals) in enumerate(sp["runs"].items()):
        bars = ax.bar(x + (j - (len(sp["runs"]) - 1) / 2) * w, vals, w, color=colors[j], label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    for i, t in enumerate(sp["target"]):
        ax.hlines(t, i - 0.45, i + 0.45, colors="crimson", linestyles="--", lw=1.5,
                  label="target" if i == 0 else None)
    ax.set_xticks(x, [wl.replace(" float", "\nfloat") for wl in sp["workloads"]])
    ax.set(ylabel="JAX time / numba time (higher: numba faster)", title="Speed against JAX on the same host",
           ylim=(0, 4.6))
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[0, 1]  # cold compile
    cc = d["cold_compile_seconds"]
    labels = list(cc["runs"])
    for i, label in enumerate(labels):
        vals = cc["runs"][label]
        ax.bar(i, np.median(vals), 0.6, color=colors[0] if label.startswith("before") else colors[1 + (i > 2)])
        ax.plot([i] * len(vals), vals, "k.", ms=5)
        ax.annotate(f"{np.median(vals):.1f} s", (i, max(vals)), textcoords="offset points", xytext=(0, 5),
                    ha="center", fontsize=8)
    ax.axhline(cc["target"], color="crimson", ls="--", lw=1.5, label=f"target {cc['target']:g} s")
    ax.set_xticks(range(len(labels)), [lb.replace(", ", ",\n").replace(" (", "\n(") for lb in labels], fontsize=7)
    ax.set(ylabel="seconds (bar: median; dots: runs)", title="Cold compile of the default minireptile sine",
           ylim=(0, 35))
    ax.legend(fontsize=8)

    ax = axes[1, 0]  # threads under load
    ct = d["contention_loaded"]
    x = np.arange(len(ct["meta_batches"]))
    w = 0.8 / len(ct["runs"])
    for j, (label, per_mb) in enumerate(ct["runs"].items()):
        pos = x + (j - (len(ct["runs"]) - 1) / 2) * w
        ax.bar(pos, [np.median(v) for v in per_mb], w, color=colors[j], label=label)
        for p, v in zip(pos, per_mb):
            ax.plot([p] * len(v), v, "k.", ms=4)
    ax.axhline(ct["target"], color="crimson", ls="--", lw=1.5, label="2 threads as fast as 1")
    ax.set_yscale("log")
    ax.set_yticks([0.5, 1, 2, 5, 10], ["0.5", "1", "2", "5", "10"])
    ax.set_xticks(x, [f"meta-batch {m}" for m in ct["meta_batches"]])
    ax.set(ylabel="2-thread time / 1-thread time (log; lower: better)",
           title="Beside two busy processes on 2 cores (dots: runs)")
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[1, 1]  # Omniglot
    om = d["omniglot"]
    speedup = np.array(om["before"]) / np.array(om["after"])
    bars = ax.barh(np.arange(len(speedup)), speedup, 0.6, color=colors[1])
    ax.bar_label(bars, labels=[f"{s:.1f}x  ({b:g} → {a:g})" for s, b, a in zip(speedup, om["before"], om["after"])],
                 fontsize=8, padding=3)
    for i, t in enumerate(om["target_speedup"]):
        if t is not None:
            ax.vlines(t, i - 0.4, i + 0.4, colors="crimson", linestyles="--", lw=1.5, label=f"target {t:g}x")
    ax.set_yticks(range(len(speedup)), om["measures"], fontsize=8)
    ax.set(xlabel="before / after (higher: faster)", title="Omniglot (MLP 784-256-128-64-64-5, Adam)",
           xlim=(0, speedup.max() * 1.45))
    ax.legend(fontsize=8, loc="lower right")

    fig.suptitle("Numba backend before (commit f2428ff) and after, 2-vCPU Intel Xeon, 2026-11-30", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def meta_vs_random(path: Path, steps=(1, 4, 32), seed: int = 7) -> None:
    """The opener's figure: a new sine task fitted from 10 points after 1, 4 and 32 SGD steps, from the
    meta-learned θ of a real ``minireptile sine`` run and from that run's random θ0 (the interactive page's θ)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import importlib.util

    from minireptile import InnerOptimizer, MLPSpec, forward, inner_loop

    spec = importlib.util.spec_from_file_location("interactive_theta", Path(__file__).resolve().parent / "interactive_theta.py")
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    run = exported.load()
    spec = MLPSpec(tuple(run["sizes"]), run["activation"], "mse")
    rng = np.random.default_rng(seed)
    amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0, 2 * np.pi)          # the run's task family
    grid = np.linspace(-5, 5, 200)[:, None]
    x = rng.choice(np.linspace(-5, 5, 50), size=10, replace=False)[:, None]
    y = amp * np.sin(x + phase)
    fig, axes = plt.subplots(1, len(steps), figsize=(11, 4.0), sharey=True)
    for ax, k in zip(axes, steps):
        ax.plot(grid, amp * np.sin(grid + phase), color="0.6", lw=4, alpha=0.5, label="the new task (unknown)")
        mses = []
        for name, color, label in (("theta", "tab:blue", r"adapted from the meta-learned $\theta$"),
                                   ("theta0", "tab:red", r"adapted from a random $\theta_0$")):
            plan = np.broadcast_to(np.arange(10), (1, k, 10))
            phi = inner_loop(spec, run[name], x[None], y[None], plan, InnerOptimizer("sgd", run["inner_lr"])).phi[0]
            mses.append(float(np.mean((forward(spec, phi, grid) - amp * np.sin(grid + phase)) ** 2)))
            ax.plot(grid, forward(spec, phi, grid), color=color, lw=2, label=label)
        ax.plot(x, y, "ko", ms=5, label="10 points of the task")
        ax.set(title=f"after {k} step{'s' if k > 1 else ''}: MSE {mses[0]:.2f} vs {mses[1]:.2f}", xlabel="x",
               ylim=(-6, 6))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=9, frameon=False)
    axes[0].set_ylabel("y")
    fig.tight_layout()
    fig.subplots_adjust(bottom=0.24)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_all(folder: Path) -> None:
    """Every figure of the plain pages, into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reptile_geometry(folder / "reptile_geometry.png")
    from_scratch_plot(folder / "from_scratch.png")
    numba_before_after(folder / "numba_before_after.png")
    meta_vs_random(folder / "meta_vs_random.png")


if __name__ == "__main__":
    draw_all(Path(__file__).resolve().parent / "generated")

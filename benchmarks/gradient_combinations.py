"""The Reptile paper's §6.2 on sine waves: which combination of inner-loop gradients to follow.

    python benchmarks/gradient_combinations.py [--quick] [--iters N] [--combinations g1 g2 "g1+g2" ...]
                                               [--plot PATH] [--json PATH] [--seed S]

What it does
------------
Every outer iteration runs k = 4 inner SGD steps on four *fresh*, non-overlapping minibatches of
each task (one shuffled epoch of the gist's 50-point grid, minibatches of 10), records the inner
gradients g1 … g4 along the trajectory (``maml.inner_gradients``) and moves θ along a linear
combination of them:

    θ ← θ − ε_t · α · mean_tasks(Σ_i c_i g_i)          ε_t: ε0 → 0 linearly (ε0 = 1 by default)

With SGD, g1+g2+g3+g4 is 4-step Reptile exactly, g1 is joint training, g_k is FOMAML with k
minibatches (k−1 steps, then the gradient on a fresh minibatch), and 1/2(g1+g2) is 2-step Reptile
at half the step. All combinations see the same tasks, minibatches, θ0 and ε schedule.

Learning curves: every ``--eval-every`` iterations, the MSE on the 50-point grid after
``--eval-steps`` full-batch SGD steps (α = 0.02) on 10 grid shots, mean over ``--eval-tasks``
held-out tasks; printed as a table and, with matplotlib, plotted. Alongside, the paper's Taylor
diagnostics at the same iterations (``diagnostics.diagnose``): the cosine of the update direction
with AvgGrad and with AvgGradInner, estimated by Hessian-vector products on a fresh meta-batch.

The paper's finding (Omniglot): g1 alone (joint training) does not meta-learn; any combination
that includes a later gradient does, and sums of more gradients learn faster. docs/algorithms.md
has this script's numbers on sine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from minireptile.commands.compare import default_backend
from minireptile.algorithms.diagnostics import combination_coefficients, diagnose
from minireptile.evaluation.regression import evaluate_sine
from minireptile.algorithms.maml import combination_direction, inner_gradients, parse_combination
from minireptile.mlp import MLPSpec, init_params
from minireptile.optim import InnerOptimizer
from minireptile.reptile import epsilon_schedule
from minireptile.tasks import EVAL, INIT, get_preset, sample_sine_tasks, sine_block, sine_eval_tasks, stream_rng

DEFAULT_COMBINATIONS = ("g1", "g2", "g3", "g4", "g1+g2", "1/2(g1+g2)", "g1+g2+g3", "g1+g2+g3+g4")
K_STEPS, BATCH, LR = 4, 10, 0.02
DIAGNOSTICS = 9          # stream purpose of the diagnostic meta-batches (tasks.INIT/TRAIN/EVAL/PLOT are 0-3)


def train_curve(spec, theta0, combination, args, backend, eval_tasks):
    """Train with one combination; return the evaluation iterations, MSEs and diagnoses."""
    preset = get_preset("gist")
    coeffs = parse_combination(combination, K_STEPS)
    block_iters = max(1, 1024 // args.meta_batch)
    theta = theta0.copy()
    eval_opt = InnerOptimizer("sgd", LR)
    its, mses, diags = [], [], []
    block = None
    for it in range(args.iters + 1):
        if it % args.eval_every == 0 or it == args.iters:
            res = evaluate_sine(spec, theta, eval_tasks, eval_opt, backend, (0, args.eval_steps))
            its.append(it)
            mses.append(float(res.mean[-1]))
            # Taylor diagnostics on a fresh meta-batch (its own stream: training tasks untouched)
            Xd, Yd, pd = sample_sine_tasks(stream_rng(args.seed, DIAGNOSTICS, it), args.meta_batch, preset,
                                           K_STEPS, BATCH)
            Gd, _ = inner_gradients(spec, theta, Xd, Yd, pd, LR)
            diags.append(diagnose(spec, theta, Xd, Yd, pd, combination_direction(Gd, coeffs))._asdict())
        if it == args.iters:
            break
        b, j = divmod(it, block_iters)
        if j == 0:
            block = sine_block(args.seed, b, block_iters, args.meta_batch, preset, K_STEPS, BATCH)
        X, Y, plans = block
        G, _ = inner_gradients(spec, theta, X[j], Y[j], plans[j], LR)      # (meta_batch, 4, P)
        eps = epsilon_schedule(it, args.iters, args.eps0, 0.0)
        theta = theta - eps * LR * combination_direction(G, coeffs)
    return its, mses, diags


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="600 iterations, 50 evaluation tasks")
    p.add_argument("--iters", type=int, help="outer iterations per combination (default 3000)")
    p.add_argument("--meta-batch", type=int, default=5, help="tasks per outer iteration (default 5)")
    p.add_argument("--combinations", nargs="+", default=list(DEFAULT_COMBINATIONS),
                   help="combinations in the paper's notation (g1, g1+g2, 1/2(g1+g2), sum, last)")
    p.add_argument("--eval-every", type=int, help="iterations between evaluations (default iters/10)")
    p.add_argument("--eval-steps", type=int, default=8, help="adaptation steps at evaluation (default 8)")
    p.add_argument("--eval-tasks", type=int, help="held-out tasks (default 200)")
    p.add_argument("--eps0", type=float, default=1.0,
                   help="outer step ε0, annealed linearly to 0 (default 1.0, the paper's batched Reptile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("numpy", "numba"), help="evaluation inner loops (default numba if importable)")
    p.add_argument("--plot", type=Path, help="write the learning curves here (needs matplotlib)")
    p.add_argument("--json", type=Path, help="write curves and diagnostics here")
    args = p.parse_args(argv)
    args.iters = args.iters or (600 if args.quick else 3000)
    args.eval_tasks = args.eval_tasks or (50 if args.quick else 200)
    args.eval_every = args.eval_every or max(1, args.iters // 10)
    for c in args.combinations:
        parse_combination(c, K_STEPS)                     # fail early on a typo

    preset = get_preset("gist")
    spec = MLPSpec((1, *preset.hidden, 1), preset.activation, "mse")
    theta0 = init_params(spec, stream_rng(args.seed, INIT), np.float64)
    backend = default_backend(args.backend)
    eval_tasks = sine_eval_tasks(stream_rng(args.seed, EVAL), args.eval_tasks, preset, np.float64)
    print(f"gradient combinations on sine (gist tasks, 1-64-64-1 tanh, k={K_STEPS} fresh minibatches of {BATCH}, "
          f"α={LR}, ε {args.eps0}→0, meta-batch {args.meta_batch}, {args.iters} iterations, seed {args.seed})", flush=True)
    curves = {}
    for c in args.combinations:
        t = time.perf_counter()
        curves[c] = train_curve(spec, theta0, c, args, backend, eval_tasks)
        print(f"  {c:<14} final MSE {curves[c][1][-1]:.3f}  ({time.perf_counter() - t:.1f}s)", flush=True)

    its = curves[args.combinations[0]][0]
    print(f"\nMSE on the grid after {args.eval_steps} steps on 10 shots, mean over {args.eval_tasks} held-out tasks:\n")
    print("| iteration | " + " | ".join(args.combinations) + " |")
    print("|---|" + "---|" * len(args.combinations))
    for j, it in enumerate(its):
        print(f"| {it} | " + " | ".join(f"{curves[c][1][j]:.3f}" for c in args.combinations) + " |")
    print("\nTaylor diagnostics, median over the evaluation points after iteration 0 (each on a fresh meta-batch): "
          "the update direction d fitted as a·AvgGrad + b·AvgGradInner (least squares; leading-order "
          "prediction from the paper's expansion beside it), the fit's relative residual, and norms:\n")
    print("| combination | predicted a | fitted a | predicted b | fitted b | residual | ‖d‖ | ‖AvgGrad‖ | ‖AvgGradInner‖ |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = ("coef_avg_grad", "coef_avg_grad_inner", "residual", "update_norm", "avg_grad_norm", "avg_grad_inner_norm")
    for c in args.combinations:
        later = curves[c][2][1:] or curves[c][2]
        m = {k: float(np.median([d[k] for d in later])) for k in keys}
        pa, pb = combination_coefficients(parse_combination(c, K_STEPS), LR)
        print(f"| {c} | {pa:.2f} | {m['coef_avg_grad']:.2f} | {pb:.3f} | {m['coef_avg_grad_inner']:.3f} | "
              f"{m['residual']:.2f} | {m['update_norm']:.3g} | {m['avg_grad_norm']:.3g} | {m['avg_grad_inner_norm']:.3g} |")

    if args.json:
        args.json.write_text(json.dumps({"iterations": its, "curves": {c: v[1] for c, v in curves.items()},
                                         "diagnostics": {c: v[2] for c, v in curves.items()},
                                         "config": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            print('plot skipped: matplotlib is not installed (pip install "minireptile[plot]")', file=sys.stderr)
            return 0
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for c in args.combinations:
            ax.plot(its, curves[c][1], label=c, marker="o", ms=3)
        ax.set_xlabel("outer iteration")
        ax.set_ylabel(f"MSE after {args.eval_steps} steps")
        ax.set_yscale("log")
        ax.set_title("Inner-gradient combinations as meta-updates (sine, k = 4)")
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        plt.close(fig)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reptile from scratch: a sine-wave regressor meta-learned in bare NumPy.

    python from_scratch.py            # about 35 s of CPU; writes runs/from_scratch.png (needs matplotlib)

This is all of Reptile (Nichol, Achiam & Schulman 2018) for one small problem, with no validation,
no options and no compiled code: an MLP 1-64-64-1 with tanh, its backward pass written by hand, the
inner loop (k SGD steps on one task) and the outer update θ ← θ + ε(φ − θ). The experiment is
openai's sine-wave demo. minireptile computes exactly the same functions (`forward`, `inner_loop`,
`reptile_update`); a test checks that this file and the library agree to 1e-12 in float64.
Notation: φ_0 = θ; step i (i = 1..k) uses minibatch i and gives φ_i = φ_{i-1} − α ∇L_i(φ_{i-1}).
"""
import os

import numpy as np

SIZES = (1, 64, 64, 1)                       # input, two hidden tanh layers, linear output


def layers(theta, sizes=SIZES):
    """Named views (W_l, b_l) into the flat θ; W_l is (d_{l+1}, d_l), stored (out, in)."""
    views, off = [], 0
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        W = theta[off:off + d_out * d_in].reshape(d_out, d_in)
        b = theta[off + d_out * d_in:off + d_out * d_in + d_out]
        views.append((W, b))
        off += d_out * d_in + d_out
    return views


def init(rng, sizes=SIZES):
    """θ drawn like torch.nn.Linear: W_l and b_l ~ U(-1/sqrt(d_l), 1/sqrt(d_l)), layer by layer."""
    theta = np.empty(sum(d_out * d_in + d_out for d_in, d_out in zip(sizes[:-1], sizes[1:])))
    for W, b in layers(theta, sizes):
        bound = 1.0 / np.sqrt(W.shape[1])
        W[...] = rng.uniform(-bound, bound, size=W.shape)
        b[...] = rng.uniform(-bound, bound, size=b.shape)
    return theta


def forward(theta, x, sizes=SIZES):
    """Network output, shape (B, d_out), for inputs x of shape (B, d_in)."""
    Ws = layers(theta, sizes)
    a = x
    for l, (W, b) in enumerate(Ws):
        z = a @ W.T + b                                  # (B, d_{l+1})
        a = z if l == len(Ws) - 1 else np.tanh(z)        # the last layer is linear
    return a


def loss_and_grad(theta, x, y, sizes=SIZES):
    """Mean squared error mean((out − y)²) and its gradient with respect to θ, shape (P,)."""
    Ws = layers(theta, sizes)
    acts = [x]                                           # acts[l]: input of layer l, (B, d_l)
    for W, b in Ws[:-1]:
        acts.append(np.tanh(acts[-1] @ W.T + b))
    W, b = Ws[-1]
    diff = acts[-1] @ W.T + b - y                        # out − y, (B, d_out)
    delta = (2.0 / diff.size) * diff                     # δ = ∂L/∂z of the output layer
    grad = np.zeros_like(theta)
    for l in range(len(Ws) - 1, -1, -1):
        dW, db = layers(grad, sizes)[l]                  # views into grad, laid out like θ
        dW += delta.T @ acts[l]                          # (d_{l+1}, d_l)
        db += delta.sum(axis=0)
        if l > 0:
            delta = (delta @ Ws[l][0]) * (1 - acts[l] * acts[l])   # through W_l, then tanh' = 1 − a²
    return float(np.mean(diff * diff)), grad


def inner_loop(theta, x, y, plan, lr, sizes=SIZES):
    """φ_k: k = len(plan) SGD steps from θ on one task; step i (i = 1..k) uses the points x[plan[i − 1]]."""
    phi = theta.copy()
    for idx in plan:
        phi -= lr * loss_and_grad(phi, x[idx], y[idx], sizes)[1]
    return phi


def reptile_update(theta, phis, eps):
    """θ + ε·(mean over tasks τ of φ^(τ) − θ) for the tasks' adapted parameters phis, shape (n_tasks, P)."""
    return theta + eps * (np.mean(phis, axis=0) - theta)


def sample_task(rng):
    """A task: f(x) = A·sin(x + b) with A ~ U[0.1, 5] and b ~ U[0, 2π]."""
    amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0.0, 2 * np.pi)
    return lambda x: amp * np.sin(x + phase)


GRID = np.linspace(-5, 5, 50)[:, None]                   # every task's 50 training points


def train(rng, iters=30000, inner_steps=5, batch=10, lr=0.02, eps0=0.1):
    """Serial Reptile: one task per outer step, one shuffled epoch of minibatches, ε annealed to 0."""
    theta = init(rng)
    for t in range(iters):
        f = sample_task(rng)
        plan = rng.permutation(len(GRID))[:inner_steps * batch].reshape(inner_steps, batch)
        phi = inner_loop(theta, GRID, f(GRID), plan, lr)
        theta = reptile_update(theta, phi[None], eps0 * (1 - t / iters))
    return theta


def adapt(theta, x, y, steps, lr=0.02):
    """Full-batch SGD on a few shots: [θ, φ_1, ..., φ_steps]."""
    path = [theta]
    for _ in range(steps):
        path.append(inner_loop(path[-1], x, y, [np.arange(len(x))], lr))
    return path


def main(iters=30000, out="runs/from_scratch.png", seed=0):
    """Meta-train, then adapt the meta-learned and a random θ to a new task on 10 points; plot both."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    theta = train(rng, iters)
    f = sample_task(rng)
    shots = GRID[rng.choice(len(GRID), size=10, replace=False)]
    starts = {"meta-learned θ": theta, "random θ": init(rng)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharey=True)
    for ax, (name, start) in zip(axes, starts.items()):
        path = adapt(start, shots, f(shots), 32)
        ax.plot(GRID, f(GRID), "k", lw=2, label="true task")
        ax.plot(shots, f(shots), "ko", label="10 shots")
        for s, color in zip((0, 1, 2, 4, 32), plt.cm.viridis(np.linspace(0, 0.9, 5))):
            mse = np.mean((forward(path[s], GRID) - f(GRID)) ** 2)
            ax.plot(GRID, forward(path[s], GRID), color=color, label=f"after {s} step{'' if s == 1 else 's'} (MSE {mse:.2f})")
        top = 1.5 * np.abs(f(GRID)).max() + 0.5                 # the y-range follows the task
        ax.set(title=f"adapting from the {name}", xlabel="x", ylim=(-top, top))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    axes[0].set_ylabel("y")
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

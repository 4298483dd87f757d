"""Solutions to the exercises in docs/exercises/exercises.py, for instructors (not shipped with the exercises).

Check them: ``python docs/exercises/check.py --file tests/docs/exercise_solutions.py``.

Shapes: θ (P,) flat parameters; X (B, d_in); Y (B, d_out) float targets; one task's data
X (n_points, d_in) and a plan (k, batch) of point indices, one row per inner step.
"""
import numpy as np

from minireptile import InnerOptimizer, inner_loop, loss_and_grad, unflatten


def relu_backward(da, z):
    """∂L/∂z for a = relu(z), given da = ∂L/∂a; da, z and the result all (B, d)."""
    return da * (z > 0)


def softmax_ce_grad(out, y):
    """∂L/∂out of L = −(1/B) Σ_b log softmax(out_b)[y_b]; out (B, C) logits, y (B,) int labels."""
    shifted = out - out.max(axis=1, keepdims=True)         # softmax is shift invariant; exp cannot overflow
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def reptile_update(theta, phi, eps):
    """θ + ε (mean_i φ_i − θ); θ (P,), φ (n_tasks, P)."""
    return theta + eps * (phi.mean(axis=0) - theta)


def joint_training_step(spec, theta, X, Y, lr, eps):
    """One SGD step of size ε·α on the mean over tasks of each task's full-batch loss.

    X (n_tasks, n_points, d_in), Y (n_tasks, n_points, d_out). Reptile with k = 1 full-batch
    inner step computes exactly this.
    """
    grads = [loss_and_grad(spec, theta, X[tau], Y[tau])[1] for tau in range(len(X))]
    return theta - eps * lr * np.mean(grads, axis=0)


def hvp_finite_differences(spec, theta, X, Y, v, h=1e-5):
    """H·v ≈ (∇L(θ + h v) − ∇L(θ − h v)) / 2h: two gradient calls, error O(h²)."""
    g_plus = loss_and_grad(spec, theta + h * v, X, Y)[1]
    g_minus = loss_and_grad(spec, theta - h * v, X, Y)[1]
    return (g_plus - g_minus) / (2 * h)


def hvp_r_operator(spec, theta, X, Y, v):
    """Exact H·v for a tanh MLP with MSE loss, by the R-operator R{x} = d/dr x(θ + r v) at r = 0.

    Every line of the backward pass gets its R-line, using (V_l, v_b,l), the weight and bias views of v for layer l.
    """
    Ws, Vs = unflatten(spec, theta), unflatten(spec, v)
    n = len(Ws)
    a, Ra, z, Rz = [X], [np.zeros_like(X)], [], []
    for l, ((W, b), (V, vb)) in enumerate(zip(Ws, Vs)):
        z.append(a[l] @ W.T + b)
        Rz.append(Ra[l] @ W.T + a[l] @ V.T + vb)           # R{z} = R{a} Wᵀ + a Vᵀ + v_b
        if l < n - 1:
            a.append(np.tanh(z[l]))
            Ra.append((1 - a[l + 1] ** 2) * Rz[l])         # R{tanh(z)} = tanh'(z) R{z}
    dz = 2.0 / z[-1].size * (z[-1] - Y)                    # δ at the output
    Rdz = 2.0 / z[-1].size * Rz[-1]
    hv = np.zeros_like(theta)
    for l in range(n - 1, -1, -1):
        W, V = Ws[l][0], Vs[l][0]
        RdW, Rdb = unflatten(spec, hv)[l]
        RdW += Rdz.T @ a[l] + dz.T @ Ra[l]                 # R{δᵀ a} = R{δ}ᵀ a + δᵀ R{a}
        Rdb += Rdz.sum(axis=0)
        if l > 0:
            da, Rda = dz @ W, Rdz @ W + dz @ V             # R{δ W} = R{δ} W + δ V
            s = 1 - a[l] ** 2                              # tanh'(z_{l-1}); tanh'' = −2 a (1 − a²)
            dz, Rdz = da * s, Rda * s + da * (-2 * a[l] * s) * Rz[l - 1]
    return hv


def fomaml_gradient(spec, theta, X, Y, plan, lr):
    """First-order MAML as supervised-reptile runs it, for one task.

    k − 1 SGD steps (step size lr) on the minibatches plan[0] … plan[k−2], reaching φ_{k−1}; then
    the gradient of minibatch k (plan[k−1]) at φ_{k−1}. X (n_points, d_in), plan (k, batch).
    """
    phi = inner_loop(spec, theta, X[None], Y[None], plan[None, :-1], InnerOptimizer("sgd", lr)).phi[0] \
        if len(plan) > 1 else theta
    return loss_and_grad(spec, phi, X[plan[-1]], Y[plan[-1]])[1]


# ---------------------------------------------------------------------------------------------
# From the inner loop to MAML: write Reptile itself, then the meta-gradients beside it
# ---------------------------------------------------------------------------------------------
def sgd_inner_loop(spec, theta, X, Y, plan, lr):
    """φ_k after k SGD steps on one task: φ_i = φ_{i−1} − α ∇L_i(φ_{i−1}), φ_0 = θ.

    X (n_points, d_in), Y (n_points, d_out), plan (k, batch): row s−1 holds minibatch s's indices.
    Returns (P,); θ is not modified.
    """
    phi = theta.copy()
    for idx in plan:
        phi = phi - lr * loss_and_grad(spec, phi, X[idx], Y[idx])[1]
    return phi


def serial_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final):
    """Serial Reptile for T outer iterations, one task each, ε annealed linearly from eps0 towards eps_final.

    X (T, n_points, d_in), Y (T, n_points, d_out), plans (T, k, batch). Iteration t = 0 … T−1 uses
    ε_t = eps0 + (eps_final − eps0)·t/T and θ ← θ + ε_t (φ − θ). Returns θ (P,).
    """
    T = len(X)
    for t in range(T):
        eps = eps0 + (eps_final - eps0) * t / T
        phi = sgd_inner_loop(spec, theta, X[t], Y[t], plans[t], lr)
        theta = theta + eps * (phi - theta)
    return theta


def batched_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final):
    """Batched Reptile: each iteration adapts n tasks from the same θ and moves towards their mean φ.

    X (T, n_tasks, n_points, d_in), Y (T, n_tasks, n_points, d_out), plans (T, n_tasks, k, batch).
    Returns θ (P,).
    """
    T = len(X)
    for t in range(T):
        eps = eps0 + (eps_final - eps0) * t / T
        phis = np.array([sgd_inner_loop(spec, theta, X[t, tau], Y[t, tau], plans[t, tau], lr) for tau in range(X.shape[1])])
        theta = theta + eps * (phis.mean(axis=0) - theta)
    return theta


def maml_gradient(spec, theta, X, Y, plan, query, lr):
    """The exact MAML meta-gradient d L_q(φ_k)/dθ of one task, backwards through the k SGD steps.

    v ← ∇L_q(φ_k); for i = k … 1: v ← v − α H_i(φ_{i−1}) v, with H_i the Hessian of minibatch i's
    loss. X (n_points, d_in), plan (k, batch), query (q,) point indices. Returns (P,).
    """
    phis = [theta]
    for idx in plan:
        phis.append(phis[-1] - lr * loss_and_grad(spec, phis[-1], X[idx], Y[idx])[1])
    v = loss_and_grad(spec, phis[-1], X[query], Y[query])[1]
    for i in range(len(plan) - 1, -1, -1):            # v ← (I − α H_{i+1}(φ_i)) v, 0-based rows
        v = v - lr * hvp_r_operator(spec, phis[i], X[plan[i]], Y[plan[i]], v)
    return v


def reptile_second_order(spec, theta, X, Y, plan, lr):
    """The §5 prediction of one task's Reptile update in gradient units, (θ − φ_k)/α ≈ Σ_i ḡ_i − α Σ_{j<i} H̄_i ḡ_j.

    ḡ_i = ∇L_i(θ) and H̄_i = ∇²L_i(θ), all at θ. X (n_points, d_in), plan (k, batch). Returns (P,).
    """
    gbar = [loss_and_grad(spec, theta, X[idx], Y[idx])[1] for idx in plan]
    pred, before = np.zeros_like(theta), np.zeros_like(theta)
    for i, idx in enumerate(plan):
        if i > 0:
            pred -= lr * hvp_r_operator(spec, theta, X[idx], Y[idx], before)
        pred += gbar[i]
        before = before + gbar[i]
    return pred


def gradient_combination(spec, theta, X, Y, plan, lr, coeffs):
    """A §6.2 meta-update direction Σ_i c_i g_i for one task, g_i = ∇L_i(φ_{i−1}) along SGD's own path.

    coeffs (k,): all ones is Reptile's (θ − φ_k)/α, the last unit vector FOMAML, the first joint
    training. X (n_points, d_in), plan (k, batch). Returns (P,).
    """
    phi, direction = theta, np.zeros_like(theta)
    for c, idx in zip(coeffs, plan):
        g = loss_and_grad(spec, phi, X[idx], Y[idx])[1]
        direction += c * g
        phi = phi - lr * g
    return direction

"""Solutions to the exercises in exercises.py (read them after trying; ``check.py --solutions`` tests them).

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
    grads = [loss_and_grad(spec, theta, X[i], Y[i])[1] for i in range(len(X))]
    return theta - eps * lr * np.mean(grads, axis=0)


def hvp_finite_differences(spec, theta, X, Y, v, h=1e-5):
    """H·v ≈ (∇L(θ + h v) − ∇L(θ − h v)) / 2h: two gradient calls, error O(h²)."""
    g_plus = loss_and_grad(spec, theta + h * v, X, Y)[1]
    g_minus = loss_and_grad(spec, theta - h * v, X, Y)[1]
    return (g_plus - g_minus) / (2 * h)


def hvp_r_operator(spec, theta, X, Y, v):
    """Exact H·v for a tanh MLP with MSE loss, by the R-operator R{x} = d/dr x(θ + r v) at r = 0.

    Every line of the backward pass gets its R-line, using (V_l, r_l), v's views for layer l.
    """
    Ws, Vs = unflatten(spec, theta), unflatten(spec, v)
    n = len(Ws)
    a, Ra, z, Rz = [X], [np.zeros_like(X)], [], []
    for l, ((W, b), (V, r)) in enumerate(zip(Ws, Vs)):
        z.append(a[l] @ W.T + b)
        Rz.append(Ra[l] @ W.T + a[l] @ V.T + r)            # R{z} = R{a} Wᵀ + a Vᵀ + r
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

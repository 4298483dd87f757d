"""Exercises: replace each ``raise NotImplementedError`` with your answer, then check it:

    python check.py sgd_inner_loop       # one exercise
    python check.py                      # all of them
    python check.py --json               # a machine-readable grade (for autograders)

Run the command from this folder (or give the path: ``python docs/exercises/check.py NAME``). The
checker compares your function with an independent computation (finite differences, the library
on the same seed, or an identity the library satisfies) on random problems.

Shapes: θ (P,) flat parameters; X (B, d_in); Y (B, d_out) float targets; one task's data
X (n_points, d_in) with a plan (k, batch) of point indices, row i−1 the minibatch of inner step i
(steps count from 1, φ_0 = θ, as in the docs' notation page). You may use numpy and
``from minireptile import ...``, but an exercise that asks you to write a library function checks
that you do not call it.

Each exercise says its level (1 warm-up, 2 core, 3 stretch) and a time to expect, and asks one
question: write your prediction down *before* you run the check, then compare with what it prints.
"""
import numpy as np  # noqa: F401

from minireptile import InnerOptimizer, inner_loop, loss_and_grad, unflatten  # noqa: F401


# --- Part A: the pieces of backpropagation and of the outer update ---------------------------
def relu_backward(da, z):
    """∂L/∂z for a = relu(z) = max(z, 0), given da = ∂L/∂a. All arrays (B, d).

    Level 1, 10 min. Hint: the derivative of max(z, 0) is 1 where z > 0 and 0 elsewhere.
    Predict, then measure: what fraction of the entries of ∂L/∂z is exactly 0 for z ~ N(0, 1)?
    """
    raise NotImplementedError


def softmax_ce_grad(out, y):
    """∂L/∂out of the mean softmax cross-entropy L = −(1/B) Σ_b log softmax(out_b)[y_b].

    out (B, C) logits, y (B,) integer labels in [0, C). Returns (B, C).
    Level 1, 15 min. Hint: the answer is (softmax(out) − onehot(y)) / B; compute softmax without overflow.
    Predict, then measure: what does each row of your answer sum to, and why?
    """
    raise NotImplementedError


def reptile_update(theta, phi, eps):
    """Reptile's outer update θ + ε (mean_τ φ^(τ) − θ) over the tasks τ. θ (P,), φ (n_tasks, P), ε a float.

    Returns (P,). Level 1, 5 min. Write the line yourself (the checker does not let you call the
    library's ``reptile_update``).
    Predict, then measure: with ε = 1 and one task, where does θ land?
    """
    raise NotImplementedError


# --- Part B: Reptile itself -------------------------------------------------------------------
def sgd_inner_loop(spec, theta, X, Y, plan, lr):
    """The inner loop for one task: k SGD steps φ_i = φ_{i−1} − α ∇L_i(φ_{i−1}), φ_0 = θ; return φ_k.

    X (n_points, d_in), Y (n_points, d_out), plan (k, batch) of point indices (row s−1 is
    minibatch i), lr = α. Returns (P,); do not modify θ. Level 1, 15 min.
    Hint: ``loss_and_grad(spec, phi, X[idx], Y[idx])`` returns (loss, gradient); do not call ``inner_loop``.
    Predict, then measure: is the minibatch loss lower after the k steps than before them, on every task?
    """
    raise NotImplementedError


def joint_training_step(spec, theta, X, Y, lr, eps):
    """One SGD step of size ε·α (α = lr) on the mean over tasks of each task's full-batch loss.

    X (n_tasks, n_points, d_in), Y (n_tasks, n_points, d_out). Returns θ (P,). Level 2, 15 min.
    Compute the gradient step yourself with ``loss_and_grad``: the checker verifies that Reptile
    with k = 1 full-batch inner step gives exactly your answer (k = 1 Reptile is joint training),
    so an answer that calls ``inner_loop`` or ``reptile_update`` would prove nothing and is rejected.
    Predict, then measure: is Reptile with k = 2 also joint training (same θ to 1e-10)?
    """
    raise NotImplementedError


def serial_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final):
    """Serial Reptile: T outer iterations, one task each, with ε annealed linearly.

    Iteration t = 0 … T−1 adapts θ to task t with k SGD steps (your ``sgd_inner_loop``), then moves
    θ ← θ + ε_t (φ − θ), ε_t = eps0 + (eps_final − eps0)·t/T. X (T, n_points, d_in),
    Y (T, n_points, d_out), plans (T, k, batch). Returns θ (P,). Level 2, 20 min.
    The checker runs ``minireptile.meta_train`` on the same sine tasks (same seed) and compares θ.
    Predict, then measure: after 1000 iterations, does the trained θ fit new sine waves better
    than the initial θ after 5 steps? By how much (the checker prints both MSEs)?
    """
    raise NotImplementedError


def batched_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final):
    """Batched Reptile: each iteration adapts n tasks from the same θ, then θ ← θ + ε_t (mean_τ φ^(τ) − θ).

    X (T, n_tasks, n_points, d_in), Y (T, n_tasks, n_points, d_out), plans (T, n_tasks, k, batch).
    Returns θ (P,). Level 2, 15 min (after ``serial_reptile``).
    Predict, then measure: does the order of the tasks within an iteration change θ? By how much?
    """
    raise NotImplementedError


# --- Part C: second derivatives, MAML and why Reptile works -----------------------------------
def hvp_finite_differences(spec, theta, X, Y, v, h=1e-5):
    """The Hessian-vector product H·v of the batch loss at θ by central differences of the gradient.

    Two calls of ``loss_and_grad``; error O(h²). Returns (P,). Level 1, 10 min.
    Predict, then measure: what h gives the smallest error in float64, 1e-2, 1e-5 or 1e-9?
    """
    raise NotImplementedError


def hvp_r_operator(spec, theta, X, Y, v):
    """The exact H·v for a tanh MLP with MSE loss, by the R-operator R{x} = d/dr x(θ + r v) at r = 0.

    Start from the forward and backward pass of ``minireptile.reference.loss_and_grad`` and give
    every line its R-line, with (V_l, v_b,l) the weight and bias views of v for layer l
    (``unflatten(spec, v)``): R{z} = R{a} Wᵀ + a Vᵀ + v_b,l, R{tanh(z)} = tanh'(z) R{z},
    R{δᵀ a} = R{δ}ᵀ a + δᵀ R{a}, ... The R-lines of the gradient lines (dW, db) add up to H·v,
    laid out like θ. Returns (P,). Level 3, 60 min.
    Predict, then measure: how far from the finite-difference H·v is yours, 1e-4, 1e-8 or 1e-12?
    """
    raise NotImplementedError


def fomaml_gradient(spec, theta, X, Y, plan, lr):
    """First-order MAML as openai/supervised-reptile runs it, for one task.

    k − 1 SGD steps of size lr on the minibatches plan[0] … plan[k−2] reach φ_{k−1}; return the
    gradient of minibatch k (plan[k−1]) at φ_{k−1}. X (n_points, d_in), Y (n_points, d_out),
    plan (k, batch). Level 2, 15 min. Hint: reuse your ``sgd_inner_loop``.
    Predict, then measure: for k = 1, which other exercise's gradient is this?
    """
    raise NotImplementedError


def maml_gradient(spec, theta, X, Y, plan, query, lr):
    """The exact MAML meta-gradient d L_q(φ_k)/dθ of one task, through k inner SGD steps.

    Forward: φ_0 = θ, φ_i = φ_{i−1} − α ∇L_i(φ_{i−1}) (keep every φ_i). Backward: v ← ∇L_q(φ_k) on
    the query points; for i = k, k−1, …, 1: v ← v − α H_i(φ_{i−1}) v, where H_i is the Hessian of
    minibatch i's loss (your ``hvp_r_operator``). The result is (I − αH_1(φ_0))⋯(I − αH_k(φ_{k−1}))
    ∇L_q(φ_k). X (n_points, d_in), plan (k, batch), query (q,) point indices. Returns (P,).
    Level 3, 45 min. The checker compares with central differences of θ ↦ L_q(φ_k(θ)).
    Predict, then measure: how large is the Hessian part (MAML − first-order MAML) relative to
    the first-order gradient ∇L_q(φ_k), for α = 0.01 and for α = 0.1?
    """
    raise NotImplementedError


def reptile_second_order(spec, theta, X, Y, plan, lr):
    """The §5 Taylor prediction of one task's Reptile update in gradient units.

    (θ − φ_k)/α = Σ_i ḡ_i − α Σ_{j<i} H̄_i ḡ_j + O(α²), with ḡ_i = ∇L_i(θ) and H̄_i = ∇²L_i(θ), both at
    θ (not along the path). Return the two written terms, (P,). X (n_points, d_in), plan (k, batch).
    Level 2, 30 min. The checker measures the residual ‖(θ − φ_k)/α − yours‖ at α, α/2, α/4, α/8
    and prints the slope of log residual against log α.
    Predict, then measure: what slope do you expect, and what slope would you get if you dropped
    the Hessian term?
    """
    raise NotImplementedError


def gradient_combination(spec, theta, X, Y, plan, lr, coeffs):
    """A §6.2 meta-update direction Σ_i c_i g_i for one task, g_i = ∇L_i(φ_{i−1}) along SGD's own path.

    coeffs (k,) floats; φ_0 = θ, φ_i = φ_{i−1} − α g_i. Returns (P,). Level 2, 20 min.
    Predict, then measure: which coefficients give Reptile's (θ − φ_k)/α, which FOMAML, which
    joint training? (The checker prints the cosine of each with Reptile's direction.)
    """
    raise NotImplementedError

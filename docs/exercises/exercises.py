"""Exercises: replace each ``raise NotImplementedError`` with your answer, then check it:

    python check.py relu_backward        # one exercise
    python check.py                      # all of them

Run the command from this folder (or give the path: ``python docs/exercises/check.py NAME``). The
checker compares your function with an independent computation (finite differences, or an identity
the library satisfies) on random problems. Shapes: θ (P,) flat parameters; X (B, d_in); Y (B, d_out)
float targets; one task's data X (n_points, d_in) with a plan (k, batch) of point indices, one row
per inner step. You may use numpy and ``from minireptile import ...``. Solutions: solutions.py.
"""
import numpy as np  # noqa: F401

from minireptile import InnerOptimizer, inner_loop, loss_and_grad, unflatten  # noqa: F401


def relu_backward(da, z):
    """∂L/∂z for a = relu(z) = max(z, 0), given da = ∂L/∂a. All arrays (B, d).

    Hint: the derivative of max(z, 0) is 1 where z > 0 and 0 elsewhere.
    """
    raise NotImplementedError


def softmax_ce_grad(out, y):
    """∂L/∂out of the mean softmax cross-entropy L = −(1/B) Σ_b log softmax(out_b)[y_b].

    out (B, C) logits, y (B,) integer labels in [0, C). Returns (B, C).
    Hint: the answer is (softmax(out) − onehot(y)) / B; compute softmax without overflow.
    """
    raise NotImplementedError


def reptile_update(theta, phi, eps):
    """Reptile's outer update θ + ε (mean_i φ_i − θ). θ (P,), φ (n_tasks, P), ε a float. Returns (P,)."""
    raise NotImplementedError


def joint_training_step(spec, theta, X, Y, lr, eps):
    """One SGD step of size ε·α (α = lr) on the mean over tasks of each task's full-batch loss.

    X (n_tasks, n_points, d_in), Y (n_tasks, n_points, d_out). The checker verifies that Reptile
    with k = 1 full-batch inner step gives exactly this: k = 1 Reptile is joint training.
    Hint: ``loss_and_grad(spec, theta, X[i], Y[i])`` returns (loss, gradient).
    """
    raise NotImplementedError


def hvp_finite_differences(spec, theta, X, Y, v, h=1e-5):
    """The Hessian-vector product H·v of the batch loss at θ by central differences of the gradient.

    Two calls of ``loss_and_grad``; error O(h²). Returns (P,).
    """
    raise NotImplementedError


def hvp_r_operator(spec, theta, X, Y, v):
    """The exact H·v for a tanh MLP with MSE loss, by the R-operator R{x} = d/dr x(θ + r v) at r = 0.

    Start from the forward and backward pass of ``minireptile.reference.loss_and_grad`` and give
    every line its R-line, with (V_l, r_l) the views of v for layer l (``unflatten(spec, v)``):
    R{z} = R{a} Wᵀ + a Vᵀ + r, R{tanh(z)} = tanh'(z) R{z}, R{δᵀ a} = R{δ}ᵀ a + δᵀ R{a}, ...
    The R-lines of the gradient lines (dW, db) add up to H·v, laid out like θ. Returns (P,).
    """
    raise NotImplementedError


def fomaml_gradient(spec, theta, X, Y, plan, lr):
    """First-order MAML as openai/supervised-reptile runs it, for one task.

    k − 1 SGD steps of size lr on the minibatches plan[0] … plan[k−2] reach φ_{k−1}; return the
    gradient of minibatch k (plan[k−1]) at φ_{k−1}. X (n_points, d_in), Y (n_points, d_out),
    plan (k, batch). Hint: ``inner_loop`` takes a leading task axis (``X[None]``, ``plan[None]``).
    """
    raise NotImplementedError

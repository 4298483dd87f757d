"""Check your answers in exercises.py: ``python check.py [NAME ...] [--solutions]``.

Each check runs the function on random problems and compares it with an independent computation:
central finite differences in float64, or an identity that the library's own functions satisfy.
Exit status 0 when every named check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from minireptile import InnerOptimizer, MLPSpec, init_params, inner_loop, loss_and_grad, reptile_update


def _problem(seed, sizes=(2, 5, 4, 3), activation="tanh", n_points=6):
    """A float64 MLP problem: spec, θ moved off its init, X, Y and a random direction v."""
    rng = np.random.default_rng(seed)
    spec = MLPSpec(sizes, activation, "mse")
    theta = init_params(spec, rng) + rng.normal(0, 0.3, spec.n_params)
    X = rng.normal(size=(n_points, sizes[0]))
    Y = rng.normal(size=(n_points, sizes[-1]))
    return spec, theta, X, Y, rng.normal(size=spec.n_params), rng


def _numeric(f, x, h=1e-6):
    """Central differences of a scalar function f at the array x, shaped like x."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def _close(name, got, want, rtol, atol=0.0):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(want):
        raise AssertionError(f"{name}: expected shape {np.shape(want)}, got {got.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.max(np.abs(got - want))
        raise AssertionError(f"{name}: largest difference {err:.3g} (allowed rtol {rtol:g}, atol {atol:g})")


def check_relu_backward(fn):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    z[np.abs(z) < 1e-3] = 0.5                              # keep away from the kink
    da = rng.normal(size=z.shape)
    want = _numeric(lambda zz: np.sum(da * np.maximum(zz, 0)), z)
    _close("relu_backward", fn(da, z), want, rtol=1e-6, atol=1e-8)


def check_softmax_ce_grad(fn):
    rng = np.random.default_rng(1)
    for scale in (1.0, 800.0):                             # 800: exp overflows unless shifted
        out = rng.normal(size=(6, 4)) * scale
        y = rng.integers(0, 4, size=6)

        def ce(o):
            s = o - o.max(axis=1, keepdims=True)
            return -np.mean(s[np.arange(6), y] - np.log(np.exp(s).sum(axis=1)))

        got = fn(out.copy(), y)
        if not np.isfinite(got).all():
            raise AssertionError("softmax_ce_grad: NaN or inf for large logits (subtract each row's maximum)")
        _close("softmax_ce_grad", got, _numeric(ce, out, h=1e-6 * scale), rtol=1e-5, atol=1e-8)


def check_reptile_update(fn):
    rng = np.random.default_rng(2)
    theta, phi = rng.normal(size=7), rng.normal(size=(3, 7))
    for eps in (0.0, 0.25, 1.0):
        _close(f"reptile_update (eps={eps})", fn(theta, phi, eps), reptile_update(theta, phi, eps), rtol=1e-12)


def check_joint_training_step(fn):
    spec, theta, _, _, _, rng = _problem(3)
    X, Y = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6, 3))
    lr, eps = 0.1, 0.5
    full = np.broadcast_to(np.arange(6), (4, 1, 6))        # k = 1 step on each task's 6 points
    reptile_k1 = reptile_update(theta, inner_loop(spec, theta, X, Y, full, InnerOptimizer("sgd", lr)).phi, eps)
    _close("joint_training_step (against Reptile with k = 1)", fn(spec, theta, X, Y, lr, eps), reptile_k1,
           rtol=1e-10, atol=1e-13)


def _hvp_oracle(spec, theta, X, Y, v, h=1e-5):
    """H·v as the derivative of the library's gradient along v, by central differences."""
    return (loss_and_grad(spec, theta + h * v, X, Y)[1] - loss_and_grad(spec, theta - h * v, X, Y)[1]) / (2 * h)


def check_hvp_finite_differences(fn):
    spec, theta, X, Y, v, rng = _problem(4)
    # a linear model's MSE is quadratic, so its H·v is known in closed form: R{out} = X Vᵀ + r,
    # H·v = (2/N) (R{out}ᵀ X, Σ_b R{out}) with N = B·d_out
    lin = MLPSpec((2, 3), "tanh", "mse")
    t, w = rng.normal(size=lin.n_params), rng.normal(size=lin.n_params)
    Rout = X @ w[:6].reshape(3, 2).T + w[6:]
    exact = 2.0 / Rout.size * np.concatenate([(Rout.T @ X).ravel(), Rout.sum(axis=0)])
    _close("hvp_finite_differences (linear model, exact H·v)", fn(lin, t, X, Y, w), exact, rtol=1e-7, atol=1e-9)
    _close("hvp_finite_differences (tanh MLP)", fn(spec, theta, X, Y, v), _hvp_oracle(spec, theta, X, Y, v),
           rtol=1e-6, atol=1e-9)


def check_hvp_r_operator(fn):
    for seed, sizes in ((7, (2, 5, 4, 3)), (8, (1, 6, 1)), (9, (3, 4, 4, 4, 2))):
        spec, theta, X, Y, v, _ = _problem(seed, sizes)
        got = fn(spec, theta, X, Y, v)
        _close(f"hvp_r_operator (sizes {sizes})", got, _hvp_oracle(spec, theta, X, Y, v), rtol=1e-6, atol=1e-8)
        sym = np.dot(v[::-1], got), np.dot(v, fn(spec, theta, X, Y, v[::-1]))   # u·Hv = v·Hu
        _close("hvp_r_operator (symmetry u·Hv = v·Hu)", sym[0], sym[1], rtol=1e-10, atol=1e-12)


def check_fomaml_gradient(fn):
    spec, theta, X, Y, _, rng = _problem(10, n_points=12)
    lr = 0.05
    for k in (1, 2, 4):
        plan = rng.integers(0, 12, size=(k, 3))
        opt = InnerOptimizer("sgd", lr)
        before = inner_loop(spec, theta, X[None], Y[None], plan[None, :-1], opt).phi[0] if k > 1 else theta
        after = inner_loop(spec, theta, X[None], Y[None], plan[None], opt).phi[0]
        # supervised-reptile's FOMAML update is φ_k − φ_{k−1} = −α ∇L_k(φ_{k−1})
        _close(f"fomaml_gradient (k={k})", fn(spec, theta, X, Y, plan, lr), (before - after) / lr,
               rtol=1e-8, atol=1e-10)


CHECKS = {name[len("check_"):]: f for name, f in globals().items() if name.startswith("check_")}


def run(module, names=None, out=sys.stdout) -> bool:
    """Run the named checks (default all) on ``module``'s functions; print one line each."""
    ok = True
    for name in names or CHECKS:
        try:
            CHECKS[name](getattr(module, name))
        except NotImplementedError:
            print(f"{name}: not answered yet (still raises NotImplementedError)", file=out)
            ok = False
        except AssertionError as exc:
            print(f"{name}: WRONG: {exc}", file=out)
            ok = False
        else:
            print(f"{name}: correct", file=out)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"exercises to check (default: all): {', '.join(CHECKS)}")
    parser.add_argument("--solutions", action="store_true", help="check solutions.py instead of exercises.py")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in CHECKS]
    if unknown:
        parser.error(f"argument NAME: no exercise {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    module = importlib.import_module("solutions" if args.solutions else "exercises")
    return 0 if run(module, args.names) else 1


if __name__ == "__main__":
    sys.exit(main())

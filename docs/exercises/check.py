"""Check your answers in exercises.py: ``python check.py [NAME ...] [--json] [--file PATH]``.

Each check runs the function on random problems and compares it with an independent computation:
central finite differences in float64, the library run on the same seed, or an identity that the
library's own functions satisfy. An exercise that asks you to write a library function fails if
your answer calls that function. Exit status 0 when every named check passes, 1 otherwise; ``--json``
prints one JSON object (per exercise: status and message; the score) for autograders.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

import minireptile
from minireptile import (InnerOptimizer, MLPSpec, ReptileConfig, get_backend, get_preset, init_params, inner_loop,
                         loss, loss_and_grad, meta_train, reptile_update, sine_block)
from minireptile.algorithms.hvp import hvp
from minireptile.algorithms.maml import inner_gradients, maml_gradient

# library functions an exercise asks you to write yourself: calling them fails the check
FORBIDDEN = {
    "reptile_update": ("reptile_update",),
    "sgd_inner_loop": ("inner_loop", "meta_train"),
    "joint_training_step": ("inner_loop", "reptile_update", "meta_train"),
    "serial_reptile": ("inner_loop", "reptile_update", "meta_train"),
    "batched_reptile": ("inner_loop", "reptile_update", "meta_train"),
}


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
    got = fn(spec, theta, X, Y, lr, eps)
    mean_grad = np.mean([loss_and_grad(spec, theta, x, y)[1] for x, y in zip(X, Y)], axis=0)
    _close("joint_training_step (θ − εα ∇ mean_τ L_τ(θ))", got, theta - eps * lr * mean_grad, rtol=1e-10, atol=1e-13)
    full = np.broadcast_to(np.arange(6), (4, 1, 6))        # k = 1 step on each task's 6 points
    reptile_k1 = reptile_update(theta, inner_loop(spec, theta, X, Y, full, InnerOptimizer("sgd", lr)).phi, eps)
    _close("joint_training_step (against Reptile with k = 1)", got, reptile_k1, rtol=1e-10, atol=1e-13)


def _hvp_oracle(spec, theta, X, Y, v, h=1e-5):
    """H·v as the derivative of the library's gradient along v, by central differences."""
    return (loss_and_grad(spec, theta + h * v, X, Y)[1] - loss_and_grad(spec, theta - h * v, X, Y)[1]) / (2 * h)


def check_hvp_finite_differences(fn):
    spec, theta, X, Y, v, rng = _problem(4)
    # a linear model's MSE is quadratic, so its H·v is known in closed form: R{out} = X Vᵀ + v_b,
    # H·v = (2/N) (R{out}ᵀ X, Σ_b R{out}) with M = B·d_out
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


def _sine_problem(seed, T, n_tasks, k=5, batch=10, sizes=(1, 16, 16, 1)):
    """T iterations of n_tasks sine tasks each, drawn as ``minireptile sine`` draws them (seed, block 0)."""
    spec = MLPSpec(sizes, "tanh", "mse")
    theta = init_params(spec, np.random.default_rng(seed))
    X, Y, plans = sine_block(seed, 0, T, n_tasks, get_preset("reptile-paper"), k, batch)
    return spec, theta, X, Y, plans


def _library_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final):
    """``meta_train`` on the NumPy reference with these very tasks (X (T, n_tasks, ...))."""
    T, n, k, batch = plans.shape
    config = ReptileConfig(iters=T, meta_batch=n, eps0=eps0, eps_final=eps_final, inner=InnerOptimizer("sgd", lr),
                           inner_steps=k, inner_batch=batch)
    return meta_train(spec, theta, lambda b: (X, Y, plans), T, config, get_backend("numpy"))[0]


def _adapted_mse(spec, theta, seed, lr, k=5):
    """Mean MSE on 20 new sine tasks' 50-point grids after k full-batch SGD steps from θ."""
    X, Y, _ = sine_block(seed, 1, 20, 1, get_preset("reptile-paper"), 1, 1)
    full = np.broadcast_to(np.arange(X.shape[2]), (1, k, X.shape[2]))
    phi = inner_loop(spec, theta, X[:, 0], Y[:, 0], np.broadcast_to(full, (20, k, X.shape[2])),
                     InnerOptimizer("sgd", lr)).phi
    return np.mean([loss(spec, p, x, y) for p, x, y in zip(phi, X[:, 0], Y[:, 0])])


def check_sgd_inner_loop(fn):
    spec, theta, X, Y, _, rng = _problem(11, n_points=12)
    for k in (1, 3):
        plan = rng.integers(0, 12, size=(k, 4))
        before = theta.copy()
        got = fn(spec, theta, X, Y, plan, 0.05)
        if not np.array_equal(theta, before):
            raise AssertionError("sgd_inner_loop: θ was modified (work on a copy)")
        want = inner_loop(spec, theta, X[None], Y[None], plan[None], InnerOptimizer("sgd", 0.05)).phi[0]
        _close(f"sgd_inner_loop (k={k}, against minireptile.inner_loop)", got, want, rtol=1e-12, atol=1e-14)


def check_serial_reptile(fn):
    spec, theta, X, Y, plans = _sine_problem(12, T=1000, n_tasks=1)
    lr, eps0, eps_final = 0.02, 0.5, 0.0
    got = fn(spec, theta.copy(), X[:, 0], Y[:, 0], plans[:, 0], lr, eps0, eps_final)
    want = _library_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final)
    _close("serial_reptile (against minireptile.meta_train, same seed)", got, want, rtol=1e-9, atol=1e-12)
    return (f"MSE after 5 steps on new sine tasks: {_adapted_mse(spec, theta, 12, lr):.3f} from the initial θ, "
            f"{_adapted_mse(spec, np.asarray(got), 12, lr):.3f} after 1000 iterations")


def check_batched_reptile(fn):
    spec, theta, X, Y, plans = _sine_problem(13, T=20, n_tasks=4)
    lr, eps0, eps_final = 0.02, 1.0, 0.0
    got = fn(spec, theta.copy(), X, Y, plans, lr, eps0, eps_final)
    want = _library_reptile(spec, theta, X, Y, plans, lr, eps0, eps_final)
    _close("batched_reptile (against minireptile.meta_train, same seed)", got, want, rtol=1e-9, atol=1e-12)
    swapped = fn(spec, theta.copy(), X[:, ::-1], Y[:, ::-1], plans[:, ::-1], lr, eps0, eps_final)
    return f"tasks in reverse order change θ by at most {np.max(np.abs(np.asarray(swapped) - got)):.1e}"


def _maml_fd(spec, theta, X, Y, plan, query, lr, h=1e-5):
    """Central differences of θ ↦ L_q(φ_k(θ)), one coordinate at a time (independent of any HVP)."""
    def outer(t):
        for idx in plan:
            t = t - lr * loss_and_grad(spec, t, X[idx], Y[idx])[1]
        return loss(spec, t, X[query], Y[query])
    return _numeric(outer, theta, h)


def check_maml_gradient(fn):
    spec, theta, X, Y, _, rng = _problem(14, sizes=(2, 5, 3), n_points=12)
    for k, lr in ((1, 0.3), (3, 0.2)):
        plan, query = rng.integers(0, 12, size=(k, 4)), rng.integers(0, 12, size=5)
        got = fn(spec, theta, X, Y, plan, query, lr)
        _close(f"maml_gradient (k={k}, against central differences of L_q(φ_k(θ)))", got,
               _maml_fd(spec, theta, X, Y, plan, query, lr), rtol=1e-6, atol=1e-9)
        lib = maml_gradient(spec, theta, X[None], Y[None], plan[None], query[None], lr).grad[0]
        _close(f"maml_gradient (k={k}, against minireptile.algorithms.maml.maml_gradient)", got, lib,
               rtol=1e-10, atol=1e-12)
    first = maml_gradient(spec, theta, X[None], Y[None], plan[None], query[None], lr, first_order=True).grad[0]
    return f"‖MAML − first-order‖ / ‖first-order‖ = {np.linalg.norm(got - first) / np.linalg.norm(first):.3f} at α={lr}"


def _reptile_residual(spec, theta, X, Y, plan, lr, pred):
    phi = inner_loop(spec, theta, X[None], Y[None], plan[None], InnerOptimizer("sgd", lr)).phi[0]
    return np.linalg.norm((theta - phi) / lr - pred)


def check_reptile_second_order(fn):
    spec, theta, X, Y, _, rng = _problem(15, n_points=12)
    plan = rng.integers(0, 12, size=(4, 4))
    lrs = 0.02 / 2.0 ** np.arange(4)
    res = [_reptile_residual(spec, theta, X, Y, plan, a, fn(spec, theta, X, Y, plan, a)) for a in lrs]
    slope = np.polyfit(np.log(lrs), np.log(res), 1)[0]
    if not slope > 1.8:
        raise AssertionError(f"reptile_second_order: the residual shrinks like α^{slope:.2f}; a correct second-order "
                             f"prediction leaves O(α²) (slope 2)")
    # the second-order term itself, against the library's HVP: Σ_s ḡ_s − α Σ_{r<s} H̄_s ḡ_r at α = 0.1
    gbar = [loss_and_grad(spec, theta, X[i], Y[i])[1] for i in plan]
    want = sum(gbar) - 0.1 * sum(hvp(spec, theta, X[plan[s]], Y[plan[s]], sum(gbar[:s])) for s in range(1, 4))
    _close("reptile_second_order (α = 0.1)", fn(spec, theta, X, Y, plan, 0.1), want, rtol=1e-9, atol=1e-12)
    return "residual slope in log α: " + f"{slope:.2f}"


def check_gradient_combination(fn):
    spec, theta, X, Y, _, rng = _problem(16, n_points=12)
    k, lr = 4, 0.05
    plan = rng.integers(0, 12, size=(k, 4))
    G = inner_gradients(spec, theta, X[None], Y[None], plan[None], lr)[0][0]          # (k, P)
    for coeffs in (np.ones(k), np.eye(k)[-1], np.eye(k)[0], rng.normal(size=k)):
        _close(f"gradient_combination (coeffs {np.round(coeffs, 2).tolist()})", fn(spec, theta, X, Y, plan, lr, coeffs),
               coeffs @ G, rtol=1e-10, atol=1e-12)
    reptile = fn(spec, theta, X, Y, plan, lr, np.ones(k))
    phi = inner_loop(spec, theta, X[None], Y[None], plan[None], InnerOptimizer("sgd", lr)).phi[0]
    _close("gradient_combination (all ones is (θ − φ_k)/α)", reptile, (theta - phi) / lr, rtol=1e-8, atol=1e-10)
    cos = [np.dot(fn(spec, theta, X, Y, plan, lr, c), reptile) /
           (np.linalg.norm(fn(spec, theta, X, Y, plan, lr, c)) * np.linalg.norm(reptile)) for c in np.eye(k)]
    return "cosine of g_i with Reptile's direction: " + ", ".join(f"g{i + 1} {c:.3f}" for i, c in enumerate(cos))


# the progression: backprop pieces, Reptile itself, then second derivatives and MAML
ORDER = ("relu_backward", "softmax_ce_grad", "reptile_update", "sgd_inner_loop", "joint_training_step",
         "serial_reptile", "batched_reptile", "hvp_finite_differences", "hvp_r_operator", "fomaml_gradient",
         "maml_gradient", "reptile_second_order", "gradient_combination")
CHECKS = {name: globals()[f"check_{name}"] for name in ORDER}


class _Forbidden(AssertionError):
    pass


_ABSENT = object()


@contextlib.contextmanager
def _forbid(fn, names):
    """While the answer runs, the library functions it must not call raise _Forbidden."""
    import minireptile.reference
    import minireptile.reptile
    owners = [getattr(fn, "__globals__", {}), vars(minireptile), vars(minireptile.reference), vars(minireptile.reptile)]
    saved = []
    for owner in owners:
        for name in names:
            if name in owner or owner is vars(minireptile):
                def trap(*args, _name=name, **kwargs):
                    raise _Forbidden(f"your answer calls minireptile's {_name}; this exercise asks you to write "
                                     f"that computation yourself")
                saved.append((owner, name, owner.get(name, _ABSENT)))
                owner[name] = trap
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is _ABSENT:
                del owner[name]
            else:
                owner[name] = value


def _guarded(fn, names):
    def call(*args, **kwargs):
        with _forbid(fn, names):
            return fn(*args, **kwargs)
    return call


def grade(module, names=None) -> dict:
    """Run the named checks (default all) on ``module``'s functions.

    Returns ``{name: {"status": "correct" | "wrong" | "unanswered" | "missing", "message": str}}``.
    """
    results = {}
    for name in names or CHECKS:
        fn = getattr(module, name, None)
        if fn is None:
            results[name] = {"status": "missing", "message": f"no function {name} in the answers"}
            continue
        try:
            with np.errstate(all="ignore"):
                note = CHECKS[name](_guarded(fn, FORBIDDEN.get(name, ())))
        except NotImplementedError:
            results[name] = {"status": "unanswered", "message": "not answered yet (still raises NotImplementedError)"}
        except AssertionError as exc:
            results[name] = {"status": "wrong", "message": str(exc)}
        except Exception as exc:                          # a bug in the answer is a wrong answer, not a crash
            results[name] = {"status": "wrong", "message": f"raised {type(exc).__name__}: {exc}"}
        else:
            results[name] = {"status": "correct", "message": note or ""}
    return results


def run(module, names=None, out=sys.stdout) -> bool:
    """Run the named checks (default all) on ``module``'s functions; print one line each."""
    results = grade(module, names)
    for name, r in results.items():
        line = {"correct": "correct", "wrong": "WRONG: ", "unanswered": "", "missing": "WRONG: "}[r["status"]]
        line = f"{line}{r['message']}" if r["status"] != "correct" else ("correct" + (f" ({r['message']})"
                                                                                     if r["message"] else ""))
        print(f"{name}: {line}", file=out)
    return all(r["status"] == "correct" for r in results.values())


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"answers_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"exercises to check (default: all): {', '.join(CHECKS)}")
    parser.add_argument("--file", type=Path, default=Path(__file__).resolve().parent / "exercises.py",
                        help="the answers to check (default: exercises.py beside this file)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: each exercise's status and message, and the score")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in CHECKS]
    if unknown:
        parser.error(f"argument NAME: no exercise {unknown[0]!r}; choose from {', '.join(CHECKS)}")
    if not args.file.is_file():
        parser.error(f"argument --file: no such file {str(args.file)!r}")
    module = _load(args.file)
    if args.json:
        results = grade(module, args.names)
        score = sum(r["status"] == "correct" for r in results.values())
        print(json.dumps({"exercises": results, "score": score, "total": len(results)}, indent=1))
        return 0 if score == len(results) else 1
    return 0 if run(module, args.names) else 1


if __name__ == "__main__":
    sys.exit(main())

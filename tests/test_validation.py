"""Input validation at every public entry point: exception types, messages, and lossless conversions.

Every message names the argument, what was expected and what was given (docs/errors.md).
"""

import re

import numpy as np
import pytest

from minireptile import (AdamState, InnerOptimizer, MLPSpec, ReptileConfig, adapt_and_score, forward, get_backend,
                         init_params, inner_loop, loss, loss_and_grad, meta_train, reptile_update)
from minireptile.backends import Backend, validated
from minireptile.errors import BackendUnavailableError

from cpu_backends import CPU_BACKENDS

SPEC = MLPSpec((2, 5, 3), "tanh", "mse")
CE = MLPSpec((2, 4, 3), "relu", "ce")
N, PTS, STEPS, BATCH = 3, 6, 2, 4


def problem(spec=SPEC, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    theta = init_params(spec, rng, dtype)
    X = rng.normal(size=(N, PTS, spec.d_in)).astype(dtype)
    if spec.loss == "ce":
        Y = rng.integers(0, spec.d_out, (N, PTS))
    else:
        Y = rng.normal(size=(N, PTS, spec.d_out)).astype(dtype)
    plan = rng.integers(0, PTS, (N, STEPS, BATCH))
    return dict(spec=spec, theta=theta, X=X, Y=Y, plan=plan, opt=InnerOptimizer("sgd", 0.1))


def call_inner(fn, **changes):
    args = {**problem(), **changes}
    state = args.pop("state", None)
    kw = {k: args.pop(k) for k in ("check_finite", "out") if k in args}
    return fn(args["spec"], args["theta"], args["X"], args["Y"], args["plan"], args["opt"], state, **kw)


def inner_loops():
    return [("reference", inner_loop)] + [(name, get_backend(name).inner_loop) for name in CPU_BACKENDS]


P = SPEC.n_params
BAD_INNER_LOOP_ARGS = [
    # (changes, exception, message pattern)
    (dict(spec=(2, 5, 3)), TypeError, r"spec: expected an MLPSpec, got tuple"),
    (dict(opt="sgd"), TypeError, r"opt: expected an InnerOptimizer, got str"),
    (dict(theta=np.zeros(P, np.complex128)), TypeError, r"theta: expected float32 or float64 .*got dtype complex128"),
    (dict(theta=np.zeros(P, object)), TypeError, r"theta: expected float32 or float64 .*got dtype object"),
    (dict(theta=np.zeros(P, np.int64)), TypeError, r"theta: .*got dtype int64 \(converting it would lose"),
    (dict(theta=np.zeros(P + 1)), ValueError,
     rf"theta: expected shape \(P={P},\) or \(n_tasks=3, P={P}\), got \({P + 1},\)"),
    (dict(theta=np.zeros((4, P))), ValueError, rf"theta: expected shape \(n_tasks=3, P={P}\), got \(4, {P}\)"),
    (dict(theta=np.full(P, np.inf)), ValueError, r"theta: expected finite values, got inf at index \(0,\)"),
    (dict(theta=np.zeros(P, np.float32)), TypeError,
     r"X: expected float32 to match theta .*got dtype float64 \(converting it would lose precision"),
    (dict(X=np.zeros((N, PTS, 2), np.int64)), TypeError, r"X: expected float64 to match theta .*got dtype int64"),
    (dict(X=np.zeros((N, PTS, 2), np.complex64)), TypeError, r"X: .*got dtype complex64 \(complex values"),
    (dict(X=np.array([[1.0], [1.0, 2.0]], dtype=object)), TypeError, r"X: .*got dtype object \(not a numeric dtype\)"),
    (dict(X=np.zeros((N, PTS, 5))), ValueError, r"X: expected shape \(n_tasks, n_points, d_in=2\), got \(3, 6, 5\)"),
    (dict(X=np.zeros((N, PTS))), ValueError, r"X: expected shape \(n_tasks, n_points, d_in=2\), got \(3, 6\)"),
    (dict(X=np.zeros((N, 0, 2)), Y=np.zeros((N, 0, 3))), ValueError,
     r"X: expected n_points >= 1, got shape \(3, 0, 2\)"),
    (dict(X=np.zeros((0, PTS, 2)), Y=np.zeros((0, PTS, 3))), ValueError, r"X: expected n_tasks >= 1"),
    (dict(X=np.where(np.arange(N * PTS * 2).reshape(N, PTS, 2) == 7, np.nan, 0.0)), ValueError,
     r"X: expected finite values, got nan at index \(0, 3, 1\) \(fix the data, or pass check_finite=False"),
    (dict(Y=np.zeros((N, PTS, 2))), ValueError,
     r"Y: expected shape \(n_tasks=3, n_points=6, d_out=3\), got \(3, 6, 2\)"),
    (dict(Y=np.zeros((N, PTS + 1, 3))), ValueError, r"Y: expected shape \(n_tasks=3, n_points=6, d_out=3\)"),
    (dict(Y=np.full((N, PTS, 3), -np.inf)), ValueError, r"Y: expected finite values, got -inf"),
    (dict(plan=np.full((N, STEPS, BATCH), PTS)), ValueError,
     r"plan: expected point indices \(n_points=6\) in \[0, 6\), got 6 at index \(0, 0, 0\)"),
    (dict(plan=np.where(np.arange(N * STEPS * BATCH).reshape(N, STEPS, BATCH) == 13, -1, 0)), ValueError,
     r"plan: expected point indices \(n_points=6\) in \[0, 6\), got -1 at index \(1, 1, 1\)"),
    (dict(plan=np.full((N, STEPS, BATCH), 2**40, np.uint64)), ValueError, r"plan: .*got 1099511627776"),
    (dict(plan=np.zeros((N, STEPS, BATCH), np.float64)), TypeError,
     r"plan: expected an integer array of point indices"),
    (dict(plan=np.zeros((N, STEPS, BATCH), bool)), TypeError, r"plan: expected an integer array .*got dtype bool"),
    (dict(plan=np.zeros((N + 1, STEPS, BATCH), np.int64)), ValueError,
     r"plan: expected shape \(n_tasks=3, steps, batch\)"),
    (dict(plan=np.zeros((N, 0, BATCH), np.int64)), ValueError, r"plan: expected steps >= 1, got shape \(3, 0, 4\)"),
    (dict(plan=np.zeros((N, STEPS, 0), np.int64)), ValueError, r"plan: expected batch >= 1"),
    (dict(opt=InnerOptimizer("adam"), state=AdamState(np.zeros(P), -np.ones(P), 0)), ValueError,
     r"state.v: expected second moments >= 0"),
    (dict(opt=InnerOptimizer("adam"), state=AdamState(np.zeros(P - 1), np.zeros(P), 0)), ValueError,
     rf"state.m: expected shape \(P={P},\), got \({P - 1},\)"),
    (dict(opt=InnerOptimizer("adam"), state=AdamState(np.zeros(P), np.zeros(P), -1)), ValueError,
     r"state.t: expected an integer >= 0, got -1"),
    (dict(opt=InnerOptimizer("adam"), state=(np.zeros(P), np.zeros(P), 0)), TypeError,
     r"state: expected an AdamState or None, got tuple"),
    (dict(check_finite="no"), TypeError, r"check_finite: expected True or False, got 'no'"),
]


@pytest.mark.parametrize("changes,exc,pattern", BAD_INNER_LOOP_ARGS, ids=[p for _, _, p in BAD_INNER_LOOP_ARGS])
@pytest.mark.parametrize("name,fn", inner_loops(), ids=[n for n, _ in inner_loops()])
def test_inner_loop_rejects_bad_arguments_naming_them(name, fn, changes, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call_inner(fn, **changes)


@pytest.mark.parametrize("name,fn", inner_loops(), ids=[n for n, _ in inner_loops()])
def test_cross_entropy_labels_must_be_integers_in_range(name, fn):
    p = problem(CE)
    with pytest.raises(ValueError, match=r"Y: expected class labels \(loss='ce', d_out=3\) in \[0, 3\), got 3"):
        fn(CE, p["theta"], p["X"], np.full((N, PTS), 3), p["plan"], p["opt"])
    with pytest.raises(TypeError, match=r"Y: expected an integer array of class labels.*got dtype float64"):
        fn(CE, p["theta"], p["X"], p["Y"].astype(np.float64), p["plan"], p["opt"])
    with pytest.raises(ValueError, match=r"Y: expected shape \(n_tasks=3, n_points=6\), got \(3, 6, 1\)"):
        fn(CE, p["theta"], p["X"], p["Y"][..., None], p["plan"], p["opt"])


def _same(a, b):
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.loss, b.loss)


def _rows(dtype=np.float64, k=3):
    return tuple(np.zeros((N, P), dtype) for _ in range(k))


ADAM = InnerOptimizer("adam", 0.01)
# (name, arguments -> out and other changes, exception, message pattern)
BAD_OUT_ARGS = [
    ("list of arrays is fine, a dict is not", lambda p: dict(out={"phi": p["theta"]}), TypeError,
     r"out: expected a tuple \(phi,\) for SGD, got dict"),
    ("SGD wants one array", lambda p: dict(out=_rows()), ValueError,
     r"out: expected a tuple \(phi,\) for SGD, got 3 arrays"),
    ("Adam wants three", lambda p: dict(out=_rows(k=1), opt=ADAM), ValueError,
     r"out: expected a tuple \(phi, m, v\) for Adam, got 1 arrays"),
    ("not an array", lambda p: dict(out=(np.zeros((N, P)).tolist(),)), TypeError,
     r"out\[0\] \(phi\): expected a NumPy array to write into, got list"),
    ("dtype is not converted", lambda p: dict(out=_rows(np.float32, 1)), TypeError,
     r"out\[0\] \(phi\): expected dtype float64 to match theta, got dtype float32"),
    ("shape", lambda p: dict(out=(np.zeros((N + 1, P)),)), ValueError,
     rf"out\[0\] \(phi\): expected shape \(n_tasks=3, P={P}\), got \(4, {P}\)"),
    ("contiguous", lambda p: dict(out=(np.zeros((P, N)).T,)), ValueError,
     r"out\[0\] \(phi\): expected a C-contiguous, writeable array"),
    ("writeable", lambda p: dict(out=(np.broadcast_to(np.zeros(P), (N, P)),)), ValueError,
     r"out\[0\] \(phi\): expected a C-contiguous, writeable array"),
    ("m's shape", lambda p: dict(out=(*_rows(k=2), np.zeros((N, P - 1))), opt=ADAM), ValueError,
     rf"out\[2\] \(v\): expected shape \(n_tasks=3, P={P}\), got \(3, {P - 1}\)"),
    ("outputs overlap", lambda p: dict(out=(lambda r: (r, r, np.zeros((N, P))))(np.zeros((N, P))), opt=ADAM),
     ValueError, r"out: phi and m overlap; expected separate arrays"),
    ("θ is one row of φ", lambda p: (lambda phi: dict(out=(phi,), theta=phi[1]))(np.zeros((N, P))), ValueError,
     r"out\[0\] \(phi\): overlaps theta \(it may be phi itself\)"),
    ("θ is m", lambda p: (lambda r: dict(out=r, theta=r[1], opt=ADAM))(_rows()), ValueError,
     r"out\[1\] \(m\): overlaps theta \(it may be phi itself\)"),
    ("state.m is v", lambda p: (lambda r: dict(out=r, opt=ADAM, state=AdamState(r[2], np.zeros(P), 0)))(_rows()),
     ValueError, r"out\[2\] \(v\): overlaps state.m \(it may be m itself\)"),
    ("X in φ", lambda p: (lambda phi: dict(out=(phi,), X=phi.reshape(-1)[:N * PTS * 2].reshape(N, PTS, 2)))(
        np.zeros((N, P))), ValueError, r"out\[0\] \(phi\): overlaps X; expected separate memory"),
]


@pytest.mark.parametrize("what,changes,exc,pattern", BAD_OUT_ARGS, ids=[w for w, _, _, _ in BAD_OUT_ARGS])
@pytest.mark.parametrize("name,fn", inner_loops(), ids=[n for n, _ in inner_loops()])
def test_inner_loop_rejects_bad_out_naming_it(name, fn, what, changes, exc, pattern):
    p = problem()
    with pytest.raises(exc, match=pattern):
        call_inner(fn, **changes(p))


@pytest.mark.parametrize("opt", [InnerOptimizer("sgd", 0.1), ADAM], ids=["sgd", "adam"])
@pytest.mark.parametrize("name,fn", inner_loops(), ids=[n for n, _ in inner_loops()])
def test_inner_loop_out_writes_in_place_and_gives_the_fresh_result(name, fn, opt):
    """``out`` arrays are the result; θ and the state may be them (adapting in place), bitwise as a new call."""
    p = problem()
    rng = np.random.default_rng(5)
    theta = p["theta"] + rng.normal(0, 0.1, (N, P))  # one start row per task
    state = AdamState(rng.normal(0, 0.01, (N, P)), rng.uniform(0, 0.01, (N, P)), 3) if opt.name == "adam" else None
    fresh = call_inner(fn, theta=theta, opt=opt, state=state)
    out = _rows(k=3 if opt.name == "adam" else 1)
    res = call_inner(fn, theta=theta, opt=opt, state=state, out=list(out))
    assert res.phi is out[0] and (res.state is None or (res.state.m is out[1] and res.state.v is out[2]))
    _same(res, fresh)
    # in place, twice in a row: θ is φ, the moments are m and v; as two calls on new arrays
    fresh2 = call_inner(fn, theta=fresh.phi, opt=opt, state=fresh.state)
    out[0][...] = theta
    if state is not None:
        out[1][...], out[2][...] = state.m, state.v
        state = AdamState(out[1], out[2], state.t)
    first = call_inner(fn, theta=out[0], opt=opt, state=state, out=out)
    _same(first, fresh)
    second = call_inner(fn, theta=first.phi, opt=opt, state=first.state, out=out)
    assert second.phi is out[0]
    _same(second, fresh2)
    if opt.name == "adam":
        np.testing.assert_array_equal(second.state.m, fresh2.state.m)
        np.testing.assert_array_equal(second.state.v, fresh2.state.v)
        assert second.state.t == fresh2.state.t


def test_a_backend_without_out_gets_its_result_copied_into_out():
    p = problem()
    be = validated(Backend("plain", lambda spec, theta, X, Y, plan, opt, state=None: inner_loop(
        spec, theta, X, Y, plan, opt, state), None, None))
    out = _rows(k=3)
    res = be.inner_loop(SPEC, p["theta"], p["X"], p["Y"], p["plan"], ADAM, out=out)
    assert res.phi is out[0] and res.state.m is out[1] and res.state.v is out[2]
    _same(res, inner_loop(SPEC, p["theta"], p["X"], p["Y"], p["plan"], ADAM))


@pytest.mark.parametrize("name,fn", inner_loops(), ids=[n for n, _ in inner_loops()])
def test_lossless_conversions_and_layouts_give_the_result_of_the_clean_input(name, fn):
    p = problem()
    clean = call_inner(fn)
    X, Y, plan = p["X"], p["Y"], p["plan"]
    # non-contiguous views, Fortran order, other byte order: copied, same numbers
    Xbig = np.zeros((N, 2 * PTS, 2))
    Xbig[:, ::2] = X
    _same(call_inner(fn, X=Xbig[:, ::2]), clean)
    _same(call_inner(fn, X=np.asfortranarray(X), Y=np.asfortranarray(Y)), clean)
    _same(call_inner(fn, X=X.astype(">f8")), clean)
    # integer plans of any width, and lists
    _same(call_inner(fn, plan=plan.astype(np.int32)), clean)
    _same(call_inner(fn, plan=plan.astype(np.uint8)), clean)
    _same(call_inner(fn, plan=plan.tolist(), X=X.tolist()), clean)
    # float32 data into a float64 θ is exact; so is float16/int16 data into a float32 θ
    X32 = X.astype(np.float32)
    _same(call_inner(fn, X=X32), call_inner(fn, X=X32.astype(np.float64)))
    t32 = p["theta"].astype(np.float32)
    X16 = X.astype(np.float16)
    r16 = call_inner(fn, theta=t32, X=X16, Y=Y.astype(np.float32))
    assert r16.phi.dtype == np.float32
    _same(r16, call_inner(fn, theta=t32, X=X16.astype(np.float32), Y=Y.astype(np.float32)))
    Xi = np.arange(N * PTS * 2, dtype=np.int16).reshape(N, PTS, 2) % 3
    _same(call_inner(fn, theta=t32, X=Xi, Y=Y.astype(np.float32)),
          call_inner(fn, theta=t32, X=Xi.astype(np.float32), Y=Y.astype(np.float32)))
    # and a float16 θ computes in float32
    assert call_inner(fn, theta=p["theta"].astype(np.float16), X=X16, Y=Y.astype(np.float16)).phi.dtype == np.float32


@pytest.mark.parametrize("name,fn", inner_loops(), ids=[n for n, _ in inner_loops()])
def test_check_finite_false_skips_the_scan(name, fn):
    X = problem()["X"].copy()
    X[0, :, :] = np.nan
    res = call_inner(fn, X=X, check_finite=False)
    assert np.isnan(res.loss[0]) and np.isfinite(res.loss[1:]).all()  # NaN only where the data was


def chunk_problem(dtype=np.float64, iters=2):
    rng = np.random.default_rng(1)
    theta = init_params(SPEC, rng, dtype)
    X = rng.normal(size=(iters, N, PTS, 2)).astype(dtype)
    Y = rng.normal(size=(iters, N, PTS, 3)).astype(dtype)
    plans = rng.integers(0, PTS, (iters, N, STEPS, BATCH))
    return dict(spec=SPEC, theta=theta, X=X, Y=Y, plans=plans, eps=np.full(iters, 0.5), opt=InnerOptimizer("sgd", 0.1))


BAD_CHUNK_ARGS = [
    (dict(eps=np.array([0.5, -0.1])), ValueError, r"eps: expected finite step sizes >= 0, got -0.1"),
    (dict(eps=np.array([0.5, np.nan])), ValueError, r"eps: expected finite step sizes >= 0, got nan"),
    (dict(eps=np.full(3, 0.5)), ValueError, r"eps: expected shape \(iters=2,\), got \(3,\)"),
    (dict(eps=np.array(["a", "b"])), TypeError, r"eps: expected float64 step sizes.*got dtype <U1"),
    (dict(theta=np.zeros((N, P))), ValueError, rf"theta: expected shape \(P={P},\), got \(3, {P}\)"),
    (dict(plans=np.zeros((3, N, STEPS, BATCH), np.int64)), ValueError,
     r"plans: expected shape \(iters=2, n_tasks=3, steps, batch\), got \(3, 3, 2, 4\)"),
    (dict(plans=np.full((2, N, STEPS, BATCH), 99)), ValueError,
     r"plans: expected point indices \(n_points=6\) in \[0, 6\), got 99"),
    (dict(X=np.zeros((2, N, PTS, 2, 1))), ValueError, r"X: expected shape \(iters, n_tasks, n_points, d_in=2\)"),
    (dict(state=AdamState(np.zeros(P), np.zeros(P), 0)), ValueError,
     r"state: a chunk carries Adam state only with InnerOptimizer\('adam', state_policy='carry'\)"),
]


@pytest.mark.parametrize("changes,exc,pattern", BAD_CHUNK_ARGS, ids=[p for _, _, p in BAD_CHUNK_ARGS])
@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_train_chunk_rejects_bad_arguments_naming_them(name, changes, exc, pattern):
    a = {**chunk_problem(), **changes}
    with pytest.raises(exc, match=pattern):
        get_backend(name).train_chunk(a["spec"], a["theta"], a["X"], a["Y"], a["plans"], a["eps"], a["opt"],
                                      a.get("state"))


def test_an_out_of_range_plan_never_reaches_a_kernel():
    """The wrapper of every backend validates before calling the backend module's function."""
    calls = []
    spy = lambda *a, **k: calls.append(a)  # noqa: E731
    be = validated(Backend("spy", spy, spy, spy))
    p = problem()
    bad = p["plan"].copy()
    bad[2, 1, 3] = PTS
    with pytest.raises(ValueError, match=r"plan: .*got 6 at index \(2, 1, 3\)"):
        be.inner_loop(SPEC, p["theta"], p["X"], p["Y"], bad, p["opt"])
    c = chunk_problem()
    c["plans"][1, 0, 0, 0] = -3
    with pytest.raises(ValueError, match=r"plans: .*got -3 at index \(1, 0, 0, 0\)"):
        be.train_chunk(SPEC, c["theta"], c["X"], c["Y"], c["plans"], c["eps"], c["opt"])
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got int32"):
        be.warmup(SPEC, np.int32, p["opt"])
    assert calls == []
    be.inner_loop(SPEC, p["theta"], p["X"], p["Y"], p["plan"].astype(np.int16), p["opt"])
    (args,) = calls  # clean input does reach it: contiguous, θ's dtype, int64 plan
    assert args[4].dtype == np.int64 and args[4].flags.c_contiguous


def test_a_backends_size_limits_are_checked_before_its_kernels():
    calls = []

    def check_sizes(spec, n_tasks, n_points, steps, batch, dtype):
        calls.append((n_tasks, n_points, steps, batch, dtype))
        if batch > 3:
            raise ValueError(f"batch: expected at most 3 for this backend, got {batch}")

    be = validated(Backend("small", None, None, None), check_sizes)
    p = problem()
    with pytest.raises(ValueError, match="batch: expected at most 3 for this backend, got 4"):
        be.inner_loop(SPEC, p["theta"], p["X"], p["Y"], p["plan"], p["opt"])
    assert calls == [(N, PTS, STEPS, BATCH, np.float64)]


def test_a_missing_backend_module_is_backend_unavailable(monkeypatch):
    from minireptile import backends

    monkeypatch.setitem(backends._MODULES, "numba", "minireptile._no_such_backend")
    with pytest.raises(BackendUnavailableError, match="backend 'numba' is not part of this installation"):
        get_backend("numba")
    with pytest.raises(ValueError, match=r"backend: expected one of \('numpy', 'numba', 'cuda'\), got 'gpu'"):
        get_backend("gpu")


def test_forward_and_loss_and_grad():
    p = problem()
    theta, X = p["theta"], p["X"][0]
    assert forward(SPEC, theta, X[:0]).shape == (0, 3)  # an empty batch has an (empty) output
    with pytest.raises(ValueError, match=r"X: expected B >= 1, got shape \(0, 2\)"):
        loss_and_grad(SPEC, theta, X[:0], p["Y"][0][:0])
    with pytest.raises(ValueError, match=r"X: expected shape \(B, d_in=2\), got \(6, 3\)"):
        forward(SPEC, theta, np.zeros((6, 3)))
    with pytest.raises(ValueError, match=r"Y: expected shape \(B=6, d_out=3\), got \(5, 3\)"):
        loss(SPEC, theta, X, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=rf"theta: expected shape \(P={P},\), got \(3, {P}\)"):
        forward(SPEC, np.zeros((3, P)), X)
    with pytest.raises(ValueError, match=r"X: expected finite values, got nan"):
        loss_and_grad(SPEC, theta, np.full((6, 2), np.nan), p["Y"][0])
    v1, g1 = loss_and_grad(SPEC, theta, X[::-1], p["Y"][0][::-1])  # negative strides: copied, same numbers
    v2, g2 = loss_and_grad(SPEC, theta, X[::-1].copy(), p["Y"][0][::-1].copy())
    assert v1 == v2
    np.testing.assert_array_equal(g1, g2)


def test_reptile_update():
    theta, phi = np.zeros(4), np.ones((2, 4))
    np.testing.assert_array_equal(reptile_update(theta, phi, 0.25), np.full(4, 0.25))
    with pytest.raises(ValueError, match=r"phi: expected shape \(n_tasks, P=4\), got \(2, 5\)"):
        reptile_update(theta, np.ones((2, 5)), 0.1)
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0, got -0.1"):
        reptile_update(theta, phi, -0.1)
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0, got nan"):
        reptile_update(theta, phi, float("nan"))
    with pytest.raises(TypeError, match=r"eps: expected a real number, got str '0.1'"):
        reptile_update(theta, phi, "0.1")
    with pytest.raises(TypeError, match=r"phi: expected float32 to match theta.*got dtype float64"):
        reptile_update(theta.astype(np.float32), phi, 0.1)
    with pytest.raises(ValueError, match=r"phi: expected finite values"):
        reptile_update(theta, phi * np.inf, 0.1)
    with pytest.raises(ValueError, match=r"theta: expected shape \(P,\), got \(1, 4\)"):
        reptile_update(theta[None], phi, 0.1)


def _blocks(iters=4):
    c = chunk_problem(iters=iters)
    return c["theta"], (lambda b: (c["X"], c["Y"], c["plans"]))


def test_meta_train_arguments():
    theta, sample = _blocks()
    cfg = ReptileConfig(iters=4, meta_batch=N, inner=InnerOptimizer("sgd", 0.1), inner_steps=STEPS, inner_batch=BATCH)
    numpy = get_backend("numpy")
    with pytest.raises(TypeError, match=r"backend: expected a Backend from minireptile.get_backend, got str; "
                                        r"use get_backend\('numpy'\)"):
        meta_train(SPEC, theta, sample, 4, cfg, "numpy")
    with pytest.raises(TypeError, match=r"config: expected a ReptileConfig, got dict"):
        meta_train(SPEC, theta, sample, 4, cfg.to_dict(), numpy)
    with pytest.raises(ValueError, match=r"start, stop: expected 0 <= start <= stop <= config.iters=4, "
                                         r"got start=3, stop=2"):
        meta_train(SPEC, theta, sample, 4, cfg, numpy, start=3, stop=2)
    with pytest.raises(ValueError, match=r"start, stop: .*got start=0, stop=5"):
        meta_train(SPEC, theta, sample, 4, cfg, numpy, stop=5)
    with pytest.raises(ValueError, match=r"block_iters: expected an integer >= 1, got 0"):
        meta_train(SPEC, theta, sample, 0, cfg, numpy)
    with pytest.raises(ValueError, match=r"sample_block\(0\): expected X with block_iters=8 rows, "
                                         r"got shape \(4, 3, 6, 2\)"):
        meta_train(SPEC, theta, sample, 8, cfg, numpy)
    with pytest.raises(TypeError, match=r"sample_block: expected a callable"):
        meta_train(SPEC, theta, None, 4, cfg, numpy)
    with pytest.raises(ValueError, match=r"state: meta_train carries Adam state only"):
        meta_train(SPEC, theta, sample, 4, cfg, numpy, state=AdamState(np.zeros(P), np.zeros(P), 0))
    with pytest.raises(ValueError, match=r"theta: expected finite values"):
        meta_train(SPEC, theta * np.nan, sample, 4, cfg, numpy)
    out, _ = meta_train(SPEC, theta, sample, 4, cfg, numpy, stop=0)
    np.testing.assert_array_equal(out, theta)  # an empty range is a no-op


def test_evaluate_arguments():
    p = problem()
    numpy = get_backend("numpy")
    X, Y = p["X"], p["Y"]
    with pytest.raises(ValueError, match=r"X: expected n_tasks >= 2 \(a confidence interval"):
        adapt_and_score(SPEC, p["theta"], X[:1], Y[:1], X[:1], Y[:1], p["opt"], numpy)
    with pytest.raises(ValueError, match=r"X_eval: expected shape \(n_tasks=3, n_points, d_in=2\), got \(2, 6, 2\)"):
        adapt_and_score(SPEC, p["theta"], X, Y, X[:2], Y[:2], p["opt"], numpy)
    with pytest.raises(ValueError, match=r"Y_eval: expected shape \(n_tasks=3, n_points=6, d_out=3\)"):
        adapt_and_score(SPEC, p["theta"], X, Y, X, Y[:, :5], p["opt"], numpy)
    with pytest.raises(ValueError, match=r"steps: expected increasing non-negative counts, got \(0, 2, 1\)"):
        adapt_and_score(SPEC, p["theta"], X, Y, X, Y, p["opt"], numpy, steps=(0, 2, 1))
    with pytest.raises(ValueError, match=r"steps: expected an integer >= 0, got -1"):
        adapt_and_score(SPEC, p["theta"], X, Y, X, Y, p["opt"], numpy, steps=(-1, 2))
    res = adapt_and_score(SPEC, p["theta"], X, Y, X, Y, p["opt"], numpy, steps=(0, 1))
    assert res.losses.shape == (N, 2) and np.isfinite(res.losses).all()


def test_epsilon_schedule_needs_a_positive_length():
    from minireptile import epsilon_schedule

    with pytest.raises(ValueError, match=r"n_iters: expected an integer >= 1, got 0"):
        epsilon_schedule(0, 0, 0.1)


@pytest.mark.parametrize("flag,value,pattern", [
    ("--seed", "-1", r"expected an integer >= 0, got '-1'"),
    ("--eval-tasks", "1", r"expected an integer >= 2, got '1'"),
    ("--checkpoint-every", "-5", r"expected an integer >= 0, got '-5'"),
    ("--stop-after", "0", r"expected an integer >= 1, got '0'"),
    ("--inner-lr", "inf", r"expected a finite number > 0, got 'inf'"),
    ("--outer-lr-final", "nan", r"expected a finite number >= 0, got 'nan'"),
    ("--dtype", "float16", r"invalid choice: 'float16'"),
])
def test_cli_flag_values_exit_2_with_one_line_naming_the_flag(flag, value, pattern, capsys):
    from minireptile.cli import main

    with pytest.raises(SystemExit) as info:
        main(["sine", flag, value])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minireptile sine: error: argument {flag}: ")
    assert re.search(pattern, lines[0]), lines[0]


# ---------------------------------------------------------------------------------------------
# values that are valid numbers but meaningless in the run's dtype; strict constructors
# ---------------------------------------------------------------------------------------------
def test_item18_values_that_underflow_or_overflow_the_dtype_are_refused_naming_them():
    from minireptile import InnerOptimizer, MLPSpec, get_backend, init_params, reptile_update

    spec = MLPSpec((1, 4, 1))
    theta = init_params(spec, np.random.default_rng(0), np.float32)
    X, Y = np.zeros((2, 5, 1), np.float32), np.zeros((2, 5, 1), np.float32)
    plan = np.zeros((2, 1, 3), np.int64)
    tiny_eps = InnerOptimizer("adam", 0.01, eps=1e-46)
    for name in ("numpy", "numba"):
        with pytest.raises(ValueError, match=r"^opt.eps: 1e-46 is 0 in float32"):
            get_backend(name).inner_loop(spec, theta, X, Y, plan, tiny_eps)
    get_backend("numpy").inner_loop(spec, theta.astype(np.float64), X.astype(np.float64), Y.astype(np.float64),
                                    plan, tiny_eps)                                  # float64 holds it
    with pytest.raises(ValueError, match=r"^opt.lr: 1e\+39 overflows float32"):
        get_backend("numpy").inner_loop(spec, theta, X, Y, plan, InnerOptimizer("sgd", 1e39))
    with pytest.raises(ValueError, match=r"^eps: 1e\+300 overflows float32"):
        reptile_update(theta, np.stack([theta, theta]), 1e300)


@pytest.mark.parametrize("sizes", [(1.5, 2), (True, 2), "12", (np.float64(3.0), 2), 12])
def test_item19_mlpspec_sizes_must_be_integers(sizes):
    from minireptile import MLPSpec

    with pytest.raises(TypeError, match="^sizes: expected a sequence of ints"):
        MLPSpec(sizes)
    assert MLPSpec((np.int64(3), 2)).sizes == (3, 2)


def test_item19_reptile_config_inner_must_be_an_optimizer():
    from minireptile import InnerOptimizer, ReptileConfig

    with pytest.raises(TypeError, match="^inner: expected an InnerOptimizer"):
        ReptileConfig(inner="sgd")
    assert ReptileConfig(inner=InnerOptimizer("sgd", 0.1)).inner.lr == 0.1

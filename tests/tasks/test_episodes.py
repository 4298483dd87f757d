"""N-way K-shot episodes (shapes, class bookkeeping, label permutation, determinism, plans) and the
few-shot evaluation helpers (batched scoring, nearest neighbour, step-by-step adaptation)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minireptile import AdamState, InnerOptimizer, MLPSpec, get_backend, init_params, reference
from minireptile.tasks.episodes import (EpisodeConfig, class_table, full_batch_plan, gather, minibatch_plan,
                                  sample_episodes, train_block)
from minireptile.evaluation.fewshot import (_query_scores, adapt_and_classify, evaluate_episodes,
                                            nearest_neighbour_accuracy, query_scores, score_schedule)
from minireptile.tasks import stream_rng

from cpu_backends import CPU_BACKENDS

NUMPY = get_backend("numpy")


def labelled(n_classes, per_class, rng=None):
    """Labels of a shuffled data set with ``per_class`` examples of each class."""
    labels = np.repeat(np.arange(n_classes), per_class)
    return labels if rng is None else rng.permutation(labels)


def test_class_table_groups_indices():
    labels = np.array([2, 0, 1, 0, 2, 2, 1])
    table, counts = class_table(labels)
    np.testing.assert_array_equal(counts, [2, 2, 3])
    np.testing.assert_array_equal(table, [[1, 3, -1], [2, 6, -1], [0, 4, 5]])
    with pytest.raises(ValueError, match="labels: .*id 1 is unused"):
        class_table(np.array([0, 2]))
    with pytest.raises(TypeError, match="labels"):
        class_table(np.array([0.0, 1.0]))


@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_episode_shapes_and_class_bookkeeping(ways, shots, queries, seed):
    rng = np.random.default_rng(seed)
    n_classes, per_class = ways + 3, shots + queries + 2
    labels = labelled(n_classes, per_class, rng)
    ep = sample_episodes(stream_rng(seed, 9), labels, 7, ways, shots, queries)
    assert ep.classes.shape == (7, ways) and ep.support.shape == ep.support_labels.shape == (7, ways * shots)
    assert ep.query.shape == ep.query_labels.shape == (7, ways * queries)
    for a in (ep.classes, ep.support, ep.support_labels, ep.query, ep.query_labels):
        assert a.dtype == np.int64 and a.flags.c_contiguous
    for e in range(7):
        assert len(set(ep.classes[e])) == ways                                   # distinct classes
        used = np.concatenate([ep.support[e], ep.query[e]])
        assert len(set(used)) == len(used)                                       # no example twice
        # every example's true class is the class its label stands for
        np.testing.assert_array_equal(labels[ep.support[e]], ep.classes[e][ep.support_labels[e]])
        np.testing.assert_array_equal(labels[ep.query[e]], ep.classes[e][ep.query_labels[e]])
        np.testing.assert_array_equal(np.bincount(ep.support_labels[e], minlength=ways), [shots] * ways)
        np.testing.assert_array_equal(np.bincount(ep.query_labels[e], minlength=ways), [queries] * ways)


def test_label_permutation_is_random_per_episode():
    labels = labelled(5, 3)
    ep = sample_episodes(stream_rng(0, 9), labels, 300, 5, 1)
    # all 5 classes in every episode: the label -> class maps are permutations, and many distinct ones
    perms = {tuple(row) for row in ep.classes}
    assert all(sorted(p) == [0, 1, 2, 3, 4] for p in perms)
    assert len(perms) > 100                      # of 120; a fixed labelling would give 1
    # each class takes each label about equally often (300/5 = 60 expected)
    counts = np.array([[np.sum(ep.classes[:, j] == c) for j in range(5)] for c in range(5)])
    assert counts.min() > 30
    fixed = sample_episodes(stream_rng(0, 9), labelled(8, 3), 50, 4, 1, permute_labels=False)
    assert np.all(np.diff(fixed.classes, axis=1) > 0)


def test_class_choice_is_uniform_and_uses_every_class():
    ep = sample_episodes(stream_rng(1, 9), labelled(20, 2), 400, 5, 1, 1)
    counts = np.bincount(ep.classes.ravel(), minlength=20)
    assert counts.min() > 50 and counts.max() < 150          # expectation 100 each


def test_episodes_are_determined_by_the_seed():
    labels = labelled(12, 6, np.random.default_rng(0))
    a = sample_episodes(stream_rng(4, 2, 0), labels, 20, 5, 2, 3)
    b = sample_episodes(stream_rng(4, 2, 0), labels, 20, 5, 2, 3)
    c = sample_episodes(stream_rng(5, 2, 0), labels, 20, 5, 2, 3)
    for name in ("classes", "support", "support_labels", "query", "query_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.support, c.support)
    np.testing.assert_array_equal(a.slice(5, 9).query, a.query[5:9])


def test_episode_size_errors_name_the_argument():
    labels = labelled(4, 3)
    with pytest.raises(ValueError, match="ways: 5 classes"):
        sample_episodes(stream_rng(0), labels, 2, 5, 1)
    with pytest.raises(ValueError, match="shots: shots \\+ queries = 4"):
        sample_episodes(stream_rng(0), labels, 2, 2, 2, 2)
    with pytest.raises(ValueError, match="ways"):
        sample_episodes(stream_rng(0), labels, 2, 1, 1)


def test_unequal_class_sizes_never_pick_padding():
    labels = np.concatenate([np.repeat(np.arange(6), 2), np.repeat(np.arange(6, 10), 9)])
    ep = sample_episodes(stream_rng(2), labels, 200, 4, 1, 1)
    assert ep.support.min() >= 0 and ep.query.min() >= 0
    np.testing.assert_array_equal(labels[ep.query], np.take_along_axis(ep.classes, ep.query_labels, axis=1))


@pytest.mark.parametrize("n_points,steps,batch", [(10, 5, 2), (10, 3, 4), (6, 5, 10)])
def test_plan_without_replacement_walks_epochs(n_points, steps, batch):
    plan = minibatch_plan(stream_rng(0), 8, n_points, steps, batch)
    assert plan.shape == (8, steps, batch) and plan.dtype == np.int64
    flat = plan.reshape(8, -1)
    for row in flat:   # consecutive chunks of n_points indices are permutations (epochs)
        for k in range(0, (len(row) // n_points) * n_points, n_points):
            assert sorted(row[k:k + n_points]) == list(range(n_points))


def test_plan_with_replacement_draws_each_batch_independently():
    plan = minibatch_plan(stream_rng(0), 50, 10, 6, 4, replacement=True)
    assert plan.shape == (50, 6, 4) and plan.min() >= 0 and plan.max() < 10
    assert all(len(set(b)) == 4 for b in plan.reshape(-1, 4))              # distinct inside a batch
    # unlike epochs, a point can come back before every point has been used
    flat = plan.reshape(50, -1)
    assert any(len(set(row[:10])) < 10 for row in flat)
    with pytest.raises(ValueError, match="batch"):
        minibatch_plan(stream_rng(0), 1, 3, 2, 4, replacement=True)
    np.testing.assert_array_equal(full_batch_plan(2, 3, 4)[1, 3], [0, 1, 2])


def test_train_block_shapes_and_determinism():
    rng = np.random.default_rng(0)
    labels = labelled(9, 4, rng)
    vectors = rng.normal(size=(len(labels), 6)).astype(np.float32)
    cfg = EpisodeConfig(ways=3, train_shots=4, inner_steps=5, inner_batch=2)
    X, Y, plans = train_block(7, 1, 4, 2, vectors, labels, cfg)
    assert X.shape == (4, 2, 12, 6) and X.dtype == np.float32
    assert Y.shape == (4, 2, 12) and Y.dtype == np.int64 and Y.max() == 2
    assert plans.shape == (4, 2, 5, 2) and plans.max() < 12
    X2, Y2, plans2 = train_block(7, 1, 4, 2, vectors, labels, cfg)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(plans, plans2)
    X3, _, _ = train_block(7, 2, 4, 2, vectors, labels, cfg)
    assert not np.array_equal(X, X3)
    # every example of one label in one task is from one class
    for i in range(4):
        for t in range(2):
            rows = [int(np.flatnonzero((vectors == x).all(axis=1))[0]) for x in X[i, t]]
            for j in range(3):
                assert len(set(labels[np.array(rows)[Y[i, t] == j]])) == 1


# ------------------------------------------------------------------------------ evaluation
def test_query_scores_match_the_reference():
    rng = np.random.default_rng(3)
    for activation in ("relu", "tanh"):
        spec = MLPSpec((7, 5, 4, 3), activation, "ce")
        phi = np.stack([init_params(spec, rng) for _ in range(4)]) + rng.normal(0, 0.5, (4, spec.n_params))
        X = rng.normal(size=(4, 6, 7))
        Y = rng.integers(0, 3, size=(4, 6))
        loss, acc = query_scores(spec, phi, X, Y)
        for i in range(4):
            assert math.isclose(loss[i], reference.loss(spec, phi[i], X[i], Y[i]), rel_tol=1e-12)
            out = reference.forward(spec, phi[i], X[i])
            assert acc[i] == np.mean(out.argmax(axis=1) == Y[i])


def test_nearest_neighbour_accuracy():
    Xs = np.array([[[0.0, 0], [10, 0], [0, 10]]])
    Ys = np.array([[2, 0, 1]])
    Xq = np.array([[[1.0, 1], [9, 1], [1, 8], [8, 0]]])
    np.testing.assert_array_equal(nearest_neighbour_accuracy(Xs, Ys, Xq, np.array([[2, 0, 1, 0]])), [1.0])
    np.testing.assert_array_equal(nearest_neighbour_accuracy(Xs, Ys, Xq, np.array([[2, 1, 1, 1]])), [0.5])


def _episode_data(seed=0, n=6, ways=3, shots=2, queries=2, d_in=5):
    rng = np.random.default_rng(seed)
    labels = labelled(4, 6, rng)
    centers = rng.normal(0, 2, size=(4, d_in))
    vectors = centers[labels] + rng.normal(0, 0.5, size=(len(labels), d_in))
    ep = sample_episodes(stream_rng(seed, 2), labels, n, ways, shots, queries)
    return vectors, ep


def test_step_by_step_adaptation_equals_one_inner_loop_call():
    vectors, ep = _episode_data()
    spec = MLPSpec((5, 8, 3), "tanh", "ce")
    theta = init_params(spec, np.random.default_rng(1))
    Xs, Xq = gather(vectors, ep.support), gather(vectors, ep.query)
    plan = minibatch_plan(stream_rng(0, 3), ep.n, Xs.shape[1], 7, 4)
    opt = InnerOptimizer("adam", 0.01)
    res = adapt_and_classify(spec, theta, Xs, ep.support_labels, Xq, ep.query_labels, plan, opt, NUMPY)
    assert res.loss.shape == res.accuracy.shape == (ep.n, 8) and res.steps == tuple(range(8))
    for k in (0, 3, 7):
        phi = reference.inner_loop(spec, theta, Xs, ep.support_labels, plan[:, :k], opt).phi if k else \
            np.broadcast_to(theta, (ep.n, spec.n_params))
        loss, acc = query_scores(spec, phi, Xq, ep.query_labels)
        np.testing.assert_allclose(res.loss[:, k], loss, rtol=1e-12)
        np.testing.assert_array_equal(res.accuracy[:, k], acc)
    assert res.loss[:, -1].mean() < res.loss[:, 0].mean()     # adapting on the support set helps the query set
    sparse = adapt_and_classify(spec, theta, Xs, ep.support_labels, Xq, ep.query_labels, plan, opt, NUMPY, (0, 3, 7))
    np.testing.assert_allclose(sparse.loss, res.loss[:, [0, 3, 7]], rtol=1e-12)
    np.testing.assert_array_equal(sparse.accuracy, res.accuracy[:, [0, 3, 7]])
    with pytest.raises(ValueError, match="steps"):
        adapt_and_classify(spec, theta, Xs, ep.support_labels, Xq, ep.query_labels, plan, opt, NUMPY, (0, 8))
    # a carried Adam state (P,) is where every episode's moments start
    rng = np.random.default_rng(2)
    state = AdamState(rng.normal(0, 0.01, spec.n_params), rng.uniform(0, 1e-3, spec.n_params), 40)
    carried = adapt_and_classify(spec, theta, Xs, ep.support_labels, Xq, ep.query_labels, plan, opt, NUMPY,
                                 (0, 3, 7), state)
    phi = reference.inner_loop(spec, theta, Xs, ep.support_labels, plan, opt, state).phi
    np.testing.assert_allclose(carried.loss[:, 2], query_scores(spec, phi, Xq, ep.query_labels)[0], rtol=1e-12)
    assert not np.allclose(carried.loss[:, 2], sparse.loss[:, 2])


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_evaluation_adapting_in_place_equals_fresh_inner_loop_calls_bitwise(name):
    """φ and the Adam moments live in one set of buffers for all chunks and scoring points (the last
    chunk smaller): each score is bitwise that of φ from one new ``inner_loop`` call of that many steps."""
    backend = get_backend(name)
    vectors, ep = _episode_data(n=7)
    spec = MLPSpec((5, 6, 3), "relu", "ce")
    theta = init_params(spec, np.random.default_rng(1))
    plan = minibatch_plan(stream_rng(0, 3), ep.n, 6, 5, 4)
    rng = np.random.default_rng(2)
    for opt, state in ((InnerOptimizer("sgd", 0.1), None), (InnerOptimizer("adam", 0.01), None),
                       (InnerOptimizer("adam", 0.01),
                        AdamState(rng.normal(0, 0.01, spec.n_params), rng.uniform(0, 1e-3, spec.n_params), 9))):
        res = evaluate_episodes(spec, theta, vectors, ep, plan, opt, backend, (0, 1, 3, 5), state, chunk=3)
        Xs, Xq = gather(vectors, ep.support), gather(vectors, ep.query)
        for j, k in enumerate((1, 3, 5)):
            phi = backend.inner_loop(spec, theta, Xs, ep.support_labels, plan[:, :k], opt, state).phi
            loss, acc = query_scores(spec, phi, Xq, ep.query_labels)
            np.testing.assert_array_equal(res.loss[:, j + 1], loss)
            np.testing.assert_array_equal(res.accuracy[:, j + 1], acc)
        loss, _ = query_scores(spec, np.broadcast_to(theta, (ep.n, spec.n_params)), Xq, ep.query_labels)
        np.testing.assert_array_equal(res.loss[:, 0], loss)


def test_a_non_finite_phi_that_relu_hides_from_the_query_loss_is_still_divergence():
    """An inner loop that leaves −inf in a hidden bias: ReLU turns that unit into 0s, the query loss stays
    finite, and the scan of φ after the last step still reports it."""
    from minireptile.backends import Backend, validated
    from minireptile.errors import DivergenceError

    spec = MLPSpec((5, 6, 3), "relu", "ce")
    b_off = int(spec.offsets_array()[0, 1])

    def broken_inner_loop(spec_, theta, X, Y, plan, opt, state=None, out=None):
        res = reference.inner_loop(spec_, theta, X, Y, plan, opt, state, out=out, check_finite=False)
        res.phi[:, b_off:b_off + 6] = -np.inf
        return res

    vectors, ep = _episode_data(n=3)
    theta = init_params(spec, np.random.default_rng(1))
    plan = full_batch_plan(ep.n, 6, 4)
    backend = validated(Backend("broken", broken_inner_loop, None, None))
    hidden = backend.inner_loop(spec, theta, gather(vectors, ep.support), ep.support_labels, plan,
                                InnerOptimizer("sgd", 0.1)).phi
    assert np.isneginf(hidden).any() and np.isfinite(_query_scores(spec, hidden, gather(vectors, ep.query),
                                                                  ep.query_labels)[0]).all()
    with pytest.raises(DivergenceError, match=r"evaluation diverged: .* within 4 inner steps \(inner lr 0.1\)"):
        evaluate_episodes(spec, theta, vectors, ep, plan, InnerOptimizer("sgd", 0.1), backend, (0, 2, 4))


def test_score_schedule():
    assert score_schedule(4, every_step=True) == (0, 1, 2, 3, 4)
    assert score_schedule(50) == (0, 1, 2, 3, 5, 10, 15, 20, 30, 40, 50)
    assert score_schedule(7) == (0, 1, 2, 3, 5, 7)
    assert score_schedule(0) == (0,)
    assert score_schedule(230)[-4:] == (100, 150, 200, 230)


def test_evaluate_episodes_chunks_and_per_episode_starts():
    vectors, ep = _episode_data(n=7)
    spec = MLPSpec((5, 6, 3), "relu", "ce")
    theta = init_params(spec, np.random.default_rng(1))
    plan = full_batch_plan(ep.n, 6, 4)
    opt = InnerOptimizer("sgd", 0.1)
    whole = evaluate_episodes(spec, theta, vectors, ep, plan, opt, NUMPY, chunk=100)
    chunked = evaluate_episodes(spec, theta, vectors, ep, plan, opt, NUMPY, chunk=3)
    np.testing.assert_array_equal(whole.loss, chunked.loss)
    starts = np.stack([init_params(spec, np.random.default_rng(10 + e)) for e in range(ep.n)])
    per_episode = evaluate_episodes(spec, lambda i, j: starts[i:j], vectors, ep, plan, opt, NUMPY, chunk=3)
    for e in (0, 4, 6):
        one = evaluate_episodes(spec, starts[e], vectors, ep.slice(e, e + 1), plan[e:e + 1], opt, NUMPY)
        np.testing.assert_array_equal(per_episode.loss[e], one.loss[0])
    mean, ci = whole.final()
    assert 0 <= mean <= 1 and ci >= 0

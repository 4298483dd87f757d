"""Convergence: a short seeded meta-training beats a random init by a wide margin (no timing)."""

import numpy as np
import pytest

from minireptile import (InnerOptimizer, MLPSpec, ReptileConfig, evaluate_sine, get_backend, get_preset,
                         init_params, meta_train, sine_block, sine_eval_tasks, stream_rng)
from minireptile.tasks import EVAL, INIT


def short_run(seed, iters=2000, backend="numpy", dtype=np.float64, eps0=1.0):
    """Gist protocol with a large outer step (ε0 = 1 annealed to 0) so 2000 iterations suffice."""
    preset = get_preset("gist")
    spec = MLPSpec((1, 64, 64, 1), "tanh", "mse")
    opt = InnerOptimizer("sgd", 0.02)
    cfg = ReptileConfig(iters=iters, meta_batch=1, eps0=eps0, inner=opt, inner_steps=5, inner_batch=10)
    theta0 = init_params(spec, stream_rng(seed, INIT), dtype)
    be = get_backend(backend)
    theta, _ = meta_train(spec, theta0, lambda b: sine_block(seed, b, 500, 1, preset, 5, 10, dtype), 500, cfg, be)
    tasks = sine_eval_tasks(stream_rng(seed, EVAL), 100, preset, dtype)
    return evaluate_sine(spec, theta, tasks, opt, be), evaluate_sine(spec, theta0, tasks, opt, be)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_short_meta_training_halves_the_post_adaptation_mse(seed):
    meta, random = short_run(seed)
    assert meta.steps[-1] == 32
    assert np.isfinite(meta.losses).all()
    # after 32 steps the meta-learned init is far better than the random one (observed ratio 0.11-0.15 for seeds 0-2)
    assert meta.mean[-1] < 0.5 * random.mean[-1]
    # and adaptation helps: its loss falls from step 0 to step 32
    assert meta.mean[-1] < 0.5 * meta.mean[0]

"""minireptile: a transparent reference implementation of Reptile for MLPs, in NumPy and Numba.

Pipeline (data flows one way): task sampling on the host (:mod:`minireptile.tasks`) → inner loop,
one call per meta-batch (:mod:`minireptile.reference` and the compiled backends chosen in
:mod:`minireptile.backends`) → outer update (:mod:`minireptile.reptile`) → evaluation
(:mod:`minireptile.evaluate`). Importing minireptile imports neither numba.cuda nor any optional
extra.
"""

__version__ = "0.1.0.dev0"

from .backends import BACKENDS, get_backend
from .errors import BackendUnavailableError, CheckpointError, DivergenceError
from .evaluate import EVAL_STEPS, EvalResult, adapt_and_score, evaluate_sine, mean_ci95
from .mlp import MLPSpec, init_params, unflatten
from .optim import AdamState, InnerOptimizer, InnerResult
from .reference import forward, inner_loop, loss, loss_and_grad
from .reptile import ReptileConfig, epsilon_schedule, meta_train, reptile_update
from .tasks import PRESETS, SinePreset, get_preset, sample_sine_tasks, sine_block, sine_eval_tasks, stream_rng

__all__ = [
    "__version__", "BACKENDS", "get_backend", "BackendUnavailableError", "CheckpointError", "DivergenceError",
    "EVAL_STEPS", "EvalResult", "adapt_and_score", "evaluate_sine", "mean_ci95", "MLPSpec", "init_params",
    "unflatten", "AdamState", "InnerOptimizer", "InnerResult", "forward", "inner_loop", "loss", "loss_and_grad",
    "ReptileConfig", "epsilon_schedule", "meta_train", "reptile_update", "PRESETS", "SinePreset", "get_preset",
    "sample_sine_tasks", "sine_block", "sine_eval_tasks", "stream_rng",
]

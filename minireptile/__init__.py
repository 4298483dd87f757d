"""minireptile: a transparent reference implementation of Reptile for MLPs, in NumPy and Numba.

Pipeline (data flows one way): task sampling on the host (:mod:`minireptile.tasks`) → inner loop,
one call per meta-batch (:mod:`minireptile.reference` and the compiled backends chosen in
:mod:`minireptile.backends`) → outer update (:mod:`minireptile.reptile`) → evaluation
(:mod:`minireptile.evaluation`) → the Python API (:class:`minireptile.Reptile`, a thin layer over the
same functions) → commands (:mod:`minireptile.commands`, :mod:`minireptile.cli`).
Importing minireptile imports neither numba.cuda nor any optional extra.

Import layers
-------------
A module imports only from the layers above its own, or from earlier modules of its own layer
(a layer's modules are listed in their allowed order; a subpackage counts as one module of its
layer, and imports within it may go in any order that has no cycle). ``tests/test_imports.py``
reads this table and checks it on the source, without importing anything.

    core        _version errors safety mlp optim config validation budget reference reptile checkpoint
    tasks       tasks
    backends    backends
    algorithms  algorithms
    evaluation  evaluation
    api         progress estimator
    conformance conformance
    commands    commands cli __main__

The core holds the three files a reader starts with: the flat parameter layout (``mlp``), the
NumPy reference forward/backward and inner loop (``reference``) and Reptile's outer update and
training driver (``reptile``), with the pieces they need (errors, optimizer settings, the frozen
``ReptileConfig``, the one validation module, atomic checkpoints, and the checks that keep a run to its
own files (``safety``) and its sizes to memory (``budget``)). The training driver takes its
backend as an argument, so the core never imports a backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from ._version import __version__

# Public name -> the module that defines it. Names are imported on first use (PEP 562), so
# `import minireptile` (and the command line's start) stays fast and a Ctrl-C while the command
# line starts is handled by the command line instead of ending in a traceback.
_EXPORTS = {
    # backends
    "BACKENDS": "backends",
    "get_backend": "backends",
    # errors
    "BackendUnavailableError": "errors",
    "CheckpointError": "errors",
    "DivergenceError": "errors",
    # estimator
    "Evaluation": "estimator",
    "Reptile": "estimator",
    # evaluation
    "EVAL_STEPS": "evaluation",
    "EvalResult": "evaluation",
    "adapt_and_score": "evaluation",
    "evaluate_sine": "evaluation",
    "mean_ci95": "evaluation",
    # mlp
    "MLPSpec": "mlp",
    "init_params": "mlp",
    "unflatten": "mlp",
    # optim
    "AdamState": "optim",
    "InnerOptimizer": "optim",
    "InnerResult": "optim",
    # reference
    "forward": "reference",
    "inner_loop": "reference",
    "loss": "reference",
    "loss_and_grad": "reference",
    # reptile
    "ReptileConfig": "reptile",
    "epsilon_schedule": "reptile",
    "meta_train": "reptile",
    "reptile_update": "reptile",
    # tasks
    "ArrayTasks": "tasks",
    "DEFAULT_SEED": "tasks",
    "EVAL": "tasks",
    "EpisodeTasks": "tasks",
    "FamilyTasks": "tasks",
    "INIT": "tasks",
    "PLOT": "tasks",
    "PRESETS": "tasks",
    "SamplerTasks": "tasks",
    "SinePreset": "tasks",
    "SineTasks": "tasks",
    "TRAIN": "tasks",
    "TaskSource": "tasks",
    "block_iters_for": "tasks",
    "get_preset": "tasks",
    "sample_sine_tasks": "tasks",
    "sine_block": "tasks",
    "sine_eval_tasks": "tasks",
    "stream_rng": "tasks",
}

__all__ = [
    "Reptile", "Evaluation", "ArrayTasks", "EpisodeTasks", "FamilyTasks", "SamplerTasks", "SineTasks", "TaskSource",
    "DEFAULT_SEED", "INIT", "TRAIN", "EVAL", "PLOT", "block_iters_for",
    "__version__", "BACKENDS", "get_backend", "BackendUnavailableError", "CheckpointError", "DivergenceError",
    "EVAL_STEPS", "EvalResult", "adapt_and_score", "evaluate_sine", "mean_ci95", "MLPSpec", "init_params",
    "unflatten", "AdamState", "InnerOptimizer", "InnerResult", "forward", "inner_loop", "loss", "loss_and_grad",
    "ReptileConfig", "epsilon_schedule", "meta_train", "reptile_update", "PRESETS", "SinePreset", "get_preset",
    "sample_sine_tasks", "sine_block", "sine_eval_tasks", "stream_rng",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # a submodule, e.g. minireptile.tasks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .backends import BACKENDS, get_backend
    from .errors import BackendUnavailableError, CheckpointError, DivergenceError
    from .estimator import Evaluation, Reptile
    from .evaluation import EVAL_STEPS, EvalResult, adapt_and_score, evaluate_sine, mean_ci95
    from .mlp import MLPSpec, init_params, unflatten
    from .optim import AdamState, InnerOptimizer, InnerResult
    from .reference import forward, inner_loop, loss, loss_and_grad
    from .reptile import ReptileConfig, epsilon_schedule, meta_train, reptile_update
    from .tasks import (DEFAULT_SEED, EVAL, INIT, PLOT, PRESETS, TRAIN, ArrayTasks, EpisodeTasks, FamilyTasks,
                        SamplerTasks, SinePreset, SineTasks, TaskSource, block_iters_for, get_preset, sample_sine_tasks,
                        sine_block, sine_eval_tasks, stream_rng)

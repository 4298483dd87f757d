"""Task sampling on the host: the first stage of the pipeline.

Everything random in minireptile happens in this subpackage (and in ``init_params``), from numpy
Generators passed in or derived from a seed. Its output is plain arrays (inputs X, targets or
labels Y, minibatch index plans) that every backend and framework peer consumes unchanged.

    streams    seeded per-purpose random streams, shuffled-epoch minibatch plans
    sine       sine-wave regression tasks and the four presets
    families   torchmeta's regression families; support/query and tail plans for MAML
    episodes   N-way K-shot episodes drawn from any labelled array data set
    omniglot   the Omniglot loader (zips or folders → cached 28×28 arrays)
    sources    one interface over all of them and your own tasks (arrays or a sampler), for ``Reptile``
"""

from .sine import (PRESETS, SineEvalTasks, SinePreset, block_iters_for, get_preset, sample_sine_params,
                   sample_sine_tasks, sine_block, sine_eval_tasks, sine_values)
from .sources import ArrayTasks, EpisodeTasks, FamilyTasks, SamplerTasks, SineTasks, TaskSource, as_task_source
from .streams import DEFAULT_SEED, EVAL, INIT, PLOT, TRAIN, epoch_plan, stream_rng

__all__ = ["PRESETS", "SineEvalTasks", "SinePreset", "block_iters_for", "get_preset", "sample_sine_params",
           "sample_sine_tasks", "sine_block", "sine_eval_tasks", "sine_values", "EVAL", "INIT", "PLOT", "TRAIN",
           "epoch_plan", "stream_rng", "ArrayTasks", "EpisodeTasks", "FamilyTasks", "SamplerTasks", "SineTasks",
           "TaskSource", "as_task_source", "DEFAULT_SEED"]

"""Evaluation: adapt an initialisation on held-out tasks and report scores with 95% CIs.

    regression  MSE after 0, 1, 2, 4, ... full-batch steps on held-out tasks (sine and any regression task)
    fewshot     N-way K-shot accuracy of adapted networks, and the pixel nearest-neighbour baseline
"""

from .regression import EVAL_STEPS, EvalResult, adapt_and_score, adapted_predictions, evaluate_sine, mean_ci95

__all__ = ["EVAL_STEPS", "EvalResult", "adapt_and_score", "adapted_predictions", "evaluate_sine", "mean_ci95"]

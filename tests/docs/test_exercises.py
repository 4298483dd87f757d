"""The exercises' checker accepts the solutions, rejects wrong answers and reports unanswered ones."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "exercises"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"exercises_{name}", FOLDER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check, solutions, stubs = load("check"), load("solutions"), load("exercises")


@pytest.mark.parametrize("name", list(check.CHECKS))
def test_each_solution_passes_its_check(name):
    out = io.StringIO()
    assert check.run(solutions, [name], out), out.getvalue()
    assert out.getvalue() == f"{name}: correct\n"


def test_every_exercise_has_a_stub_a_solution_and_a_check():
    public = {n for n, f in vars(stubs).items() if isinstance(f, types.FunctionType) and f.__module__ == stubs.__name__}
    assert public == set(check.CHECKS) <= set(vars(solutions))
    out = io.StringIO()
    assert not check.run(stubs, None, out)
    assert out.getvalue().count("not answered yet") == len(check.CHECKS)


def _without_second_derivative(spec, theta, X, Y, v):
    """The R-operator with tanh'' dropped: a mistake a student can make."""
    text = (FOLDER / "solutions.py").read_text().replace("da * (-2 * a[l] * s) * Rz[l - 1]", "0")
    namespace: dict = {}
    exec(compile(text, "solutions_broken.py", "exec"), namespace)
    return namespace["hvp_r_operator"](spec, theta, X, Y, v)


def _naive_softmax(out, y):
    p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


WRONG = {
    "relu_backward": lambda da, z: da * (z >= 0) + 0.1 * (z < 0),
    "softmax_ce_grad": _naive_softmax,
    "reptile_update": lambda theta, phi, eps: theta + eps * (phi.mean(axis=0) + theta),
    "joint_training_step": lambda spec, theta, X, Y, lr, eps: solutions.joint_training_step(spec, theta, X, Y, lr, 1.0),
    "hvp_finite_differences": lambda spec, theta, X, Y, v, h=1e-5:
        solutions.hvp_finite_differences(spec, theta, X, Y, v, h) / 2,
    "hvp_r_operator": _without_second_derivative,
    "fomaml_gradient": lambda spec, theta, X, Y, plan, lr:
        solutions.fomaml_gradient(spec, theta, X, Y, plan[::-1], lr),
}


@pytest.mark.parametrize("name", list(check.CHECKS))
def test_a_wrong_answer_fails_its_check(name):
    out = io.StringIO()
    with np.errstate(all="ignore"):
        assert not check.run(types.SimpleNamespace(**{name: WRONG[name]}), [name], out)
    assert out.getvalue().startswith(f"{name}: WRONG: ")


def test_the_student_command_exits_1_on_an_unanswered_exercise_and_0_on_the_solutions():
    cmd = [sys.executable, str(FOLDER / "check.py")]
    done = subprocess.run(cmd + ["reptile_update"], capture_output=True, text=True)
    assert done.returncode == 1 and "not answered yet" in done.stdout
    done = subprocess.run(cmd + ["--solutions", "reptile_update", "fomaml_gradient"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.count("correct") == 2
    done = subprocess.run(cmd + ["nosuch"], capture_output=True, text=True)
    assert done.returncode == 2 and "no exercise 'nosuch'" in done.stderr

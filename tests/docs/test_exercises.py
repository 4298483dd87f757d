"""The exercises' checker accepts the solutions, rejects wrong answers and reports unanswered ones."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "docs" / "exercises"
SOLUTIONS = Path(__file__).resolve().parent / "exercise_solutions.py"   # not in the sdist (pyproject.toml)

pytestmark = pytest.mark.skipif(not SOLUTIONS.is_file(), reason="the exercises' solutions are only in the git repository")


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = load(FOLDER / "check.py", "exercises_check")
stubs = load(FOLDER / "exercises.py", "exercises_stubs")
solutions = load(SOLUTIONS, "exercises_solutions") if SOLUTIONS.is_file() else None


@pytest.mark.parametrize("name", list(check.CHECKS))
def test_each_solution_passes_its_check(name):
    out = io.StringIO()
    assert check.run(solutions, [name], out), out.getvalue()
    assert out.getvalue().startswith(f"{name}: correct") and out.getvalue().count("\n") == 1


def test_every_exercise_has_a_stub_a_solution_a_check_a_level_and_a_question():
    public = {n for n, f in vars(stubs).items() if isinstance(f, types.FunctionType) and f.__module__ == stubs.__name__}
    assert public == set(check.CHECKS) <= set(vars(solutions))
    out = io.StringIO()
    assert not check.run(stubs, None, out)
    assert out.getvalue().count("not answered yet") == len(check.CHECKS)
    for name in check.CHECKS:
        doc = getattr(stubs, name).__doc__
        assert "Level " in doc and " min" in doc and "Predict, then measure:" in doc, name
    page = (ROOT / "docs" / "exercises.md").read_text()
    assert all(f"`{name}`" in page for name in check.CHECKS)


def test_solutions_are_not_shipped_beside_the_stubs():
    assert not (FOLDER / "solutions.py").exists()
    text = (ROOT / "pyproject.toml").read_text()
    assert "tests/docs/exercise_solutions.py" in text.split("[tool.hatch.build.targets.sdist]")[1].split("\n[")[0]


def _exec(source: str, name: str):
    """A function defined in a fresh module namespace, as a student's exercises.py defines it."""
    namespace: dict = {}
    exec(compile(source, f"{name}_answer.py", "exec"), namespace)
    return namespace[name]


def _without_second_derivative(spec, theta, X, Y, v):
    """The R-operator with tanh'' dropped: a mistake a student can make."""
    text = SOLUTIONS.read_text().replace("da * (-2 * a[l] * s) * Rz[l - 1]", "0")
    return _exec(text, "hvp_r_operator")(spec, theta, X, Y, v)


def _naive_softmax(out, y):
    p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def _no_anneal(name):
    """Reptile with a constant ε = eps0 (the annealing forgotten)."""
    return lambda spec, theta, X, Y, plans, lr, eps0, eps_final: \
        getattr(solutions, name)(spec, theta, X, Y, plans, lr, eps0, eps0)


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
    # steps through the plan in reverse order
    "sgd_inner_loop": lambda spec, theta, X, Y, plan, lr: solutions.sgd_inner_loop(spec, theta, X, Y, plan[::-1], lr),
    "serial_reptile": _no_anneal("serial_reptile"),
    # only the first task of each meta-batch
    "batched_reptile": lambda spec, theta, X, Y, plans, lr, e0, e1:
        solutions.serial_reptile(spec, theta, X[:, 0], Y[:, 0], plans[:, 0], lr, e0, e1),
    # the Hessian products taken at θ instead of along the path φ_{s−1}
    "maml_gradient": lambda spec, theta, X, Y, plan, query, lr: _exec(
        SOLUTIONS.read_text().replace("hvp_r_operator(spec, phis[i],", "hvp_r_operator(spec, theta,"),
        "maml_gradient")(spec, theta, X, Y, plan, query, lr),
    # the first-order terms only: the residual is O(α), slope 1
    "reptile_second_order": lambda spec, theta, X, Y, plan, lr:
        solutions.reptile_second_order(spec, theta, X, Y, plan, 0.0),
    # the gradients all taken at θ (joint training's ḡ_s) instead of along the path
    "gradient_combination": lambda spec, theta, X, Y, plan, lr, coeffs:
        solutions.gradient_combination(spec, theta, X, Y, plan, 0.0, coeffs),
}

CIRCULAR = {
    "joint_training_step": '''
from minireptile import inner_loop, reptile_update, InnerOptimizer
import numpy as np
def joint_training_step(spec, theta, X, Y, lr, eps):
    full = np.broadcast_to(np.arange(X.shape[1]), (len(X), 1, X.shape[1]))
    return reptile_update(theta, inner_loop(spec, theta, X, Y, full, InnerOptimizer("sgd", lr)).phi, eps)
''',
    "sgd_inner_loop": '''
import minireptile
def sgd_inner_loop(spec, theta, X, Y, plan, lr):
    return minireptile.inner_loop(spec, theta, X[None], Y[None], plan[None], minireptile.InnerOptimizer("sgd", lr)).phi[0]
''',
    "reptile_update": '''
from minireptile.reptile import reptile_update as library
def reptile_update(theta, phi, eps):
    from minireptile.reptile import reptile_update as library
    return library(theta, phi, eps)
''',
}


def test_there_is_a_wrong_answer_for_every_exercise():
    assert set(WRONG) == set(check.CHECKS)


@pytest.mark.parametrize("name", list(check.CHECKS))
def test_a_wrong_answer_fails_its_check(name):
    out = io.StringIO()
    with np.errstate(all="ignore"):
        assert not check.run(types.SimpleNamespace(**{name: WRONG[name]}), [name], out)
    assert out.getvalue().startswith(f"{name}: WRONG: ")


@pytest.mark.parametrize("name", list(CIRCULAR))
def test_an_answer_that_calls_the_library_function_it_should_write_fails(name):
    out = io.StringIO()
    assert not check.run(types.SimpleNamespace(**{name: _exec(CIRCULAR[name], name)}), [name], out)
    assert out.getvalue().startswith(f"{name}: WRONG: your answer calls minireptile's ")
    import minireptile                                       # and the library works again afterwards
    assert minireptile.reptile_update(np.zeros(2), np.ones((1, 2)), 0.5).tolist() == [0.5, 0.5]


def test_the_student_command_exits_1_on_an_unanswered_exercise_and_0_on_the_solutions():
    cmd = [sys.executable, str(FOLDER / "check.py")]
    done = subprocess.run(cmd + ["reptile_update"], capture_output=True, text=True)
    assert done.returncode == 1 and "not answered yet" in done.stdout
    done = subprocess.run(cmd + ["--file", str(SOLUTIONS), "reptile_update", "fomaml_gradient"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.count("correct") == 2
    done = subprocess.run(cmd + ["nosuch"], capture_output=True, text=True)
    assert done.returncode == 2 and "no exercise 'nosuch'" in done.stderr
    done = subprocess.run(cmd + ["--file", "nosuch.py"], capture_output=True, text=True)
    assert done.returncode == 2 and "argument --file: no such file" in done.stderr


def test_json_grade_for_autograders():
    cmd = [sys.executable, str(FOLDER / "check.py"), "--json", "--file", str(SOLUTIONS), "relu_backward",
           "sgd_inner_loop"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    grade = json.loads(done.stdout)
    assert done.returncode == 0 and grade["score"] == grade["total"] == 2
    assert {r["status"] for r in grade["exercises"].values()} == {"correct"}
    done = subprocess.run(cmd[:2] + ["--json", "reptile_update"], capture_output=True, text=True)
    grade = json.loads(done.stdout)
    assert done.returncode == 1 and grade["score"] == 0
    assert grade["exercises"]["reptile_update"]["status"] == "unanswered"

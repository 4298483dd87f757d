"""What a new user sees first: the compile notice, `--version`, a bare `minireptile`, `--threads` everywhere."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minireptile import __version__
from minireptile.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_first_line_comes_before_the_compile(tmp_path):
    """With an empty numba cache the first line says what is compiled and where it is cached, before compiling."""
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minireptile", "sine", "--iters", "10", "--out", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        first = proc.stdout.readline()
        # nothing is compiled yet: no kernel's cache index is written
        compiled = glob.glob(str(cache / "**" / "*.nbi"), recursive=True)
    finally:
        proc.kill()
        proc.wait()
    assert first.startswith("minireptile sine: compiling the numba kernels for tanh/mse with sgd, float32 (once"), first
    assert str(cache) in first
    assert compiled == []


def test_version_and_bare_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"minireptile {__version__}"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minireptile")
    for command in ("sine", "omniglot", "compare"):
        assert f"    {command} " in out


@pytest.mark.parametrize("command", ["sine", "omniglot", "compare"])
def test_every_command_takes_threads_seed_and_quiet(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    flags = {opt for action in sub._actions for opt in action.option_strings}
    assert {"--threads", "--seed", "--quiet", "--backend"} <= flags
    seed = next(a for a in sub._actions if "--seed" in a.option_strings)
    assert seed.default in (None, 1)
    assert "%%" not in sub.format_help()


def test_quiet_silences_the_compile_notice_and_progress(tmp_path, capsys):
    assert main(["sine", "--iters", "5", "--eval-tasks", "2", "--quiet", "--no-plot", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "numba kernels" not in out and "kernels ready" not in out and "iter " not in out
    assert "meta-learned MSE" in out


@pytest.mark.parametrize("cached, needle", [(False, "compiling them (not in the cache yet"),
                                            (True, "loading them from the cache")])
def test_the_notice_says_compiling_whenever_the_needed_kernel_is_not_cached(tmp_path, capsys, monkeypatch, cached,
                                                                            needle):
    """A cache holding other kernels: the notice follows the kernel this run needs, not the folder."""
    from minireptile.backends import numba_cpu
    from minireptile.commands import common

    monkeypatch.setattr(common, "numba_cache_dir", lambda: (tmp_path, True))
    monkeypatch.setattr(numba_cpu, "kernel_cached", lambda spec, dtype, opt: cached)
    assert main(["sine", "--iters", "2", "--eval-tasks", "2", "--no-plot", "--out", str(tmp_path / "r")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"minireptile sine: looking for the numba kernels for tanh/mse with sgd, float32 in the cache "
                        f"in {tmp_path} ...")
    assert lines[1].startswith(f"minireptile sine: {needle}") and lines[2].startswith("minireptile sine: kernels ready")


def test_kernel_cached_follows_the_cpu_and_the_kernel():
    from numba.core.registry import cpu_target

    from minireptile import MLPSpec
    from minireptile.backends import numba_cpu
    from minireptile.optim import InnerOptimizer

    spec, opt = MLPSpec((1, 8, 1), "tanh", "mse"), InnerOptimizer("sgd", 0.1)
    numba_cpu.warmup(spec, "float32", opt)                       # compiled (or loaded) now: in the cache
    assert numba_cpu.kernel_cached(spec, "float32", opt) is True
    codegen = cpu_target.target_context.codegen()
    real = codegen.magic_tuple
    try:
        codegen.magic_tuple = lambda: ("x86_64-unknown-linux-gnu", "another-cpu", "")
        assert numba_cpu.kernel_cached(spec, "float32", opt) is False
    finally:
        codegen.magic_tuple = real


@pytest.mark.parametrize("progress", [True, False])
def test_a_first_fit_says_it_compiles_unless_progress_is_off(capsys, monkeypatch, progress):
    from minireptile import Reptile
    from minireptile.backends import numba_cpu

    monkeypatch.setattr(numba_cpu, "kernel_cached", lambda spec, dtype, opt: False)
    Reptile((1, 8, 1), seed=0).fit("gist", iters=3, progress="off" if not progress else "lines")
    err = capsys.readouterr().err
    if progress:
        assert err.startswith("minireptile: compiling the numba kernels for tanh/mse with sgd, float32 (once")
        assert "kernels ready in" in err
    else:
        assert err == ""

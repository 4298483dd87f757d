"""benchmarks/bench_contention.py: the confidence interval its verdict rests on, and its flags. No timing."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_contention import main, median_ci  # noqa: E402


def coverage(n: int, k: int) -> float:
    """P(x(k) <= median <= x(n+1-k)) for n draws of a continuous distribution."""
    return 1 - 2 * sum(math.comb(n, j) for j in range(k)) / 2 ** n


@pytest.mark.parametrize("n, k", [(6, 1), (9, 2), (11, 2), (15, 4), (25, 8), (41, 14)])
def test_median_ci_takes_the_narrowest_order_statistics_that_cover_95_percent(n, k):
    values = list(np.random.default_rng(n).permutation(np.arange(1.0, n + 1)))
    assert median_ci(values) == (k, n + 1 - k)
    assert coverage(n, k) >= 0.95 > coverage(n, k + 1)


def test_median_ci_of_too_few_values_is_their_range():
    assert median_ci([3.0]) == (3.0, 3.0)
    assert median_ci([2.0, 1.0, 5.0]) == (1.0, 5.0)


def test_median_ci_covers_the_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = sum(lo <= 0 <= hi for lo, hi in (median_ci(list(rng.normal(size=15))) for _ in range(4000)))
    assert 0.95 <= hits / 4000 <= 0.99


@pytest.mark.parametrize("argv, message", [(["--repeats", "0"], "--repeats: expected an integer >= 1, got '0'"),
                                           (["--load", "-1"], "--load: expected an integer >= 0, got '-1'"),
                                           (["--repeats", "x"], "--repeats: expected an integer >= 1, got 'x'")])
def test_bad_flags_are_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err

"""minireptile.progress: mode selection, plain lines, silence with "off" (the loss curve: test_loss_history.py)."""

import numpy as np
import pytest

from minireptile.config import ReptileConfig
from minireptile.progress import Counter, Progress, resolve_mode


def test_modes():
    assert resolve_mode(False) == resolve_mode(None) == resolve_mode("off") == "off"
    assert resolve_mode(True) == "lines"          # pytest's stderr is not a terminal: no bar
    assert resolve_mode("lines") == "lines"
    with pytest.raises(ValueError, match="progress: expected"):
        resolve_mode("loud")


def test_lines_report_iteration_eps_loss_rate_and_eta(capsys):
    p = Progress(10, 0, ReptileConfig(iters=10, eps0=0.5), "lines")
    p(4, None, np.full(4, 2.0), None)
    p(10, None, np.full(6, 1.0), None)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("iter      10/10  eps 0.0000  train loss") and "it/s" in line and "ETA" in line


def test_off_prints_nothing(capsys):
    p = Progress(4, 0, ReptileConfig(iters=4), "off")
    p(4, None, np.ones(4), None)
    c = Counter(10, "evaluate", "off", every=0.0)
    c.update(5)
    c.close()
    assert capsys.readouterr() == ("", "")

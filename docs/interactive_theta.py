"""Export the meta-learned θ of a real ``minireptile sine`` run for the interactive page.

    python docs/interactive_theta.py            # about 15 s: runs the command, writes the file below

It runs ``minireptile sine --dtype float64`` (the openai demo's protocol: a 1-64-64-1 tanh MLP, 30000
outer iterations, seed 1) in a temporary folder and writes ``docs/_static/interactive/sine_theta.js``:
θ (meta-learned), θ0 (the same run's random initialisation), the layer sizes, the inner learning rate,
the command and the held-out MSEs it printed. The file is JavaScript (one assignment of a JSON object),
so the page reads it from a ``<script>`` tag and works from ``file://`` with no server. ``load`` reads
it back in Python (the tests compare the page's arithmetic with the reference on this θ).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "_static" / "interactive" / "sine_theta.js"
PREFIX = "window.MINIREPTILE_SINE = "
ARGS = ["sine", "--dtype", "float64", "--eval-tasks", "100", "--no-plot", "--quiet"]


def export(path: Path = OUT, quiet: bool = False) -> dict:
    """Run the command, then write θ, θ0 and the run's facts to ``path``; returns the object written.

    ``quiet``: the command's results table is not printed (errors still are).
    """
    from minireptile import MLPSpec, init_params, stream_rng
    from minireptile.checkpoint import load_checkpoint
    from minireptile.tasks import INIT

    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "minireptile", *ARGS, "--out", str(Path(tmp) / "run"), "--json", str(summary)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        ck = load_checkpoint(Path(tmp) / "run" / "checkpoint.npz")
        run = json.loads(summary.read_text())
    cfg = run["config"]
    spec = MLPSpec(tuple(cfg["model"]["sizes"]), cfg["model"]["activation"], cfg["model"]["loss"])
    theta0 = init_params(spec, stream_rng(cfg["seed"], INIT), np.float64)
    data = {
        "command": "minireptile " + " ".join(ARGS),
        "sizes": list(spec.sizes),
        "activation": spec.activation,
        "inner_lr": cfg["reptile"]["inner"]["lr"],
        "iters": cfg["reptile"]["iters"],
        "seed": cfg["seed"],
        "minireptile": run["versions"]["minireptile"],
        "eval": run["eval"],
        "theta": [float(x) for x in ck["theta"]],
        "theta0": [float(x) for x in theta0],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".js.tmp")
    tmp_path.write_text(PREFIX + json.dumps(data, separators=(",", ":")) + ";\n")
    tmp_path.replace(path)
    return data


def load(path: Path = OUT) -> dict:
    """The object in an exported file (θ and θ0 as float64 arrays)."""
    text = path.read_text().strip()
    data = json.loads(text[len(PREFIX):].rstrip(";"))
    data["theta"], data["theta0"] = np.array(data["theta"]), np.array(data["theta0"])
    return data


if __name__ == "__main__":
    d = export()
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): θ of {len(d['theta'])} parameters from `{d['command']}`")

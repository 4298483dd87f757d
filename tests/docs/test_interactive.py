"""The interactive sine page computes what the NumPy reference computes, loads cleanly and takes clicks.

The page's arithmetic (docs/_static/interactive/mlp.js) is checked against minireptile.reference on
the exported θ of a real ``minireptile sine`` run, in float64 to 1e-12 relative: in node when node is
installed, and in headless Chromium (through the DevTools protocol on a pipe, no extra package) when
Chromium is installed. The Chromium test also opens the page from file:// with the network off and
requires an empty console and a click that adds a point.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from minireptile import InnerOptimizer, MLPSpec, forward, inner_loop, loss_and_grad

DOCS = Path(__file__).resolve().parents[2] / "docs"
STATIC = DOCS / "_static" / "interactive"
sys.path.insert(0, str(DOCS))
import interactive_theta  # noqa: E402

RUN = interactive_theta.load()
SPEC = MLPSpec(tuple(RUN["sizes"]), "tanh", "mse")
RNG = np.random.default_rng(0)
X = RNG.uniform(-5, 5, size=(7, 1))
Y = 3.0 * np.sin(X + 1.0)
K = 8


def _close(got, want, what):
    """Equal to 1e-12 relative (the absolute floor is 1e-12 of the largest entry, for entries near 0)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    scale = np.max(np.abs(want))
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12 * scale), \
        f"{what}: largest difference {np.max(np.abs(got - want)):.3g} (scale {scale:.3g})"


def _reference(theta):
    plan = np.broadcast_to(np.arange(len(X)), (1, K, len(X)))
    phi = inner_loop(SPEC, theta, X[None], Y[None], plan, InnerOptimizer("sgd", RUN["inner_lr"])).phi[0]
    loss, grad = loss_and_grad(SPEC, theta, X, Y)
    return forward(SPEC, theta, X), loss, grad, phi


JS_CALLS = """(function (R, run, X, Y, k) {
  var out = {};
  ["theta", "theta0"].forEach(function (name) {
    var lg = R.lossAndGrad(run.sizes, run[name], X, Y);
    out[name] = { forward: R.forward(run.sizes, run[name], X), loss: lg.loss, grad: Array.from(lg.grad),
                  phi: Array.from(R.adapt(run.sizes, run[name], X, Y, k, run.inner_lr)[k]) };
  });
  return out;
})"""


def _check_js_result(res):
    for name in ("theta", "theta0"):
        out, loss, grad, phi = _reference(RUN[name])
        _close(res[name]["forward"], out, f"{name}: forward")
        _close(res[name]["loss"], loss, f"{name}: loss")
        _close(res[name]["grad"], grad, f"{name}: gradient")
        _close(res[name]["phi"], phi, f"{name}: φ after {K} SGD steps")


def test_the_exported_theta_is_a_trained_sine_net():
    assert RUN["sizes"] == [1, 64, 64, 1] and len(RUN["theta"]) == SPEC.n_params == len(RUN["theta0"])
    assert RUN["command"].startswith("minireptile sine") and RUN["inner_lr"] == 0.02
    ev = RUN["eval"]          # the run's own held-out MSE: meta-learned far better than random after 4 steps
    assert ev["steps"][3] == 4 and ev["meta_mse"][3] < 0.2 * ev["random_mse"][3]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_arithmetic_equals_the_reference_in_node():
    script = (f"global.window = global; require({json.dumps(str(STATIC / 'sine_theta.js'))});\n"
              f"var R = require({json.dumps(str(STATIC / 'mlp.js'))});\n"
              f"console.log(JSON.stringify({JS_CALLS}(R, window.MINIREPTILE_SINE, "
              f"{json.dumps(X.tolist())}, {json.dumps(Y.tolist())}, {K})));")
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _check_js_result(json.loads(done.stdout))


# ---------------------------------------------------------------------------------------------
# headless Chromium through the DevTools protocol on a pipe (fds 3 and 4, NUL-separated JSON)
# ---------------------------------------------------------------------------------------------
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Browser:
    def __init__(self, profile: str):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                 "--window-size=1280,900"]

        def fds():                           # Chromium reads fd 3 and writes fd 4 (moved high first: no clash)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([CHROMIUM, *flags, "about:blank"], preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events, self.session = b"", 0, [], None

    def _read(self, deadline):
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, timeout=30, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))

    def evaluate(self, expression):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:60]}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        self.proc.wait(timeout=10)
        os.close(self._r)
        os.close(self._w)


def _problems(events):
    """Console errors and warnings, uncaught exceptions and failed loads among the protocol events."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description', p)}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            out.append(f"failed to load: {p.get('errorText')}")
    return out


@pytest.fixture(scope="module")
def page():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(profile)
        try:
            target = b.send("Target.createTarget", url="about:blank")["targetId"]
            b.session = b.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                b.send(f"{domain}.enable")
            b.send("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                   uploadThroughput=-1)
            b.send("Page.navigate", url=(STATIC / "sine.html").as_uri())
            b.wait_for("Page.loadEventFired")
            yield b
        finally:
            b.close()


def test_the_page_loads_from_file_with_no_console_error(page):
    assert page.evaluate("typeof window.SineDemo") == "object"
    assert page.evaluate("document.getElementById('n-points').textContent") == "0"
    assert _problems(page.events) == []


def test_a_click_adds_a_point_and_the_page_shows_the_reference_mse(page):
    box = page.evaluate("(function(){var r=document.getElementById('meta').getBoundingClientRect();"
                        "return [r.left, r.top, r.width, r.height];})()")
    x, y = box[0] + 0.7 * box[2], box[1] + 0.3 * box[3]
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    assert page.evaluate("document.getElementById('n-points').textContent") == "1"
    st = page.evaluate("(function(){var s=SineDemo.state(); return {k: s.k, points: s.points, "
                       "meta: s.panels.meta.after, random: s.panels.random.after};})()")
    assert len(st["points"]) == 1 and st["k"] == 4
    px, py = st["points"][0]["x"], st["points"][0]["y"]
    assert abs(px - 2.0) < 0.1 and abs(py - 2.2) < 0.1          # 70% across [-5, 5], 30% down [5.5, -5.5]
    Xp, Yp = np.array([[px]]), np.array([[py]])
    plan = np.zeros((1, st["k"], 1), dtype=np.int64)
    for name, key in (("theta", "meta"), ("theta0", "random")):
        phi = inner_loop(SPEC, RUN[name], Xp[None], Yp[None], plan, InnerOptimizer("sgd", RUN["inner_lr"])).phi[0]
        _close(st[key], np.mean((forward(SPEC, phi, Xp) - Yp) ** 2), f"{key}: MSE shown after {st['k']} steps")
    assert "MSE on the points" in page.evaluate("document.getElementById('meta-caption').textContent")
    assert _problems(page.events) == []


def test_the_page_arithmetic_equals_the_reference_in_chromium(page):
    res = page.evaluate(f"{JS_CALLS}(MiniReptile, MINIREPTILE_SINE, {json.dumps(X.tolist())}, "
                        f"{json.dumps(Y.tolist())}, {K})")
    _check_js_result(res)


# ---------------------------------------------------------------------------------------------
# the geometry panel: Reptile, joint training and MAML on the 2-D toy
# ---------------------------------------------------------------------------------------------
def _geometry_paths(tasks, theta0, eps, k, alpha, T):
    """The three updates of docs/_static/interactive/geometry.js, written from its contract in NumPy."""
    A = np.array([t["a"] for t in tasks])
    b = np.array([t["b"] for t in tasks])

    def grad(a, bb, th):
        return a * (a @ th - bb)

    def adapt(a, bb, th):
        for _ in range(k):
            th = th - alpha * grad(a, bb, th)
        return th

    def maml(a, bb, th):
        v = grad(a, bb, adapt(a, bb, th))
        H = np.outer(a, a)
        for _ in range(k):
            v = v - alpha * H @ v
        return v

    out = {name: [np.array(theta0, float)] for name in ("reptile", "joint", "maml")}
    for _ in range(T):
        th = out["reptile"][-1]
        out["reptile"].append(th + eps * (np.mean([adapt(a, bb, th) for a, bb in zip(A, b)], axis=0) - th))
        th = out["joint"][-1]
        out["joint"].append(th - eps * alpha * k * np.mean([grad(a, bb, th) for a, bb in zip(A, b)], axis=0))
        th = out["maml"][-1]
        out["maml"].append(th - eps * alpha * k * np.mean([maml(a, bb, th) for a, bb in zip(A, b)], axis=0))
    return {name: np.array(p) for name, p in out.items()}


GEOMETRY_CASES = [(0.5, 1, 50), (0.5, 5, 200), (1.0, 10, 30)]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_geometry_panel_equals_its_numpy_version_in_node():
    script = (f"var G = require({json.dumps(str(STATIC / 'geometry.js'))});\n"
              f"console.log(JSON.stringify({{tasks: G.TASKS, paths: {json.dumps(GEOMETRY_CASES)}.map("
              f"function (c) {{ return G.paths([0.2, -1.1], c[0], c[1], 0.3, c[2]); }})}}));")
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    for (eps, k, T), got in zip(GEOMETRY_CASES, res["paths"]):
        want = _geometry_paths(res["tasks"], [0.2, -1.1], eps, k, 0.3, T)
        for name in want:
            _close(got[name], want[name], f"{name} path (ε={eps}, k={k})")
    k1 = _geometry_paths(res["tasks"], [0.2, -1.1], 0.5, 1, 0.3, 50)
    np.testing.assert_allclose(k1["reptile"], k1["joint"], rtol=1e-12, atol=1e-14)   # k = 1 Reptile is joint training


def test_the_geometry_page_loads_from_file_with_no_console_error(page):
    page.events.clear()
    page.send("Page.navigate", url=(STATIC / "geometry.html").as_uri())
    page.wait_for("Page.loadEventFired")
    caption = page.evaluate("document.getElementById('caption').textContent")
    assert caption.startswith("Reptile ends at (") and "MAML ends at" in caption
    assert page.evaluate("document.getElementById('T-value').textContent") == "200"
    assert _problems(page.events) == []

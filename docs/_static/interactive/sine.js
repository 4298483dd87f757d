/* The sine-wave demo: click to place points, watch the meta-learned θ and a random θ0 adapt to them
 * with k full-batch SGD steps (MiniReptile.adapt, the inner loop of minireptile.reference), side by
 * side. θ and θ0 come from sine_theta.js, exported from a real `minireptile sine` run. */
(function () {
  "use strict";
  var R = window.MiniReptile, RUN = window.MINIREPTILE_SINE;
  var X_RANGE = [-5, 5], Y_RANGE = [-5.5, 5.5], MAX_POINTS = 10, GRID = 201;
  var points = [], trueWave = null;            // points [{x, y}]; trueWave {amp, phase} after "random sine wave"
  var kInput = document.getElementById("k");
  var panels = [
    { name: "meta", label: "meta-learned θ", theta: RUN.theta, color: "#1f77b4" },
    { name: "random", label: "random θ0 (the same run's initialisation)", theta: RUN.theta0, color: "#d62728" }
  ];
  var grid = [];
  for (var g = 0; g < GRID; g++) grid.push([X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * g / (GRID - 1)]);

  function toPixel(canvas, x, y) {
    return [(x - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0]) * canvas.width,
            (Y_RANGE[1] - y) / (Y_RANGE[1] - Y_RANGE[0]) * canvas.height];
  }

  function fromPixel(canvas, px, py) {
    return [X_RANGE[0] + px / canvas.width * (X_RANGE[1] - X_RANGE[0]),
            Y_RANGE[1] - py / canvas.height * (Y_RANGE[1] - Y_RANGE[0])];
  }

  function curve(ctx, canvas, ys, color, dash) {
    ctx.beginPath();
    ctx.setLineDash(dash || []);
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    for (var i = 0; i < GRID; i++) {
      var p = toPixel(canvas, grid[i][0], ys[i]);
      if (i === 0) ctx.moveTo(p[0], p[1]); else ctx.lineTo(p[0], p[1]);
    }
    ctx.stroke();
    ctx.setLineDash([]);
  }

  function axes(ctx, canvas) {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#ddd";
    ctx.lineWidth = 1;
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#888";
    for (var x = -4; x <= 4; x += 2) {
      var p = toPixel(canvas, x, 0);
      ctx.beginPath(); ctx.moveTo(p[0], 0); ctx.lineTo(p[0], canvas.height); ctx.stroke();
      ctx.fillText(String(x), p[0] + 2, canvas.height - 3);
    }
    for (var y = -4; y <= 4; y += 2) {
      var q = toPixel(canvas, 0, y);
      ctx.beginPath(); ctx.moveTo(0, q[1]); ctx.lineTo(canvas.width, q[1]); ctx.stroke();
      ctx.fillText(String(y), 2, q[1] - 2);
    }
  }

  function column(out) { return out.map(function (row) { return row[0]; }); }

  function waveY(x) { return trueWave.amp * Math.sin(x + trueWave.phase); }

  /** The state the page shows: per panel the MSE on the points before and after k steps (and on the wave). */
  function state() {
    var k = Number(kInput.value), X = points.map(function (p) { return [p.x]; });
    var Y = points.map(function (p) { return [p.y]; }), result = { k: k, points: points.slice(), panels: {} };
    panels.forEach(function (panel) {
      var phi = points.length ? R.adapt(RUN.sizes, panel.theta, X, Y, k, RUN.inner_lr)[k] : Float64Array.from(panel.theta);
      var s = { phi: phi, before: points.length ? R.mse(RUN.sizes, panel.theta, X, Y) : null,
                after: points.length ? R.mse(RUN.sizes, phi, X, Y) : null, wave: null };
      if (trueWave) s.wave = R.mse(RUN.sizes, phi, grid, grid.map(function (x) { return [waveY(x[0])]; }));
      result.panels[panel.name] = s;
    });
    return result;
  }

  function fmt(v) { return v === null ? "–" : v.toFixed(3); }

  function draw() {
    var st = state();
    document.getElementById("k-value").textContent = String(st.k);
    document.getElementById("n-points").textContent = String(points.length);
    panels.forEach(function (panel) {
      var canvas = document.getElementById(panel.name), ctx = canvas.getContext("2d"), s = st.panels[panel.name];
      axes(ctx, canvas);
      if (trueWave) curve(ctx, canvas, grid.map(function (x) { return waveY(x[0]); }), "#aaa", [2, 4]);
      curve(ctx, canvas, column(R.forward(RUN.sizes, panel.theta, grid)), panel.color, [6, 5]);
      if (points.length) curve(ctx, canvas, column(R.forward(RUN.sizes, s.phi, grid)), panel.color);
      ctx.fillStyle = "#000";
      points.forEach(function (pt) {
        var p = toPixel(canvas, pt.x, pt.y);
        ctx.beginPath(); ctx.arc(p[0], p[1], 4.5, 0, 2 * Math.PI); ctx.fill();
      });
      var text = panel.label + " — dashed: before, solid: after k = " + st.k + " steps. ";
      text += points.length ? "MSE on the points: " + fmt(s.before) + " → " + fmt(s.after) : "Add a point to adapt.";
      if (s.wave !== null) text += "; on the whole wave (grey): " + fmt(s.wave);
      document.getElementById(panel.name + "-caption").textContent = text;
    });
  }

  function addPoint(x, y) {
    if (points.length >= MAX_POINTS) points.shift();
    points.push({ x: x, y: y });
    draw();
  }

  panels.forEach(function (panel) {
    var canvas = document.getElementById(panel.name);
    canvas.addEventListener("click", function (ev) {
      var rect = canvas.getBoundingClientRect();
      var px = (ev.clientX - rect.left) * canvas.width / rect.width, py = (ev.clientY - rect.top) * canvas.height / rect.height;
      var xy = fromPixel(canvas, px, py);
      trueWave = null;
      addPoint(xy[0], xy[1]);
    });
  });
  kInput.addEventListener("input", draw);
  document.getElementById("clear").addEventListener("click", function () { points = []; trueWave = null; draw(); });
  document.getElementById("random-wave").addEventListener("click", function () {
    // the sine task family of the run: amplitude in [0.1, 5], phase in [0, 2π], 10 points in [−5, 5]
    trueWave = { amp: 0.1 + 4.9 * Math.random(), phase: 2 * Math.PI * Math.random() };
    points = [];
    for (var i = 0; i < MAX_POINTS; i++) {
      var x = X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * Math.random();
      points.push({ x: x, y: waveY(x) });
    }
    draw();
  });
  window.SineDemo = { state: state, addPoint: addPoint, draw: draw };
  draw();
})();

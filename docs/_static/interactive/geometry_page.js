/* Draws geometry.js's paths: the three tasks' solution lines and where Reptile, joint training and MAML
 * take θ, for the ε and k of the sliders. */
(function () {
  "use strict";
  var G = window.ReptileGeometry, ALPHA = 0.3, START = [0.2, -1.1];
  var X = [-1.6, 1.9], Y = [-1.4, 1.9];
  var canvas = document.getElementById("geometry"), ctx = canvas.getContext("2d");
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c"];
  var ALGOS = [["reptile", "Reptile", "#000"], ["joint", "joint training", "#888"], ["maml", "MAML", "#9467bd"]];

  function px(p) {
    return [(p[0] - X[0]) / (X[1] - X[0]) * canvas.width, (Y[1] - p[1]) / (Y[1] - Y[0]) * canvas.height];
  }

  function draw() {
    var eps = Number(document.getElementById("eps").value), k = Number(document.getElementById("k").value);
    var T = Number(document.getElementById("T").value);
    document.getElementById("T-value").textContent = String(T);
    document.getElementById("eps-value").textContent = eps.toFixed(2);
    document.getElementById("k-value").textContent = String(k);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = "13px sans-serif";
    G.TASKS.forEach(function (task, t) {            // the line a·θ = b, drawn across the box
      var a = task.a, base = [a[0] * task.b / (a[0] * a[0] + a[1] * a[1]), a[1] * task.b / (a[0] * a[0] + a[1] * a[1])];
      var dir = [-a[1], a[0]], p = px([base[0] - 5 * dir[0], base[1] - 5 * dir[1]]), q = px([base[0] + 5 * dir[0], base[1] + 5 * dir[1]]);
      ctx.strokeStyle = COLORS[t];
      ctx.lineWidth = 1 + 1.5 * Math.sqrt(a[0] * a[0] + a[1] * a[1]);
      ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
      ctx.fillStyle = COLORS[t];
      ctx.fillText("𝒲" + (t + 1) + " (curvature " + (a[0] * a[0] + a[1] * a[1]).toFixed(2) + ")", 8, 18 + 16 * t);
    });
    var paths = G.paths(START, eps, k, ALPHA, T), caption = [];
    ALGOS.forEach(function (al, j) {
      var path = paths[al[0]], end = path[path.length - 1];
      ctx.strokeStyle = al[2];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      path.forEach(function (p, i) { var c = px(p); if (i === 0) ctx.moveTo(c[0], c[1]); else ctx.lineTo(c[0], c[1]); });
      ctx.stroke();
      var e = px(end);
      ctx.fillStyle = al[2];
      ctx.beginPath(); ctx.arc(e[0], e[1], 5, 0, 2 * Math.PI); ctx.fill();
      ctx.fillText(al[1], 8, canvas.height - 10 - 16 * (2 - j));
      caption.push(al[1] + " ends at (" + end[0].toFixed(3) + ", " + end[1].toFixed(3) + ")");
    });
    var s = px(START);
    ctx.fillStyle = "#000";
    ctx.fillText("θ₀", s[0] + 6, s[1] + 4);
    document.getElementById("caption").textContent = caption.join("; ") + ".";
  }

  document.getElementById("eps").addEventListener("input", draw);
  document.getElementById("k").addEventListener("input", draw);
  document.getElementById("T").addEventListener("input", draw);
  window.GeometryPage = { draw: draw };
  draw();
})();

/* The Reptile paper's 2-D geometry toy (its Figure 1, and docs/figures.py's reptile_geometry), with
 * tasks of different curvature so that the algorithms part ways: task τ has the loss
 * L_τ(θ) = ½ (a_τ·θ − b_τ)², gradient a_τ (a_τ·θ − b_τ), Hessian H_τ = a_τ a_τᵀ, and its solutions 𝒲_τ are
 * the line a_τ·θ = b_τ. Every outer iteration uses all three tasks (no sampling), from θ:
 *
 *   Reptile         θ ← θ + ε (mean_τ φ_k^(τ) − θ),  φ_i = φ_{i−1} − α ∇L_τ(φ_{i−1}), φ_0 = θ
 *   joint training  θ ← θ − ε α k mean_τ ∇L_τ(θ)
 *   MAML            θ ← θ − ε α k mean_τ (I − αH_τ)^k ∇L_τ(φ_k^(τ))     (the exact gradient of L_τ(φ_k^(τ)))
 *
 * (joint training and MAML are scaled by k: Reptile's step ε(φ_k − θ) is about ε α k gradients).
 * Works in a page (window.ReptileGeometry) and in node (module.exports). */
(function (root) {
  "use strict";

  // directions (unit) and curvatures h_τ = ‖a_τ‖²: the same lines as the docs' figure, different curvature
  var DIRS = [[1.0, 0.35], [-0.25, 1.0], [1.0, -1.1]], OFFSETS = [1.0, 1.2, -0.1], CURV = [1.0, 0.25, 2.5];
  var TASKS = DIRS.map(function (d, t) {
    var n = Math.hypot(d[0], d[1]), s = Math.sqrt(CURV[t]);
    return { a: [d[0] / n * s, d[1] / n * s], b: OFFSETS[t] * s };   // a·θ = b is the same line for any s
  });

  function grad(task, th) {
    var r = task.a[0] * th[0] + task.a[1] * th[1] - task.b;
    return [task.a[0] * r, task.a[1] * r];
  }

  function adapt(task, th, k, alpha) {                      // φ_k of k gradient steps from θ
    var phi = th.slice();
    for (var i = 0; i < k; i++) {
      var g = grad(task, phi);
      phi = [phi[0] - alpha * g[0], phi[1] - alpha * g[1]];
    }
    return phi;
  }

  function mamlGradient(task, th, k, alpha) {                // (I − αH)^k ∇L(φ_k), H = a aᵀ
    var v = grad(task, adapt(task, th, k, alpha)), a = task.a;
    for (var i = 0; i < k; i++) {
      var av = a[0] * v[0] + a[1] * v[1];
      v = [v[0] - alpha * a[0] * av, v[1] - alpha * a[1] * av];
    }
    return v;
  }

  function mean(vs) {
    return [vs.reduce(function (s, v) { return s + v[0]; }, 0) / vs.length,
            vs.reduce(function (s, v) { return s + v[1]; }, 0) / vs.length];
  }

  /** θ_0 … θ_T of each algorithm: {reptile, joint, maml}, each an array of [x, y]. */
  function paths(theta0, eps, k, alpha, T) {
    var out = { reptile: [theta0.slice()], joint: [theta0.slice()], maml: [theta0.slice()] };
    for (var t = 0; t < T; t++) {
      var th = out.reptile[t], m = mean(TASKS.map(function (task) { return adapt(task, th, k, alpha); }));
      out.reptile.push([th[0] + eps * (m[0] - th[0]), th[1] + eps * (m[1] - th[1])]);
      th = out.joint[t];
      var g = mean(TASKS.map(function (task) { return grad(task, th); }));
      out.joint.push([th[0] - eps * alpha * k * g[0], th[1] - eps * alpha * k * g[1]]);
      th = out.maml[t];
      g = mean(TASKS.map(function (task) { return mamlGradient(task, th, k, alpha); }));
      out.maml.push([th[0] - eps * alpha * k * g[0], th[1] - eps * alpha * k * g[1]]);
    }
    return out;
  }

  var api = { TASKS: TASKS, grad: grad, adapt: adapt, mamlGradient: mamlGradient, paths: paths };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.ReptileGeometry = api;
})(this);

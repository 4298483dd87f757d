/* minireptile in the browser: the MLP's forward pass, backward pass and SGD inner loop in plain
 * JavaScript, line for line as minireptile/reference.py (tanh hidden layers, MSE loss). JavaScript
 * numbers are float64, so on the same θ and points this computes what the NumPy reference computes, to
 * rounding (the test suite checks 1e-12 relative).
 *
 * θ is one flat array; layer l's weights W_l (out, in) are stored row by row at an offset, followed by
 * its bias b_l (out), as minireptile.mlp lays them out. X is an array of B rows of d_in numbers, Y of
 * B rows of d_out numbers. Works in a page (window.MiniReptile) and in node (module.exports).
 */
(function (root) {
  "use strict";

  // [{w, b, nin, nout}]: the offsets of W_l and b_l in θ
  function layout(sizes) {
    var out = [], off = 0;
    for (var l = 0; l + 1 < sizes.length; l++) {
      var nin = sizes[l], nout = sizes[l + 1];
      out.push({ w: off, b: off + nout * nin, nin: nin, nout: nout });
      off += nout * nin + nout;
    }
    return out;
  }

  function nParams(sizes) {
    var L = layout(sizes), last = L[L.length - 1];
    return last.b + last.nout;
  }

  // z = a Wᵀ + b for a batch: a (B rows of nin) → (B rows of nout)
  function affine(theta, ly, a) {
    var z = [];
    for (var r = 0; r < a.length; r++) {
      var row = new Array(ly.nout);
      for (var o = 0; o < ly.nout; o++) {
        var s = 0, base = ly.w + o * ly.nin;
        for (var i = 0; i < ly.nin; i++) s += a[r][i] * theta[base + i];
        row[o] = s + theta[ly.b + o];
      }
      z.push(row);
    }
    return z;
  }

  function tanhRows(z) {
    return z.map(function (row) { return row.map(Math.tanh); });
  }

  // the forward pass keeping each layer's input a[l]; returns {a, out}
  function forwardTrace(sizes, theta, X) {
    var L = layout(sizes), a = [X], z = null;
    for (var l = 0; l < L.length; l++) {
      z = affine(theta, L[l], a[l]);
      if (l < L.length - 1) a.push(tanhRows(z));
    }
    return { a: a, out: z };
  }

  /** Network output for a batch: (B rows of d_out). */
  function forward(sizes, theta, X) {
    return forwardTrace(sizes, theta, X).out;
  }

  /** Mean squared error over the B·d_out outputs and its gradient, laid out like θ: {loss, grad}. */
  function lossAndGrad(sizes, theta, X, Y) {
    var L = layout(sizes), tr = forwardTrace(sizes, theta, X), a = tr.a, out = tr.out;
    var B = out.length, dOut = out[0].length, N = B * dOut, loss = 0;
    var dz = [];                                   // dL/dz at the top: 2/N (out − Y)
    for (var r = 0; r < B; r++) {
      var row = new Array(dOut);
      for (var o = 0; o < dOut; o++) {
        var d = out[r][o] - Y[r][o];
        loss += d * d;
        row[o] = (2.0 / N) * d;
      }
      dz.push(row);
    }
    loss /= N;
    var grad = new Float64Array(theta.length);
    for (var l = L.length - 1; l >= 0; l--) {
      var ly = L[l];
      for (var o2 = 0; o2 < ly.nout; o2++) {        // dW = dzᵀ a, db = Σ_B dz
        for (var i = 0; i < ly.nin; i++) {
          var s = 0;
          for (var r2 = 0; r2 < B; r2++) s += dz[r2][o2] * a[l][r2][i];
          grad[ly.w + o2 * ly.nin + i] = s;
        }
        var sb = 0;
        for (var r3 = 0; r3 < B; r3++) sb += dz[r3][o2];
        grad[ly.b + o2] = sb;
      }
      if (l > 0) {                                  // da = dz W, then dz = da ⊙ tanh'(z) = da ⊙ (1 − a²)
        var next = [];
        for (var r4 = 0; r4 < B; r4++) {
          var nrow = new Array(ly.nin);
          for (var i2 = 0; i2 < ly.nin; i2++) {
            var sd = 0;
            for (var o3 = 0; o3 < ly.nout; o3++) sd += dz[r4][o3] * theta[ly.w + o3 * ly.nin + i2];
            var act = a[l][r4][i2];
            nrow[i2] = sd * (1 - act * act);
          }
          next.push(nrow);
        }
        dz = next;
      }
    }
    return { loss: loss, grad: grad };
  }

  /** k full-batch SGD steps φ_s = φ_{s−1} − α ∇L(φ_{s−1}) from φ_0 = θ; returns [φ_0, …, φ_k]. */
  function adapt(sizes, theta, X, Y, k, lr) {
    var phis = [Float64Array.from(theta)];
    for (var s = 0; s < k; s++) {
      var prev = phis[s], g = lossAndGrad(sizes, prev, X, Y).grad, phi = new Float64Array(prev.length);
      for (var p = 0; p < prev.length; p++) phi[p] = prev[p] - lr * g[p];
      phis.push(phi);
    }
    return phis;
  }

  /** Mean squared error of the network on (X, Y). */
  function mse(sizes, theta, X, Y) {
    var out = forward(sizes, theta, X), s = 0, n = 0;
    for (var r = 0; r < out.length; r++)
      for (var o = 0; o < out[r].length; o++) { var d = out[r][o] - Y[r][o]; s += d * d; n++; }
    return s / n;
  }

  var api = { layout: layout, nParams: nParams, forward: forward, lossAndGrad: lossAndGrad, adapt: adapt, mse: mse };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.MiniReptile = api;
})(this);

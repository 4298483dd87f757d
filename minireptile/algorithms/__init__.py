"""Meta-learning algorithms beside Reptile, and the tools to analyse them.

    hvp          Hessian-vector products by the R-operator (Pearlmutter 1994), batched over tasks
    maml         exact MAML and FOMAML meta-gradients, their Adam outer loop, §6.2 gradient combinations
    diagnostics  the Reptile paper's Taylor terms AvgGrad and AvgGradInner, measured

Reptile itself is :mod:`minireptile.reptile` (core); these modules reuse the NumPy reference's
forward and backward helpers and never import a backend.
"""

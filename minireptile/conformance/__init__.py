"""Conformance kit: check any Reptile, FOMAML or MAML implementation against the NumPy reference.

    cases      the 24 cases and their inputs, drawn from fixed seeds
    generate   the expected outputs, computed by the reference (``python -m minireptile.conformance.generate``)
    suite      the shipped golden suite ``v1/``, its content hash, ``export`` for other languages
    check      compare results with the expected outputs, stage by stage, and name the first that fails
    adapters   the adapter protocol: run a Python implementation in-process on every case
    bench      time an adapter beside the numba backend on the same work

Documentation: docs/conformance.md. Command line: ``minireptile conformance export|check|bench``.
"""

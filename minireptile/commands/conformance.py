"""``minireptile conformance``: check any Reptile, FOMAML or MAML implementation against the reference.

    export DIR                    the golden suite as files any language reads (docs/conformance.md)
    check --results DIR2          compare DIR2/NAME.npz (or DIR2/NAME/OUTPUT.npy) written by any program
    check --impl MODULE:OBJECT    run a Python adapter in-process and compare
    bench --impl MODULE:OBJECT    time the adapter's reptile() beside the numba backend

``check`` prints one row per case and output (max absolute and relative error, pass at the tolerance)
and names the first stage that fails; it exits 0 when everything present passes, 1 when something
fails, 2 on unreadable input. Nothing is written unless asked (``--json``), and then atomically.
"""

from __future__ import annotations

import json
import sys

from .common import FlagError, add_threads_flag, apply_threads, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("conformance", help="check another Reptile/FOMAML/MAML implementation, stage by stage",
                       description="Check an implementation of Reptile, FOMAML or MAML in any language against "
                       "the NumPy reference, stage by stage (loss, gradient, inner steps, outer iterations), and "
                       "time it beside the numba backend. See docs/conformance.md.")
    p.set_defaults(run=lambda args: p.print_help())
    cmds = p.add_subparsers(dest="action", title="actions", metavar="ACTION", parser_class=type(p))

    e = cmds.add_parser("export", help="write the golden suite for programs in any language",
                        description="Write manifest.json, cases/NAME.npz and raw/NAME/KEY.bin (little-endian) "
                        "into DIR, which must be new or empty.")
    e.add_argument("dir", metavar="DIR", help="a new or empty folder")
    e.set_defaults(run=run_export)

    c = cmds.add_parser("check", help="compare results with the suite and name the first stage that fails",
                        description="Compare an implementation's results with the golden suite. Exit status 0: "
                        "every output present passes; 1: some output fails; 2: unreadable input.")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", metavar="DIR2", help="a folder of NAME.npz (or NAME/OUTPUT.npy) result files")
    src.add_argument("--impl", metavar="MODULE:OBJECT",
                     help="a Python adapter (module:object or path/to/file.py:object) run in-process")
    c.add_argument("--case", action="append", metavar="NAME", help="only this case (repeatable; with --impl)")
    c.add_argument("--dtype", choices=("float64", "float32"),
                   help="with --impl: hand the adapter inputs in this dtype and judge it at this dtype's tolerances "
                   "(sets the adapter's dtype attribute; default: the adapter's own, else float64)")
    c.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    c.add_argument("--failures-only", action="store_true", help="print only the failing rows and the summary")
    c.set_defaults(run=run_check)

    b = cmds.add_parser("bench", help="time an adapter's reptile() beside the numba backend",
                        description="Time the adapter's reptile() beside the numba backend on the gist's network: "
                        "serial and meta-batch 256, float32 and float64. Warm-up first, then the median of "
                        "--repeats; prints the ratio table.")
    b.add_argument("--impl", required=True, metavar="MODULE:OBJECT", help="the adapter (as for check)")
    b.add_argument("--repeats", type=positive_int, default=5, metavar="N", help="timed runs per workload (default 5)")
    b.add_argument("--workload", action="append", metavar="NAME",
                   help="only this workload (repeatable): serial-float32, serial-float64, mb256-float32, "
                   "mb256-float64")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    add_threads_flag(b)
    b.set_defaults(run=run_bench)


def _suite():
    from ..conformance.suite import load_suite
    return load_suite()


def run_export(args) -> int:
    from ..conformance.suite import export
    try:
        folder = export(args.dir)
    except FileExistsError as exc:
        raise FlagError("DIR", str(exc)) from None
    print(f"wrote the conformance suite v{_suite().manifest['version']} ({len(_suite().cases)} cases) to {folder}")
    return 0


def _adapter(flag: str, target: str):
    from ..conformance.adapters import load_adapter
    try:
        return load_adapter(target)
    except ValueError as exc:
        raise FlagError(flag, str(exc)) from None


def run_check(args) -> int:
    from ..conformance.adapters import adapter_name, run_adapter
    from ..conformance.check import check_results, read_results, write_json

    suite = _suite()
    names = {c["name"] for c in suite.cases}
    for name in args.case or ():
        if name not in names:
            raise FlagError("--case", f"no case {name!r}; the cases are listed in the manifest "
                            f"(`minireptile conformance export DIR`), e.g. {suite.cases[0]['name']}")
    if args.results is not None:
        for flag, value in (("--case", args.case), ("--dtype", args.dtype)):
            if value:
                raise FlagError(flag, "applies to --impl only (result files carry their own dtype)")
        try:
            results = read_results(args.results, suite)
        except ValueError as exc:
            raise FlagError("--results", str(exc)) from None
        report = check_results(suite, results, implementation=f"results in {args.results}")
    else:
        adapter = _adapter("--impl", args.impl)
        if args.dtype is not None:
            try:
                adapter.dtype = args.dtype
            except AttributeError:
                raise FlagError("--dtype", f"{args.impl}: the adapter's dtype attribute cannot be set") from None
        try:
            results, skipped, errors = run_adapter(adapter, suite, args.case)
        except ValueError as exc:
            raise FlagError("--impl", str(exc)) from None
        report = check_results(suite, results, skipped, adapter_name(adapter), errors)
    print("\n".join(report.lines(verbose=not args.failures_only)))
    if args.json:
        write_json(report, args.json)
    return report.exit_status


def run_bench(args) -> int:
    from ..checkpoint import atomic_write
    from ..conformance.bench import WORKLOADS, bench, table

    known = {w.name: w for w in WORKLOADS}
    for name in args.workload or ():
        if name not in known:
            raise FlagError("--workload", f"expected one of {', '.join(known)}, got {name!r}")
    workloads = [known[n] for n in args.workload] if args.workload else list(WORKLOADS)
    adapter = _adapter("--impl", args.impl)
    if not callable(getattr(adapter, "reptile", None)):
        raise FlagError("--impl", f"{args.impl}: bench times reptile(), which this adapter does not have")
    apply_threads(args)
    result = bench(adapter, workloads, args.repeats,
                   progress=lambda w: print(f"timing {w.name} ...", file=sys.stderr, flush=True))
    print("\n".join(table(result)))
    if args.json:
        data = (json.dumps(result, indent=1) + "\n").encode()
        atomic_write(args.json, lambda f: f.write(data))
    return 0

"""Dask clusters for the commands: the flags ``--workers N`` / ``--scheduler ADDRESS`` and the client.

``sine`` and ``omniglot`` use them for the distributed meta-batch
(:mod:`minireptile.backends.distributed`); ``sweep`` to run whole runs on the workers. Dask is
imported only when one of the flags is given, and a missing installation is a flag error (exit 2)
naming the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib.util

from .common import FlagError, positive_int

INSTALL_HINT = 'pip install "minireptile[distributed]"'
CONNECT_SECONDS = 10.0       # to reach a --scheduler and get its handshake
WORKER_WAIT_SECONDS = 30.0   # for a --scheduler's cluster to have a worker


def add_cluster_flags(p, what: str) -> None:
    """Add ``--workers`` and ``--scheduler`` to parser ``p``; ``what`` says what the workers run."""
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help=f"{what} on a local Dask cluster of N worker processes, one numba thread each "
                   f"(needs {INSTALL_HINT})")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help=f"{what} on an existing Dask cluster, e.g. tcp://host:8786 (its workers need minireptile)")


def _flag(args) -> str:
    return "--scheduler" if getattr(args, "scheduler", None) is not None else "--workers"


def wants_cluster(args) -> bool:
    return getattr(args, "workers", None) is not None or getattr(args, "scheduler", None) is not None


def open_client(args, stack: contextlib.ExitStack):
    """A Dask client for ``--workers``/``--scheduler`` (closed when ``stack`` closes), or None without them.

    Raises FlagError: both flags, Dask not installed, or the scheduler cannot be reached.
    """
    if not wants_cluster(args):
        return None
    if args.workers is not None and args.scheduler is not None:
        raise FlagError("--scheduler", "give --workers N (a local cluster) or --scheduler ADDRESS, not both")
    try:
        import distributed
    except ImportError:
        raise FlagError(_flag(args), f"needs Dask, which is not installed: {INSTALL_HINT}") from None
    if args.scheduler is not None:
        probe_scheduler(args.scheduler)
        try:
            client = distributed.Client(args.scheduler, timeout=f"{CONNECT_SECONDS}s")
        except (OSError, ValueError, TypeError) as exc:
            raise FlagError("--scheduler", f"cannot connect to {args.scheduler!r}: {' '.join(str(exc).split())}") \
                from None
        stack.callback(client.close)
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except (TimeoutError, OSError):
            raise FlagError("--scheduler", f"the Dask cluster at {args.scheduler!r} has no workers (waited "
                            f"{WORKER_WAIT_SECONDS:g} s); start some (`dask worker {args.scheduler}`) and run again") \
                from None
        return client
    from ..backends.distributed import local_client

    client = local_client(args.workers)
    stack.callback(client.cluster.close)
    stack.callback(client.close)
    return client


def require_dask(args) -> None:
    """For a command that always runs on a Dask cluster (``sweep``): BackendUnavailableError before any work
    if Dask is missing, naming a cluster flag only if the user gave one."""
    if importlib.util.find_spec("distributed") is not None:
        return
    if wants_cluster(args):
        raise FlagError(_flag(args), f"needs Dask, which is not installed: {INSTALL_HINT}")
    from ..errors import BackendUnavailableError

    raise BackendUnavailableError(f"runs its runs on a Dask cluster, and Dask is not installed: {INSTALL_HINT}")


def probe_scheduler(address: str) -> None:
    """FlagError naming ``address`` unless a TCP address answers as a Dask scheduler does, within seconds.

    A Dask scheduler speaks first: it sends its handshake, a frame whose 8-byte length prefix is small.
    A server that stays silent (an HTTP server, a dashboard port) or sends something else is refused
    after :data:`CONNECT_SECONDS` instead of hanging or allocating what its bytes seem to ask for.
    Addresses of other protocols (tls://, ucx://, ...) are left to Dask.
    """
    import socket
    import struct

    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return
    host, _, port = rest.rpartition(":") if ":" in rest.lstrip("[").split("]")[-1] else (rest, ":", "8786")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise FlagError("--scheduler", f"expected an address like tcp://host:8786, got {address!r}")
    what = f"{address!r} is not a Dask scheduler"
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS) as sock:
            sock.settimeout(CONNECT_SECONDS)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    raise FlagError("--scheduler", f"{what}: it closed the connection without a Dask handshake")
                head += chunk
    except TimeoutError:
        raise FlagError("--scheduler", f"cannot connect to {address!r}: no Dask handshake within {CONNECT_SECONDS:g} "
                        "s (is it a Dask scheduler's address, not its dashboard or another server?)") from None
    except OSError as exc:
        raise FlagError("--scheduler", f"cannot connect to {address!r}: {exc.strerror or exc}") from None
    (size,) = struct.unpack("<Q", head)
    if not 0 < size < 1 << 26:
        raise FlagError("--scheduler", f"{what}: it answered with bytes that are not a Dask handshake")


def n_workers(client) -> int:
    """Workers the cluster has now."""
    return len(client.scheduler_info().get("workers", {}))


def distributed_meta_batch(args, backend_name: str, meta_batch: int, stack: contextlib.ExitStack):
    """The distributed backend for ``--workers``/``--scheduler``, or None without them.

    Raises FlagError before starting anything if the run cannot be distributed: a backend other than
    numba, or a meta-batch of one task (nothing to split; ``minireptile sweep`` runs many runs at once).
    """
    if not wants_cluster(args):
        return None
    flag = _flag(args)
    if backend_name != "numba":
        raise FlagError(flag, f"the distributed meta-batch runs the numba backend on the workers; got --backend "
                        f"{backend_name}")
    if meta_batch < 2:
        raise FlagError(flag, "the distributed meta-batch splits a meta-batch of several tasks: give --meta-batch "
                        "N > 1 (to run many runs at once, use minireptile sweep)")
    if args.workers is not None and args.scheduler is None and not getattr(args, "quiet", False):  # seconds
        print(f"minireptile {getattr(args, 'command', '')}: starting a local Dask cluster of {args.workers} "
              "workers ...", flush=True)
    client = open_client(args, stack)
    from ..backends.distributed import distributed_backend

    return distributed_backend(client)


def describe_backend(backend, rcfg) -> str:
    """The backend's name; for the distributed meta-batch also its workers and block size."""
    if backend.name != "distributed":
        return backend.name
    block = rcfg.meta_batch if rcfg.task_block is None else min(rcfg.task_block, rcfg.meta_batch)
    return f"numba on {n_workers(backend.client)} Dask workers (blocks of {block} tasks)"


def with_task_block(cfg):
    """A stored configuration with ``reptile.task_block``: checkpoints written before blocks existed reduced
    the meta-batch in one block (``task_block = meta_batch``), so they resume bit for bit."""
    r = cfg.get("reptile") if isinstance(cfg, dict) else None
    if isinstance(r, dict) and "task_block" not in r and "meta_batch" in r:
        cfg = {**cfg, "reptile": {**r, "task_block": r["meta_batch"]}}
    return cfg

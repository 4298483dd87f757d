"""A local Dask cluster starts quietly when the dashboard's usual port (8787) is taken."""

import socket
import warnings

import pytest

pytest.importorskip("distributed", reason="needs Dask (pip install 'minireptile[distributed]')")


def test_a_taken_port_8787_gives_no_warning():
    from minireptile.backends.distributed import local_client

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8787))
            s.listen()
        except OSError:
            pass   # taken already: the very case
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = local_client(1)
            client.close()
            client.cluster.close()
    assert [str(w.message) for w in caught if "8787" in str(w.message)] == []

"""Task functions for ``benches/compare.py``.

They live in an importable module (``benches/`` is put on ``PYTHONPATH`` of the
workers, the schedulers and the Rust scheduler's materializer helpers) so that
they are pickled by reference, as user code in a real deployment would be.
"""

from __future__ import annotations

import numpy as np


def inc(x):
    return x + 1


def noop(x):
    return None


def ident(x):
    return x


def add(a, b):
    return a + b


def sum_list(xs):
    return sum(xs)


def make_leaf(i, n):
    """A float64 array of ``n`` elements, all equal to ``i``."""
    return np.full(n, float(i))


def count_nones(xs):
    return sum(1 for x in xs if x is None)


def incoming_by_prefix(since, dask_worker=None):
    """Bytes this worker fetched from other workers since ``since`` (a
    ``time()`` on this machine), by key prefix (``key_split``) -- from the
    bounded ``transfer_incoming_log``; diagnostics only."""
    from dask.utils import key_split

    out = {}
    for e in list(dask_worker.transfer_incoming_log):
        if e.get("start", 0) < since:
            continue
        for key, nbytes in (e.get("keys") or {}).items():
            pre = key_split(key)
            out[pre] = out.get(pre, 0) + int(nbytes or 0)
    return out


def worker_counters(dask_worker):
    """Cumulative counters of one worker, read through ``client.run``.

    ``transfer_outgoing_bytes_total`` (``distributed/worker.py``, incremented
    in ``Worker.get_data``) is the sum of ``nbytes`` of every key this worker
    sent to another worker; it is never capped, unlike the transfer logs.  The
    incoming side is cross-checked with ``state.transfer_incoming_count_total``
    and the (bounded) ``transfer_incoming_log``.
    """
    st = dask_worker.state
    in_log = list(dask_worker.transfer_incoming_log)
    return {
        "executed_count": int(st.executed_count),
        "transfer_outgoing_bytes_total": int(dask_worker.transfer_outgoing_bytes_total),
        "transfer_outgoing_count_total": int(dask_worker.transfer_outgoing_count_total),
        "transfer_incoming_count_total": int(st.transfer_incoming_count_total),
        "transfer_incoming_log_bytes": int(sum(e.get("total", 0) for e in in_log)),
        "transfer_incoming_log_len": len(in_log),
        "transfer_incoming_log_maxlen": dask_worker.transfer_incoming_log.maxlen,
        "n_keys_in_memory": len(dask_worker.data),
    }


def warm_imports(modules):
    """Import what a graph needs, so first-import costs stay out of timings."""
    import importlib

    for m in modules:
        importlib.import_module(m)
    return True

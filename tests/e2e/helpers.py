"""Task functions and small polling helpers shared by the end-to-end tests.

Workers and the scheduler's materializer import this module by name
(``e2e.helpers``; the harness puts ``tests/`` on their PYTHONPATH).
"""

from __future__ import annotations

import gc
import time
import uuid

from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

from .cluster import wait_until


# ---- task functions ------------------------------------------------------


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def div(x, y):
    return x / y


def slow_inc(x, delay=0.01):
    time.sleep(delay)
    return x + 1


def where_am_i(*args, delay=0.0):
    """Return the address of the worker running this task."""
    from distributed import get_worker

    time.sleep(delay)
    return get_worker().address


def sleep_until_file(path, timeout=60.0, result=None):
    """Block a worker thread until ``path`` exists (bounded); then return ``result``.

    Used for "long running" tasks that a test can end early.
    """
    import os

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def touch_then_sleep_until_file(started, stop, timeout=60.0, result=None):
    """Mark ``started`` when running, then wait for ``stop``."""
    open(started, "w").close()
    return sleep_until_file(stop, timeout, result)


class Counter:
    """A stateful object for actor tests (``client.submit(Counter, actor=True)``)."""

    n = 0  # an Actor proxy reads only attributes its class declares

    def __init__(self, start=0):
        self.n = start

    def increment(self):
        self.n += 1
        return self.n


def call_increment(counter):
    """A task that calls an actor's method from its worker."""
    return counter.increment().result()


class MarkNanny(NannyPlugin):
    """A nanny plugin that leaves ``marked = True`` on each nanny it is set
    up on (read back with ``client.run(..., nanny=True)``)."""

    name = "mark-nanny"

    def setup(self, nanny):
        nanny.marked = True


class StampMetadata(WorkerPlugin):
    """A worker plugin that puts ``{"stamped": <key>}`` in the metadata of
    every task its worker computes (what ``get_task_metadata`` reports)."""

    name = "stamp-metadata"

    def setup(self, worker):
        self.tasks = worker.state.tasks

    def transition(self, key, start, finish, **kwargs):
        if start == "executing" and finish == "memory":
            self.tasks[key].metadata["stamped"] = str(key)


# ---- helpers for the test process ----------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def worker_data_keys(client) -> dict:
    """worker address -> set of keys held in that worker's memory (asked the workers)."""
    return {addr: set(keys) for addr, keys in
            client.run(lambda dask_worker: list(dask_worker.data)).items()}


def scheduler_task_keys(client) -> set:
    """Every key the scheduler knows: ``who_has()`` without arguments lists
    all of the scheduler's tasks (with the workers holding them, possibly none)."""
    return set(client.who_has())


def wait_released(client, keys, timeout: float = 30.0) -> None:
    """Wait until ``keys`` are gone from the scheduler (who_has/has_what) and
    from the memory of every worker."""
    keys = set(keys)

    def gone():
        gc.collect()  # see wait_cluster_empty
        left = keys & scheduler_task_keys(client)
        left |= {k for ks in client.has_what().values() for k in ks} & keys
        left |= {k for ks in worker_data_keys(client).values() for k in ks} & keys
        return not left

    wait_until(gone, timeout, f"keys {sorted(map(str, keys))[:5]}... to be released", interval=0.2)


def wait_cluster_empty(client, timeout: float = 30.0) -> None:
    """Wait until no worker holds any key.

    Futures from earlier tests can stay alive in reference cycles: an
    exception caught by ``pytest.raises`` keeps, through its traceback, the
    frames of the client call that raised, and with them the futures passed
    in. Only the garbage collector releases those, and its oldest generation
    may not run for minutes, so collect before each look.
    """
    def empty():
        gc.collect()
        return not any(client.has_what().values())

    wait_until(empty, timeout, "an empty cluster", interval=0.2)


def worker_info(client) -> dict:
    """address -> worker info, straight from the scheduler (not the cached
    copy of ``Client.scheduler_info()``, which the client's periodic refresh
    may have emptied of workers)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def run_some_work(client, names: dict[str, str], timeout: float = 30) -> None:
    """Tasks, a transfer between the two workers, results gathered by the
    client from the workers, and the scheduler dialing every worker (the
    comm tests run it over each scheme)."""
    futs = client.map(inc, range(40), key=[unique("comm-inc") for _ in range(40)])
    assert client.gather(futs) == list(range(1, 41))
    (a, b) = sorted(names.values())
    x = client.submit(inc, 1, workers=[a], key=unique("comm-x"))
    y = client.submit(add, x, 10, workers=[b], key=unique("comm-y"))
    assert y.result(timeout=timeout) == 12
    # broadcast: the scheduler opens its own connections to the workers
    assert client.run(lambda: 7) == {a: 7, b: 7}
    assert list(client.who_has(y)[y.key]) == [b]


def refuse_unpickling():
    """Raises wherever it is called: a graph holding an ``Unloadable`` cannot
    be deserialized by the scheduler."""
    raise RuntimeError("this object refuses to be unpickled")


class Unloadable:
    """Pickles fine; unpickling it raises (see ``refuse_unpickling``)."""

    def __reduce__(self):
        return (refuse_unpickling, ())

"""Issue 2, point 8: the graph-materializer pool of the Rust scheduler.

Assumption shared with crates/server: helper processes run with the
environment variable DASK_SCHEDULER_MATERIALIZER=1, in the scheduler's
session (they are its children).
"""

import os
import threading
import time
import urllib.request

import dask
import numpy as np
import pytest

from .cluster import PYTHON, WorkerSpec, wait_until
from .helpers import add, inc

pytestmark = pytest.mark.rust_only

MISSING_PYTHON = "/nonexistent/python"


def explode_in_materializer():
    """Kill the process if it is a materializer helper; harmless elsewhere."""
    if os.environ.get("DASK_SCHEDULER_MATERIALIZER") == "1":
        os._exit(1)
    return "harmless"


class Bomb:
    """Unpickling a Bomb kills a materializer helper (and only that)."""

    def __reduce__(self):
        return (explode_in_materializer, ())


def identity(x):
    return x


class SlowToUnpickle:
    """Unpickling one takes ``seconds`` (and gives None): a graph holding one
    keeps its materializer helper busy that long."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __reduce__(self):
        return (time.sleep, (self.seconds,))


def session_members(sid: int) -> list[int]:
    """pids of the processes in session ``sid`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def helper_processes(sched_pid: int) -> list[int]:
    """pids of the scheduler's materializer helpers: its direct children (a
    helper's own short-lived children, e.g. its ``dask.order`` fork, are not)."""
    children = []
    for pid in session_members(sched_pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == sched_pid:
            children.append(pid)
    return children


def assert_fails_promptly(future, limit=15.0):
    """The future errs (not hangs) within ``limit`` seconds; return the exception."""
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        future.result(timeout=limit + 15)
    elapsed = time.monotonic() - t0
    assert not isinstance(info.value, TimeoutError), "the graph hung instead of failing"
    assert elapsed < limit, f"took {elapsed:.1f}s to fail"
    return info.value


def test_no_python_still_serves_workers_data_and_http(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=1)], python=MISSING_PYTHON)
    client = c.client()
    assert len(client.scheduler_info()["workers"]) == 1
    # scatter / gather / run do not need Python in the scheduler
    [x] = client.scatter([np.arange(10)])
    assert client.gather(x).tolist() == list(range(10))
    assert list(client.run(os.getpid).values())[0] > 0
    with urllib.request.urlopen(c.scheduler.dashboard_url("/health"), timeout=10) as r:
        assert r.status == 200 and r.read().decode().strip() == "ok"

    # a graph needs the materializer: a clear error, quickly, naming what is missing
    for future in (client.compute(dask.delayed(inc)(1)), client.submit(inc, 1)):
        exc = assert_fails_promptly(future)
        text = str(exc).lower()
        assert "python" in text or "dask" in text, f"unclear error: {exc!r}"

    # and the scheduler is still fine afterwards
    assert c.scheduler.alive()
    other = c.client(set_as_default=False)
    assert other.gather(other.scatter([41]))[0] == 41


def test_dying_helper_fails_only_its_graph(cluster, client):
    background = client.compute(dask.delayed(sum)([dask.delayed(inc)(i) for i in range(200)]))

    bad = client.submit(identity, Bomb(), pure=False)
    assert_fails_promptly(bad, limit=30)

    # the pool recovers: following graphs work, repeatedly
    for i in range(5):
        assert dask.delayed(add)(i, 1).compute() == i + 1
        assert client.submit(inc, i, pure=False).result(timeout=30) == i + 1
    assert background.result(timeout=60) == sum(range(1, 201))

    # and once more, to see the restarted helper die and recover again
    assert_fails_promptly(client.compute(dask.delayed(identity)(Bomb())), limit=30)
    assert dask.delayed(inc)(41).compute() == 42


def test_pool_size_option(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=2)], extra=["--materializer-pool-size", "2"])
    clients = [c.client(set_as_default=False) for _ in range(3)]
    results = {}

    def work(i, cl):
        graph = dask.delayed(sum)([dask.delayed(inc)(j) for j in range(50 + i)])
        results[i] = cl.compute(graph).result(timeout=60)

    threads = [threading.Thread(target=work, args=(i, cl)) for i, cl in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == {i: sum(range(1, 51 + i)) for i in range(3)}


def test_spare_helpers_start_while_graphs_wait_and_stop_when_idle(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=2)],
                     extra=["--materializer-pool-size", "2", "--materializer-spare-idle", "1s"])
    client = c.client()
    assert client.submit(inc, 1).result(timeout=30) == 2
    sched = c.scheduler
    kept = helper_processes(sched.pid)
    assert len(kept) == 1, f"one helper kept at rest, found {kept}"

    # three graphs that each keep a helper busy for 3 s, from three clients
    clients = [c.client(set_as_default=False) for _ in range(3)]
    futures = [cl.compute(dask.delayed(identity, pure=False)(SlowToUnpickle(3))) for cl in clients]
    most = 0
    while not all(f.done() for f in futures):
        most = max(most, len(helper_processes(sched.pid)))
        time.sleep(0.05)
    assert [f.result(timeout=60) for f in futures] == [None, None, None]
    assert most == 2, f"spares up to --materializer-pool-size, no more (saw {most})"

    # the spare stops once idle for a second; the kept helper still serves
    wait_until(lambda: helper_processes(sched.pid) == kept, 30,
               "the spare helper to stop when idle")
    assert client.submit(inc, 2).result(timeout=30) == 3


def test_python_from_environment_variable(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=1)], python=None,
                     env={"DASK_SCHEDULER_PYTHON": PYTHON})
    c.client()  # the default client
    assert dask.delayed(inc)(1).compute() == 2


def test_helpers_are_children_and_exit_with_the_scheduler(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=1)])
    client = c.client()
    assert dask.delayed(inc)(1).compute() == 2
    sched = c.scheduler
    helpers = [p for p in session_members(sched.pid) if p != sched.pid]
    assert helpers, "no materializer helper process found in the scheduler's session"
    for pid in helpers:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        assert b"DASK_SCHEDULER_MATERIALIZER=1" in env

    client.close()
    c.clients.clear()
    c.close_workers()
    sched.send_signal(15)
    assert sched.wait(20) is not None, "scheduler did not exit on SIGTERM"
    wait_until(lambda: not session_members(sched.pid), 10,
               "materializer helpers to exit with the scheduler")

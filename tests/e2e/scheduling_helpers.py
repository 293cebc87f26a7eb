"""Task functions and observation helpers for test_scheduling.py (issue 3).

Workers import this module by name (``e2e.scheduling_helpers``; the harness
puts ``tests/`` on their PYTHONPATH), so every task function lives here and is
pickled by reference.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from .cluster import wait_until

# ---- task functions ------------------------------------------------------


def record(tag, delay=0.0, marker_dir=None, value=None):
    """Sleep ``delay`` seconds and say where and when this ran.

    Returns ``{"tag", "value", "worker", "name", "start", "stop"}`` (wall-clock
    times, comparable across processes of this machine). With ``marker_dir``
    one file per *execution* is left there (to count executions).
    """
    from distributed import get_worker

    w = get_worker()
    start = time.time()
    if marker_dir is not None:
        Path(marker_dir, f"{tag}--{w.name}--{uuid.uuid4().hex[:8]}").touch()
    time.sleep(delay)
    return {"tag": tag, "value": value, "worker": w.address, "name": str(w.name),
            "start": start, "stop": time.time()}


def cpu_step(i, delay=0.0):
    """The unannotated part of the mixed-cluster graph."""
    return record(f"cpu-{i}", delay, value=i * 2)


def gpu_step(x, delay=0.0):
    """The annotated part: consumes a cpu_step result."""
    r = record(f"gpu-{x['tag']}", delay, value=x["value"] + 1)
    r["input_worker"] = x["worker"]
    return r


def collect(items):
    """Unannotated reduction of the mixed-cluster graph."""
    return list(items)


def nbytes_where(data):
    """Where a task depending on a big array ran, and the array size."""
    from distributed import get_worker

    return get_worker().address, int(data.nbytes)


def die_after_marker(marker_dir):
    """Leave a marker, then SIGKILL the worker process running us."""
    import signal

    from distributed import get_worker

    Path(marker_dir, f"death-{get_worker().name}-{uuid.uuid4().hex[:8]}").touch()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)  # not reached


def flaky(counter_path, fail_times, value):
    """Fail the first ``fail_times`` calls (counted in a file), then return value."""
    with open(counter_path, "a") as f:
        f.write("x\n")
    n = len(Path(counter_path).read_text().split())
    if n <= fail_times:
        raise ValueError(f"flaky failure {n}")
    return value


# ---- functions for client.run ---------------------------------------------

ACTIVE_STATES = ("waiting", "ready", "constrained", "executing", "long-running")


def count_active(dask_worker):
    """Tasks the worker has been asked to compute and has not finished."""
    return sum(1 for ts in dask_worker.state.tasks.values() if ts.state in ACTIVE_STATES)


def set_worker_status(status, dask_worker=None):
    """Change a worker's status the way the worker itself does (memory monitor,
    graceful close): the worker sends ``worker-status-change`` to the scheduler."""
    dask_worker.handle_worker_status_change(status, stimulus_id=f"test-{time.time()}")
    return dask_worker.status.name


async def add_worker_resources(resources, dask_worker=None):
    """``Worker.set_resources`` (2026.8 API): updates the worker's own accounting
    and calls the scheduler's ``set_resources`` RPC."""
    await dask_worker.set_resources(**resources)
    return dict(dask_worker.state.total_resources)


def holds_key(key, dask_worker=None):
    return key in dask_worker.data


# ---- observation helpers (test process) -----------------------------------


def max_overlap(intervals, eps=0.01):
    """Largest number of [start, stop] intervals that overlap at one instant
    (intervals touching within ``eps`` seconds do not count as overlapping)."""
    events = []
    for start, stop in intervals:
        events.append((start + eps, 1))
        events.append((stop - eps, -1))
    events.sort(key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def worker_entries(client) -> dict:
    return client.scheduler_info(n_workers=-1)["workers"]


def addr_by_name(client) -> dict[str, str]:
    return {str(w["name"]): addr for addr, w in worker_entries(client).items()}


def processing_keys(client) -> set:
    return {k for keys in client.processing().values() for k in keys}


def assert_stays_pending(client, futures, seconds: float, where=None):
    """For ``seconds``: every future stays pending, is not processing on any
    worker and (when ``where`` is a marker dir) left no execution marker."""
    deadline = time.monotonic() + seconds
    keys = {f.key for f in futures}
    while time.monotonic() < deadline:
        statuses = {f.key: f.status for f in futures}
        assert all(s == "pending" for s in statuses.values()), statuses
        busy = keys & processing_keys(client)
        assert not busy, f"tasks {busy} are processing but no worker may run them"
        if where is not None:
            ran = list(Path(where).iterdir())
            assert not ran, f"tasks ran: {ran}"
        time.sleep(0.25)


def wait_status(client, addr, status, timeout=15):
    wait_until(lambda: worker_entries(client).get(addr, {}).get("status") == status,
               timeout, f"the scheduler to report worker {addr} as {status}",
               context=lambda: repr(worker_entries(client).get(addr)))


def executions(marker_dir) -> dict[str, list[str]]:
    """tag -> names of the workers that executed it (one entry per execution)."""
    out: dict[str, list[str]] = {}
    for p in Path(marker_dir).iterdir():
        tag, name, _ = p.name.split("--")
        out.setdefault(tag, []).append(name)
    return out


def record_until_file(tag, marker_dir, stop_file, timeout=60.0):
    """Like ``record`` (one marker per execution), but runs until ``stop_file``
    exists (bounded by ``timeout``)."""
    from distributed import get_worker

    w = get_worker()
    start = time.time()
    Path(marker_dir, f"{tag}--{w.name}--{uuid.uuid4().hex[:8]}").touch()
    deadline = time.monotonic() + timeout
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"tag": tag, "worker": w.address, "name": str(w.name),
            "start": start, "stop": time.time()}

"""``Client.restart`` and ``Client.restart_workers`` through the Rust
scheduler, with real nannies restarting real worker processes."""

import os

import pytest
from distributed.client import FutureCancelledError

from .cluster import WorkerSpec, wait_until
from .helpers import inc, scheduler_task_keys, unique, worker_info
from .test_metrics import scrape


def worker_pids(client):
    return client.run(os.getpid)


def test_restart_forgets_everything_and_brings_new_workers(make_cluster):
    cluster = make_cluster([WorkerSpec(nthreads=1, nanny=True), WorkerSpec(nthreads=1, nanny=True)])
    c = cluster.client()
    c.wait_for_workers(2, timeout=60)
    other = cluster.client()
    before = worker_pids(c)
    held = c.submit(inc, 1, key=unique("held"))
    assert held.result(timeout=30) == 2
    scattered = other.scatter([1, 2, 3])
    assert scheduler_task_keys(c)

    c.restart(timeout=60)

    # every future of every client is cancelled, the scheduler holds nothing
    with pytest.raises(FutureCancelledError):
        held.result(timeout=10)
    wait_until(lambda: all(f.status == "cancelled" for f in scattered), 15,
               "the other client's futures to be cancelled")
    assert scheduler_task_keys(c) == set()
    # the same number of workers, all new processes
    after = worker_pids(c)
    assert len(after) == 2
    assert not set(after.values()) & set(before.values())
    # and the cluster works
    assert c.submit(inc, 41, pure=False).result(timeout=30) == 42
    assert sum(c.gather(c.map(inc, range(50)))) == sum(range(1, 51))


def test_restart_workers_restarts_only_the_chosen_one(make_cluster):
    cluster = make_cluster([WorkerSpec(nthreads=1, nanny=True, name="n1"),
                            WorkerSpec(nthreads=1, nanny=True, name="n2")])
    c = cluster.client()
    c.wait_for_workers(2, timeout=60)
    before = worker_pids(c)
    info = worker_info(c)
    by_name = {w["name"]: addr for addr, w in info.items()}
    kept = c.submit(inc, 1, key=unique("kept"))
    assert kept.result(timeout=30) == 2

    out = c.restart_workers(["n1"], timeout=60)
    assert out == {"n1": "OK"}

    wait_until(lambda: len(worker_info(c)) == 2, 60, "two workers again")
    after = worker_pids(c)
    assert before[by_name["n2"]] in after.values(), "the other worker kept running"
    assert before[by_name["n1"]] not in after.values(), "n1 is a new process"
    # tasks are not forgotten by restart_workers: the result is still there
    # (recomputed if it lived on n1)
    assert kept.result(timeout=30) == 2


def test_restart_without_nannies_removes_the_workers_and_times_out(make_cluster):
    cluster = make_cluster([WorkerSpec(nthreads=1)])
    c = cluster.client()
    c.wait_for_workers(1, timeout=60)
    f = c.submit(inc, 1)
    assert f.result(timeout=30) == 2
    with pytest.raises(TimeoutError, match="not using Nannies"):
        c.restart(timeout=2)
    assert worker_info(c) == {}
    assert scheduler_task_keys(c) == set()
    with pytest.raises(FutureCancelledError):
        f.result(timeout=5)
    # the worker was told to close, and does
    worker = cluster.workers[0]
    wait_until(lambda: not worker.alive(), 30, "the nanny-less worker to exit")


def test_restart_workers_needs_nannies(make_cluster):
    cluster = make_cluster([WorkerSpec(nthreads=1, name="plain")])
    c = cluster.client()
    c.wait_for_workers(1, timeout=60)
    with pytest.raises(ValueError, match="requires a nanny"):
        c.restart_workers(["plain"])


def prefix_state_totals(url: str) -> dict:
    """(prefix, state) -> count of /metrics' ``dask_scheduler_prefix_state_totals``."""
    fam = scrape(url).get("dask_scheduler_prefix_state_totals")
    samples = fam.samples if fam else []
    return {(s.labels["task_prefix_name"], s.labels["state"]): s.value
            for s in samples if s.name.endswith("_total")}


def test_restart_forgets_the_task_prefixes(make_cluster):
    """Python's restart clears ``task_prefixes`` (``_clear_task_state``):
    their duration estimates and counters go, and /metrics stops listing
    them until tasks of that prefix come again, counted from zero."""
    cluster = make_cluster([WorkerSpec(nthreads=1, nanny=True)])
    c = cluster.client()
    c.wait_for_workers(1, timeout=60)
    url = cluster.scheduler.dashboard_url("/metrics")
    futs = c.map(inc, range(5), key=[f"restartpfx-{i}" for i in range(5)])
    assert c.gather(futs) == list(range(1, 6))
    assert prefix_state_totals(url)[("restartpfx", "memory")] == 5

    c.restart(timeout=60)
    assert "restartpfx" not in {p for p, _ in prefix_state_totals(url)}

    assert c.submit(inc, 1, key="restartpfx-7").result(timeout=30) == 2
    totals = prefix_state_totals(url)
    assert totals[("restartpfx", "memory")] == 1

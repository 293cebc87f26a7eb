"""Issue 5, point 2: Prometheus ``/metrics`` on the dashboard port.

Scrapes are parsed with ``prometheus_client.parser`` (a real Prometheus text
parser). The families shared with the Python scheduler are checked against
the running cluster (these tests also pass with DASK_SCHEDULER_IMPL=python),
and ``test_same_families_as_python_exporter`` compares names, types and label
names with a scrape of the real Python scheduler taken in the same test.
"""

from __future__ import annotations

import urllib.request

import pytest
from distributed import Semaphore
from prometheus_client.parser import text_string_to_metric_families

from . import cluster as cl
from .cluster import Cluster, WorkerSpec, wait_until
from .helpers import inc, slow_inc, touch_then_sleep_until_file, unique

CLUSTER_WORKERS = [WorkerSpec(nthreads=2), WorkerSpec(nthreads=1)]

# Python families the Rust scheduler does not export, and why (mirrored in the
# README's "Observability" section). Anything else missing is a failure.
ABSENT_ON_PURPOSE = {
    # no Python interpreter (and no garbage collector) in the scheduler process
    "python_gc_objects_collected",
    "python_gc_objects_uncollectable",
    "python_gc_collections",
    "python_info",
    "dask_scheduler_gc_collection_seconds",
    # the Python SystemMonitor's timestamp: no SystemMonitor here
    "dask_scheduler_last_time",
}

# Our own families (documented in the README).
OWN_FAMILIES = {
    "dask_scheduler_messages": "counter",
    "dask_scheduler_graph_materialization_seconds": "histogram",
    "dask_scheduler_graph_materialization_queue_depth": "gauge",
    "dask_scheduler_event_loop_busy_seconds": "counter",
    "dask_scheduler_event_loop_ticks": "counter",
}


def scrape(url: str) -> dict:
    """name -> family, parsed with prometheus_client's parser."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams: dict, name: str, suffix: str = "") -> dict:
    """{frozenset(labels.items()): value} of one family's samples."""
    fam = fams[name]
    return {frozenset(s.labels.items()): s.value for s in fam.samples
            if s.name == name + suffix}


def value(fams: dict, name: str, suffix: str = "", **labels) -> float:
    return samples(fams, name, suffix)[frozenset(labels.items())]


def shape(fams: dict) -> dict:
    """name -> (type, label names of its samples)."""
    out = {}
    for name, f in fams.items():
        labels = set()
        for s in f.samples:
            labels |= set(s.labels) - {"le", "quantile"}
        out[name] = (f.type, frozenset(labels))
    return out


def run_workload(client) -> list:
    """A small collection computation plus held futures of a known prefix."""
    import dask.array as da

    assert da.ones((40, 40), chunks=10).sum().compute() == 1600
    futs = client.map(inc, range(10), key=[f"{unique('metricinc')}-{i}" for i in range(10)])
    assert client.gather(futs) == list(range(1, 11))
    return futs


# --------------------------------------------------------------------------


def test_scrape_parses_and_matches_cluster(cluster):
    client = cluster.client()
    futs = run_workload(client)
    fams = scrape(cluster.scheduler.dashboard_url("/metrics"))
    info = cluster.info()

    # workers by state add up to the workers the scheduler knows
    workers = samples(fams, "dask_scheduler_workers")
    assert {dict(k)["state"] for k in workers} == {
        "idle", "partially_saturated", "saturated", "paused", "retiring"}
    assert sum(workers.values()) == len(info["workers"]) == 2
    assert fams["dask_scheduler_workers"].type == "gauge"
    assert value(fams, "dask_scheduler_workers_added", "_total") >= 2
    assert fams["dask_scheduler_workers_added"].type == "counter"

    assert value(fams, "dask_scheduler_clients") >= 1
    assert value(fams, "dask_scheduler_client_connections_added", "_total") >= 1

    # tasks by state: every state but forgotten; our 10 futures are in memory
    tasks = {dict(k)["state"]: v for k, v in samples(fams, "dask_scheduler_tasks").items()}
    assert set(tasks) == {"released", "waiting", "no-worker", "queued", "processing",
                          "memory", "erred"}
    assert tasks["memory"] >= len(futs)

    # per prefix: compute time, output bytes, state totals of our prefix
    compute = {dict(k)["task_prefix_name"]: v for k, v in
               samples(fams, "dask_scheduler_tasks_compute_seconds", "_total").items()}
    assert compute.get("metricinc", 0) > 0
    assert any(p.startswith("ones") or p.startswith("sum") for p in compute)
    nbytes = {dict(k)["task_prefix_name"]: v for k, v in
              samples(fams, "dask_scheduler_tasks_output_bytes").items()}
    held = sum(client.nbytes(summary=False)[f.key] for f in futs)
    assert nbytes["metricinc"] == held > 0
    totals = {(dict(k)["task_prefix_name"], dict(k)["state"]): v for k, v in
              samples(fams, "dask_scheduler_prefix_state_totals", "_total").items()}
    assert totals[("metricinc", "memory")] >= 10
    assert totals[("metricinc", "processing")] >= 10
    assert fams["dask_scheduler_prefix_state_totals"].type == "counter"

    # process_* (the Python scheduler gets these from prometheus_client)
    assert value(fams, "process_resident_memory_bytes") > 0
    assert value(fams, "process_open_fds") > 0
    assert value(fams, "process_start_time_seconds") > 0
    assert fams["process_cpu_seconds"].type == "counter"
    client.cancel(futs)


def test_worker_loss_counts_removal_and_suspicious_tasks(tmp_path):
    c = Cluster(tmp_path, [WorkerSpec(nthreads=1)])
    try:
        client = c.client()
        started, stop = tmp_path / "started", tmp_path / "stop"
        key = unique("suspect")
        fut = client.submit(touch_then_sleep_until_file, str(started), str(stop), key=key)
        wait_until(started.exists, 60, "the task to start")
        c.kill_worker(c.workers[0])
        url = c.scheduler.dashboard_url("/metrics")

        def removed():
            f = scrape(url)
            return value(f, "dask_scheduler_workers_removed", "_total") >= 1
        wait_until(removed, 60, "the lost worker to be counted")
        fams = scrape(url)
        suspicious = {dict(k)["task_prefix_name"]: v for k, v in
                      samples(fams, "dask_scheduler_tasks_suspicious", "_total").items()}
        assert suspicious["suspect"] >= 1
        assert value(fams, "dask_scheduler_workers_added", "_total") == 1
        stop.touch()
        client.cancel(fut)
    finally:
        c.close()


@pytest.mark.rust_only
def test_own_metrics(cluster):
    client = cluster.client()
    run_workload(client)
    url = cluster.scheduler.dashboard_url("/metrics")
    fams = scrape(url)
    for name, typ in OWN_FAMILIES.items():
        assert fams[name].type == typ, name
    msgs = {(dict(k)["source"], dict(k)["op"]): v for k, v in
            samples(fams, "dask_scheduler_messages", "_total").items()}
    assert msgs[("worker", "task-finished")] >= 10
    assert msgs[("client", "update-graph")] >= 2
    assert msgs[("connection", "register-client")] >= 1
    assert msgs[("rpc", "identity")] >= 1
    assert value(fams, "dask_scheduler_graph_materialization_seconds", "_count") >= 2
    assert value(fams, "dask_scheduler_graph_materialization_seconds", "_sum") > 0
    assert value(fams, "dask_scheduler_graph_materialization_queue_depth") == 0
    assert value(fams, "dask_scheduler_event_loop_busy_seconds", "_total") > 0
    ticks = value(fams, "dask_scheduler_tick_count", "_total")
    wait_until(lambda: value(scrape(url), "dask_scheduler_tick_count", "_total") > ticks, 30,
               "the event loop to tick")
    # stealing families: one sample per cost multiplier, like Python
    mult = {dict(k)["cost_multiplier"] for k in
            samples(fams, "dask_stealing_request_count", "_total")}
    assert mult == {"1.0", "1.03125", "1.0625", "1.125", "1.25", "1.5", "2", "3", "5", "9",
                    "17", "33", "65", "129", "257"}


@pytest.mark.rust_only
def test_peer_ops_cannot_grow_the_label_set(cluster):
    """Unknown ops are counted as `other`, never as a new label value."""
    import asyncio

    from distributed.core import rpc

    async def send_unknown():
        async with rpc(cluster.address) as r:
            try:
                await r.some_op_nobody_knows_xyz()
            except Exception:
                pass
    asyncio.run(send_unknown())
    fams = scrape(cluster.scheduler.dashboard_url("/metrics"))
    ops = {dict(k)["op"] for k in samples(fams, "dask_scheduler_messages", "_total")}
    assert "some_op_nobody_knows_xyz" not in ops
    assert "other" in ops


@pytest.mark.rust_only
def test_same_families_as_python_exporter(cluster, tmp_path, monkeypatch):
    """Names, types and label names of every family the Python exporter has
    are the same here, except the documented absences."""
    ours = scrape_after_workload(cluster)

    monkeypatch.setattr(cl, "IMPL", "python")
    ref = Cluster(tmp_path, [WorkerSpec(nthreads=2)])
    try:
        theirs = scrape_after_workload(ref)
    finally:
        ref.close()
    monkeypatch.setattr(cl, "IMPL", "rust")

    ours_shape, theirs_shape = shape(ours), shape(theirs)
    missing = set(theirs_shape) - set(ours_shape)
    assert missing == ABSENT_ON_PURPOSE, (
        f"unexpected missing: {sorted(missing - ABSENT_ON_PURPOSE)}; "
        f"documented but present: {sorted(ABSENT_ON_PURPOSE - missing)}")
    for name, (typ, labels) in theirs_shape.items():
        if name in ABSENT_ON_PURPOSE:
            continue
        our_type, our_labels = ours_shape[name]
        assert our_type == typ, f"{name}: type {our_type} != Python's {typ}"
        if labels:  # families without samples in the Python scrape have no labels to compare
            assert our_labels == labels, f"{name}: labels {our_labels} != Python's {labels}"
    extra = set(ours_shape) - set(theirs_shape)
    assert extra <= set(OWN_FAMILIES) | {"process_threads"}, sorted(extra)


def scrape_after_workload(c: Cluster) -> dict:
    client = c.client()
    futs = run_workload(client)
    # a semaphore, so that the dask_semaphore_* families have samples
    with client.as_current():
        sem = Semaphore(max_leases=2, name=unique("shape-sem"))
        assert sem.acquire(timeout=10)
        sem.release()
    # one slow task so that processing/stealing families have had something to show
    assert client.submit(slow_inc, 1, delay=0.05).result() == 2
    fams = scrape(c.scheduler.dashboard_url("/metrics"))
    client.cancel(futs)
    return fams


def sem_value(fams: dict, family: str, name: str, suffix: str = "") -> float:
    """One semaphore's sample (its label is ``name``, which ``value``'s
    keyword arguments cannot carry)."""
    return samples(fams, family, suffix)[frozenset({("name", name)})]


def test_semaphore_metrics(cluster):
    """The dask_semaphore_* families count a semaphore's leases as Python's
    SemaphoreMetricCollector does."""
    client = cluster.client()
    name = unique("sem")
    with client.as_current():
        sem = Semaphore(max_leases=1, name=name)
    assert sem.acquire(timeout=10)
    url = cluster.scheduler.dashboard_url("/metrics")
    fams = scrape(url)
    assert sem_value(fams, "dask_semaphore_max_leases", name) == 1
    assert sem_value(fams, "dask_semaphore_active_leases", name) == 1
    assert sem_value(fams, "dask_semaphore_pending_leases", name) == 0
    assert sem_value(fams, "dask_semaphore_acquire", name, "_total") == 1
    assert sem_value(fams, "dask_semaphore_release", name, "_total") == 0
    # a second acquire waits for the only lease and gives up
    assert sem.acquire(timeout=0.5) is False
    sem.release()
    fams = scrape(url)
    assert sem_value(fams, "dask_semaphore_active_leases", name) == 0
    assert sem_value(fams, "dask_semaphore_release", name, "_total") == 1
    assert sem_value(fams, "dask_semaphore_acquire", name, "_total") == 1
    # (0 + 0) / 2, then (0 + ~0.5) / 2
    assert 0.2 <= sem_value(fams, "dask_semaphore_average_pending_lease_time_s", name) < 1.0
    sem.close()
    assert name not in {dict(k).get("name") for k in
                        samples(scrape(url), "dask_semaphore_max_leases")}


@pytest.mark.parametrize("namespace", ["myco", ""])
def test_prometheus_namespace_from_dask_config(tmp_path, namespace):
    """``distributed.dashboard.prometheus.namespace`` replaces ``dask`` in the
    exporter's family names (``myco_scheduler_workers``); an empty one drops
    it (``scheduler_workers``), as Python's ``namespace_subsystem_name``."""
    s = cl.Scheduler(tmp_path, env={"DASK_DISTRIBUTED__DASHBOARD__PROMETHEUS__NAMESPACE":
                                     namespace or "''"})
    try:
        fams = scrape(s.dashboard_url("/metrics"))
        prefix = f"{namespace}_" if namespace else ""
        assert f"{prefix}scheduler_workers" in fams, sorted(fams)
        assert f"{prefix}scheduler_tasks" in fams, sorted(fams)
        assert not [n for n in fams if n.startswith("dask_")], sorted(fams)
    finally:
        s.stop()

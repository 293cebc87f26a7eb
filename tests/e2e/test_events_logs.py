"""``log_event``/``get_events``, ``get_scheduler_logs`` and
``get_worker_logs`` through the Rust scheduler."""

import time

import pytest

from .cluster import WorkerSpec
from .helpers import unique, worker_info


def test_events_are_kept_per_topic(client):
    a, b, c = unique("topic"), unique("topic"), unique("topic")
    before = time.time()
    client.log_event(a, {"n": 1})
    client.log_event(a, "second")
    client.log_event([b, c], [1, 2])
    events = client.get_events(a)
    assert [m for _, m in events] == [{"n": 1}, "second"]
    assert all(before - 5 <= t <= time.time() + 5 for t, _ in events)
    everything = client.get_events()
    assert [list(m) for _, m in everything[b]] == [[1, 2]]
    assert [list(m) for _, m in everything[c]] == [[1, 2]]
    assert list(client.get_events(unique("never"))) == []


def test_the_scheduler_logs_workers_clients_and_graphs(cluster, client):
    """The scheduler's own events, as Python's: ``add-worker`` on ``all``
    and the worker's topic, ``add-client`` / ``remove-client`` on ``all``
    and the client's, ``update-graph`` on ``scheduler`` and the client's."""
    from .cluster import wait_until
    from .helpers import inc

    def actions(topic):
        return [m.get("action") for _, m in client.get_events(topic) if isinstance(m, dict)]

    workers = sorted(client.scheduler_info()["workers"])
    added = [m["worker"] for _, m in client.get_events("all") if m.get("action") == "add-worker"]
    assert set(workers) <= set(added)
    assert "add-worker" in actions(workers[0])
    assert "add-client" in actions(client.id)

    client.submit(inc, 1, key=unique("inc")).result(timeout=30)
    graph = [m for _, m in client.get_events(client.id) if m.get("action") == "update-graph"]
    assert graph and graph[-1]["status"] == "OK" and graph[-1]["stimulus_id"]
    assert "update-graph" in actions("scheduler")

    other = cluster.client()
    other_id = other.id
    other.close()
    # (Python's logs its remove-client twice)
    wait_until(lambda: "remove-client" in actions(other_id), 30, "the other client's events")
    assert actions(other_id)[0] == "add-client"
    gone = [m for _, m in client.get_events("all") if m.get("action") == "remove-client"]
    assert {"action": "remove-client", "client": other_id} in gone


def test_a_graph_that_cannot_be_deserialized_logs_an_update_graph_error(client):
    """As Python's: ``{"action": "update-graph", "status": "error"}`` on
    ``scheduler`` and the client's topic, and the future errs."""
    from .cluster import wait_until
    from .helpers import Unloadable, inc

    bad = client.submit(inc, Unloadable(), key=unique("unloadable"))
    with pytest.raises(Exception, match="Error during deserialization of the task graph"):
        bad.result(timeout=30)

    def errors(topic):
        return [
            m for _, m in client.get_events(topic)
            if isinstance(m, dict) and m.get("action") == "update-graph"
            and m.get("status") == "error"
        ]

    wait_until(lambda: errors("scheduler"), 10, "the error event")
    assert errors(client.id) and errors("scheduler")[-1]["stimulus_id"]


def test_update_graph_metrics_time_the_graph_as_pythons_do(client):
    """Python's ``update-graph`` metrics: the graph's counts, when it came
    and how long materializing, ordering and creating its tasks' state took.
    Python 2026.8.0 reports the ordering and the state's creation negated (it
    subtracts the wrong way round); these are the durations."""
    import dask

    from .cluster import wait_until
    from .helpers import inc

    def metrics():
        return [m["metrics"] for _, m in client.get_events(client.id)
                if isinstance(m, dict) and m.get("action") == "update-graph"
                and m.get("status") == "OK"]

    seen = len(metrics())
    before = time.time()
    parts = [dask.delayed(inc)(i, dask_key_name=unique("inc")) for i in range(50)]
    total = dask.delayed(sum)(parts, dask_key_name=unique("sum"))
    assert client.compute(total).result(timeout=30) == sum(range(1, 51))
    after = time.time()
    wait_until(lambda: len(metrics()) > seen, 10, "the update-graph event")
    m = metrics()[-1]
    assert list(m) == [
        "tasks", "new_tasks", "key_collisions", "start_timestamp_seconds",
        "materialization_duration_seconds", "ordering_duration_seconds",
        "state_initialization_duration_seconds", "duration_seconds",
    ]
    assert (m["tasks"], m["new_tasks"], m["key_collisions"]) == (51, 51, 0)
    assert before <= m["start_timestamp_seconds"] <= after
    steps = [m["materialization_duration_seconds"], m["ordering_duration_seconds"],
             m["state_initialization_duration_seconds"]]
    assert all(s > 0 for s in steps), m
    assert max(steps) <= m["duration_seconds"] <= after - before, m


def test_a_key_submitted_again_with_other_dependencies_is_a_collision(client):
    """Python's "Detected different `run_spec` for key" warning (dask issue
    9888) and ``key_collisions`` in the ``update-graph`` event's metrics:
    a key still held is submitted again with another dependency. The
    scheduler keeps its own task, so the second future gets the first result."""
    import dask

    from .cluster import wait_until
    from .helpers import add, inc

    def metrics():
        return [m["metrics"] for _, m in client.get_events(client.id)
                if isinstance(m, dict) and m.get("action") == "update-graph"
                and m.get("status") == "OK"]

    a, b, x = unique("a"), unique("b"), unique("x")
    before = len(metrics())
    first = client.compute(dask.delayed(add)(dask.delayed(inc)(1, dask_key_name=a), 10,
                                              dask_key_name=x))
    assert first.result(timeout=30) == 12
    second = client.compute(dask.delayed(add)(dask.delayed(inc)(2, dask_key_name=b), 20,
                                               dask_key_name=x))
    # the client already holds x's result, so this returns before the
    # scheduler has even seen the second graph: its event comes later
    assert second.result(timeout=30) == 12
    wait_until(lambda: len(metrics()) >= before + 2, 10, "both update-graph events")
    assert [m["key_collisions"] for m in metrics()[before:before + 2]] == [0, 1]
    warned = [text for _, text in client.get_scheduler_logs(n=200)
              if f"Detected different `run_spec` for key '{x}'" in text]
    assert warned and "old dependencies: {" + repr(a) + "}" in warned[0], warned


def test_departed_workers_and_clients_events_are_dropped_after_the_delay(make_cluster):
    """``events-cleanup-delay``: a departed worker's or client's topic loses
    its events after the delay (an autoscaled cluster's churn would keep
    them all otherwise); ``all`` keeps its record."""
    from .cluster import wait_until

    c = make_cluster(
        [WorkerSpec(name="stays"), WorkerSpec(name="goes")],
        env={"DASK_DISTRIBUTED__SCHEDULER__EVENTS_CLEANUP_DELAY": "1s"},
    )
    client = c.client()
    goes = c.address_of(c.workers[1])
    stays = c.address_of(c.workers[0])
    other = c.client()
    other_id = other.id
    assert client.get_events(goes) and client.get_events(other_id)
    other.close()
    c.kill_worker(c.workers[1])
    wait_until(lambda: not client.get_events(goes), 30, "the worker's events dropped")
    wait_until(lambda: not client.get_events(other_id), 30, "the client's events dropped")
    assert client.get_events(stays), "a worker still there keeps its events"
    actions = [m.get("action") for _, m in client.get_events("all")]
    assert "remove-worker" in actions and "remove-client" in actions


def test_events_reach_subscribers_and_are_kept(client):
    topic = unique("topic")
    got = []
    client.subscribe_topic(topic, lambda event: got.append(event))
    time.sleep(0.3)
    client.log_event(topic, "hello")
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got and got[0][1] == "hello"
    assert [m for _, m in client.get_events(topic)] == ["hello"]
    client.unsubscribe_topic(topic)


def test_scheduler_logs_newest_first(client):
    # a new client connecting is logged by the scheduler
    logs = client.get_scheduler_logs()
    assert logs, "no log lines kept"
    levels = {level for level, _ in logs}
    assert levels <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    assert any("Receive client connection" in line for _, line in logs)
    assert all(" - distributed.scheduler" in line for _, line in logs), logs
    two = client.get_scheduler_logs(n=2)
    assert two == logs[:2]


def test_scheduler_logs_hold_the_scheduler_loggers_lines_only(cluster, client):
    """As Python's handler on the ``distributed.scheduler`` logger: a line of
    ``distributed.comm.tcp`` (a connection closed before its handshake) is
    logged but not kept for ``get_scheduler_logs``."""
    import socket

    from .cluster import wait_until

    host, port = cluster.scheduler.address.rsplit("/", 1)[1].rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=5).close()
    wait_until(lambda: "closed before handshake completed" in cluster.scheduler.log_text(),
               30, "the comm line in the scheduler's log")
    logs = client.get_scheduler_logs(n=1000)
    assert not [line for _, line in logs if "closed before handshake" in line], logs
    assert any("Receive client connection" in line for _, line in logs)


def test_worker_logs(client):
    logs = client.get_worker_logs()
    assert set(logs) == set(worker_info(client))
    for lines in logs.values():
        assert any("Start worker" in msg or "Registered to" in msg for _, msg in lines)


def test_nanny_logs(make_cluster):
    cluster = make_cluster([WorkerSpec(nthreads=1, nanny=True)])
    c = cluster.client()
    c.wait_for_workers(1, timeout=60)
    logs = c.get_worker_logs(nanny=True)
    assert len(logs) == 1
    (lines,) = logs.values()
    assert any("nanny" in msg.lower() for _, msg in lines)


def _busy(seconds):
    import time as _t

    end = _t.time() + seconds
    n = 0
    while _t.time() < end:
        n += 1
    return n


def test_profile_merges_the_workers(client):
    start = time.time()
    client.gather(client.map(_busy, [1.0] * 4, pure=False))
    # workers file their samples once per profile cycle (1 s by default)
    time.sleep(2.5)
    merged = client.profile(start=start)
    assert merged["identifier"] == "root"
    assert merged["count"] > 0, "the workers sampled the busy tasks"
    per_worker = client.profile(start=start, merge_workers=False)
    assert set(per_worker) == set(worker_info(client))
    assert sum(p["count"] for p in per_worker.values()) >= merged["count"] > 0
    # only one worker's
    one = next(iter(per_worker))
    assert 0 < client.profile(start=start, workers=[one])["count"] <= merged["count"]
    # the frames of the busy function are in the tree
    def names(tree):
        yield tree["description"].get("name", "")
        for child in tree["children"].values():
            yield from names(child)

    assert "_busy" in set(names(merged))


@pytest.mark.rust_only
def test_scheduler_profile_is_refused_clearly(client):
    """There is no Python event loop in this scheduler to profile: a clear
    error, not an empty profile."""
    with pytest.raises(NotImplementedError, match="no Python event loop"):
        client.profile(scheduler=True)


def test_benchmark_hardware(client):
    out = client.benchmark_hardware()
    assert set(out) == {"disk", "memory", "network"}
    for kind in ("disk", "memory"):
        assert out[kind], f"no {kind} sizes"
        assert all(v > 0 for v in out[kind].values()), out[kind]
    # two workers make one pair for the network benchmark
    assert out["network"] and all(v > 0 for v in out["network"].values())


def test_call_stack_shows_the_running_task(client, tmp_path):
    from .cluster import wait_until
    from .helpers import sleep_until_file

    stop = tmp_path / "stop"
    f = client.submit(sleep_until_file, str(stop), 60, key=unique("stacked"))
    try:
        def stacks():
            return client.call_stack(keys=[f.key])

        found = wait_until(lambda: stacks(), 30, "the task's stack")
        [(worker, by_key)] = found.items()
        assert worker in client.scheduler_info()["workers"]
        frames = "".join(by_key[f.key])
        assert "sleep_until_file" in frames
        assert f.key in client.call_stack()[worker]
    finally:
        stop.touch()
    f.result(timeout=30)
    # nothing running: no stacks
    wait_until(lambda: client.call_stack(keys=[f.key]) == {}, 30, "no stack once done")

"""Scheduler plugins (``Client.register_plugin(SchedulerPlugin)``): started
with the scheduler object, told of transitions, graphs, workers, clients and
events, reachable as ``dask_scheduler.plugins[name]`` from
``run_on_scheduler``, removed by name. The Rust scheduler runs them in the
Python process beside it that runs ``run_on_scheduler`` functions."""

from __future__ import annotations


import pytest

from .cluster import WorkerSpec, wait_until
from .helpers import inc, unique
from .scheduler_plugin_helpers import (
    Counting,
    Downscaling,
    Failing,
    FailingStart,
    Recorder,
    StateReader,
    add_recorder,
    calls,
    graphs,
    names,
    remove,
    seen,
    tag,
)

TIMEOUT = 60


def recorded(client, name):
    return client.run_on_scheduler(calls, name)


def test_hooks_see_graphs_transitions_workers_clients_and_events(cluster, client):
    name = unique("recorder")
    client.register_plugin(Recorder(), name=name)
    assert name in client.run_on_scheduler(names)
    assert recorded(client, name)[0] == ("start", client.scheduler.address)

    key = unique("inc")
    assert client.submit(inc, 1, key=key).result(timeout=TIMEOUT) == 2
    got = recorded(client, name)
    assert ("update_graph", client.id, [key], [key]) in got
    assert ("transition", key, "processing", "memory") in got
    assert got.index(("transition", key, "released", "waiting")) < got.index(
        ("transition", key, "processing", "memory")
    )

    client.log_event(unique("topic"), {"x": 1})
    wait_until(
        lambda: any(c[0] == "log_event" and c[2] == {"x": 1} for c in recorded(client, name)),
        TIMEOUT,
        "the log_event hook",
    )

    other = cluster.client()
    other_id = other.id
    other.close()
    wait_until(
        lambda: ("remove_client", other_id) in recorded(client, name),
        TIMEOUT,
        "the remove_client hook",
    )
    assert ("add_client", other_id) in recorded(client, name)

    worker = cluster.add_worker()
    address = wait_until(
        lambda: next(
            (c[1] for c in recorded(client, name) if c[0] == "add_worker"), None
        ),
        TIMEOUT,
        "the add_worker hook",
    )
    worker.stop()
    wait_until(
        lambda: ("remove_worker", address) in recorded(client, name),
        TIMEOUT,
        "the remove_worker hook",
    )

    client.unregister_scheduler_plugin(name)
    assert name not in client.run_on_scheduler(names)
    with pytest.raises(ValueError, match="Could not find plugin"):
        client.unregister_scheduler_plugin(name)


def test_hooks_read_the_scheduler_s_tasks_and_workers(cluster, client):
    # here the hooks run a moment after the event, so they read the state
    # of then; the key is still held and the worker still there
    name = unique("reader")
    client.register_plugin(StateReader(), name=name)
    key = unique("read")
    fut = client.submit(inc, 1, key=key)
    assert fut.result(timeout=TIMEOUT) == 2
    holders = sorted(client.who_has([fut])[key])
    wait_until(lambda: ("memory", key, holders) in client.run_on_scheduler(seen, name),
               TIMEOUT, "the transition hook's lookup", context=lambda: client.run_on_scheduler(
                   seen, name))
    worker = cluster.add_worker(WorkerSpec(nthreads=3))
    try:
        wait_until(lambda: any(c[0] == "add_worker" and c[2] == 3
                               for c in client.run_on_scheduler(seen, name)),
                   TIMEOUT, "the add_worker hook's lookup")
    finally:
        worker.stop()
    client.unregister_scheduler_plugin(name)


def test_idempotent_registration_keeps_the_first_and_a_plain_one_replaces_it(client):
    name = unique("recorder")
    client.register_plugin(Recorder("first"), name=name)
    second = Recorder("second")
    second.idempotent = True  # read by register_plugin
    client.register_plugin(second, name=name)
    assert client.run_on_scheduler(tag, name) == "first"
    client.register_plugin(Recorder("third"), name=name)
    assert client.run_on_scheduler(tag, name) == "third"
    client.unregister_scheduler_plugin(name)


def test_failing_hooks_are_logged_and_the_scheduler_goes_on(cluster, client):
    name = unique("failing")
    client.register_plugin(Failing(), name=name)
    futures = client.map(inc, range(20), key=[unique("f") for _ in range(20)])
    assert client.gather(futures) == list(range(1, 21))
    extra = cluster.client()
    assert extra.submit(inc, 5).result(timeout=TIMEOUT) == 6
    extra.close()
    client.unregister_scheduler_plugin(name)
    wait_until(
        lambda: "transition hook failed on purpose" in cluster.scheduler.log_text(),
        TIMEOUT,
        "the failing hook logged",
    )


def test_a_failing_start_is_raised_to_the_client_and_nothing_is_kept(client):
    name = unique("failing-start")
    with pytest.raises(ValueError, match="start failed on purpose"):
        client.register_plugin(FailingStart(), name=name)
    assert name not in client.run_on_scheduler(names)


@pytest.mark.rust_only
def test_a_plugin_that_would_choose_workers_to_retire_is_refused_naming_the_hook(client):
    with pytest.raises(NotImplementedError, match="valid_workers_downscaling"):
        client.register_plugin(Downscaling(), name=unique("downscaling"))


def test_events_reach_the_plugin_before_a_later_run_on_scheduler(client):
    """What a client saw finish, a plugin has seen too by the time the
    client asks it (each of 20 rounds)."""
    name = unique("recorder")
    client.register_plugin(Recorder(), name=name)
    for _ in range(20):
        key = unique("r")
        client.submit(inc, 0, key=key).result(timeout=TIMEOUT)
        assert ("transition", key, "processing", "memory") in recorded(client, name)
    client.unregister_scheduler_plugin(name)


def test_add_plugin_from_a_run_on_scheduler_function_turns_its_hooks_on(client):
    name = unique("added")
    client.run_on_scheduler(add_recorder, name)
    assert client.run_on_scheduler(tag, name) == "added"
    key = unique("inc")
    assert client.submit(inc, 2, key=key).result(timeout=TIMEOUT) == 3
    got = recorded(client, name)
    assert ("transition", key, "processing", "memory") in got
    assert not any(c[0] == "start" for c in got)  # add_plugin does not start it
    client.run_on_scheduler(remove, name)
    assert name not in client.run_on_scheduler(names)
    with pytest.raises(ValueError, match="Could not find plugin"):
        client.run_on_scheduler(remove, name)


def test_update_graph_gets_the_annotations_and_priorities(client):
    name = unique("recorder")
    client.register_plugin(Recorder(), name=name)
    key = unique("inc")
    assert client.submit(inc, 1, key=key, retries=2).result(timeout=TIMEOUT) == 2
    graph = client.run_on_scheduler(graphs, name)[-1]
    assert graph["annotations"].get("retries") == {key: 2}
    assert graph["priority_keys"] == [key]
    assert graph["priority_types"] == ["tuple"]
    client.unregister_scheduler_plugin(name)


def test_a_handler_a_plugin_adds_when_started_serves_clients(client):
    prefix = unique("counting").replace("-", "_")
    client.register_plugin(Counting(prefix), name=prefix)
    futures = client.map(inc, range(5), key=[f"{prefix}-{i}" for i in range(5)])
    client.gather(futures)
    count = getattr(client.scheduler, f"{prefix}_count")
    # the transition events reach the plugin a moment after the results
    wait_until(lambda: client.sync(count, prefix=prefix) == 5, TIMEOUT, "the count")
    del futures
    wait_until(lambda: client.sync(count, prefix=prefix) == 0, TIMEOUT, "the count after release")

"""Actors (``actor=True``) through the Rust scheduler: the object lives in
one worker's memory and clients (and tasks) call its methods there. The
scheduler marks the task, tells the worker (``compute-task.actor``), places
actors by how many each worker holds, and fails an actor whose worker is
lost instead of recomputing it. Every test here also passes against the
Python scheduler (``DASK_SCHEDULER_IMPL=python``).
"""

import collections

import pytest
from distributed import Actor

from .cluster import WorkerSpec, wait_until
from .helpers import Counter, call_increment, unique, worker_info


def actors_by_worker(client) -> dict:
    """worker address -> keys of the actors living in it (asked the workers)."""
    held = client.run(lambda dask_worker: list(dask_worker.state.actors))
    return {addr: keys for addr, keys in held.items() if keys}


def test_an_actor_keeps_its_state_on_one_worker(client):
    fut = client.submit(Counter, actor=True, key=unique("counter"))
    counter = fut.result(timeout=30)
    assert isinstance(counter, Actor)
    assert [counter.increment().result(timeout=30) for _ in range(3)] == [1, 2, 3]
    assert counter.n == 3
    holders = client.who_has(fut)[fut.key]
    assert len(holders) == 1
    assert actors_by_worker(client).get(holders[0]) == [fut.key]
    client.cancel(fut)


def test_actors_are_spread_by_how_many_each_worker_holds(client):
    futs = [client.submit(Counter, actor=True, key=unique("spread")) for _ in range(4)]
    client.gather(futs)
    who = client.who_has(futs)
    per_worker = collections.Counter(who[f.key][0] for f in futs)
    assert sorted(per_worker.values()) == [2, 2], who
    client.cancel(futs)


def test_tasks_call_an_actor(client):
    fut = client.submit(Counter, actor=True, key=unique("shared"))
    counter = fut.result(timeout=30)
    calls = client.map(call_increment, [counter] * 5, pure=False)
    assert sorted(client.gather(calls)) == [1, 2, 3, 4, 5]
    assert counter.n == 5
    client.cancel(calls + [fut])


def actor_on_private_cluster(make_cluster, name):
    """A two-worker cluster of the test's own, a client, and an actor on it:
    ``(cluster, client, future, actor, address of its worker)``."""
    cluster = make_cluster([WorkerSpec(nthreads=1), WorkerSpec(nthreads=1)])
    c = cluster.client()
    c.wait_for_workers(2, timeout=60)
    fut = c.submit(Counter, actor=True, key=unique(name))
    counter = fut.result(timeout=30)
    return cluster, c, fut, counter, c.who_has(fut)[fut.key][0]


def test_an_actor_whose_worker_dies_errs_and_is_not_recomputed(make_cluster):
    cluster, c, fut, counter, addr = actor_on_private_cluster(make_cluster, "doomed")
    assert counter.increment().result(timeout=30) == 1
    doomed = next(w for w in cluster.workers if cluster.address_of(w) == addr)

    cluster.kill_worker(doomed)

    wait_until(lambda: fut.status == "error", 60, "the actor's future to err")
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
        fut.result(timeout=5)
    assert actors_by_worker(c) == {}, "not recomputed elsewhere"
    # the cluster goes on: a new actor lives on the surviving worker
    again = c.submit(Counter, actor=True, key=unique("again"))
    assert again.result(timeout=30).increment().result(timeout=30) == 1
    assert c.who_has(again)[again.key] != [addr]


def test_a_worker_holding_an_actor_is_not_retired(make_cluster):
    _, c, fut, counter, addr = actor_on_private_cluster(make_cluster, "pinned")

    assert c.retire_workers([addr]) == {}

    assert addr in worker_info(c)
    assert counter.increment().result(timeout=30) == 1

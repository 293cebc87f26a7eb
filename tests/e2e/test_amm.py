"""The Active Memory Manager with real workers: by default (as in Python)
its ``ReduceReplicas`` policy drops, every two seconds, the replicas of a
task that no dependent needs any more, leaving one; ``client.amm`` starts,
stops, queries and runs it once; Dask's config can keep it off. Every test
here also passes against the Python scheduler (``DASK_SCHEDULER_IMPL=python``).
"""

import time

import pytest

from .cluster import WorkerSpec, wait_until
from .helpers import unique

CLUSTER_WORKERS = [WorkerSpec(nthreads=1, name="amm-a"), WorkerSpec(nthreads=1, name="amm-b")]


def payload(n):
    return b"x" * n


def size(data):
    return len(data)


@pytest.fixture(scope="module")
def ab(cluster):
    names = cluster.workers_by_name()
    return names["amm-a"], names["amm-b"]


def holders(client, fut):
    return sorted(client.who_has(fut)[fut.key])


def test_a_replica_nobody_needs_is_dropped(client, ab):
    a, b = ab
    assert client.amm.running() is True
    x = client.submit(payload, 1000, workers=[a], key=unique("x"))
    # y runs on b and fetches x there: two replicas
    y = client.submit(size, x, workers=[b], key=unique("y"))
    assert y.result(timeout=30) == 1000
    # the copy on b (or a) goes within a few AMM runs; one always stays
    wait_until(lambda: len(holders(client, x)) == 1, 20, "x to be left on one worker")
    assert x.result(timeout=30) == b"x" * 1000
    client.cancel([x, y])


def test_stopped_it_keeps_replicas_until_run_once(client, ab):
    a, b = ab
    client.amm.stop()
    try:
        assert client.amm.running() is False
        x = client.submit(payload, 10, workers=[a], key=unique("kept"))
        x.result(timeout=30)
        client.replicate([x], n=2)
        assert holders(client, x) == sorted([a, b])
        time.sleep(3)  # longer than the 2 s interval
        assert holders(client, x) == sorted([a, b])
        client.amm.run_once()
        wait_until(lambda: len(holders(client, x)) == 1, 20, "run_once to drop a replica")
    finally:
        client.amm.start()
    assert client.amm.running() is True


def test_dask_config_can_keep_it_off(make_cluster):
    c = make_cluster(env={"DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START": "False"})
    assert c.client().amm.running() is False

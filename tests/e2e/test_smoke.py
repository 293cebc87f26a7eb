"""Fast sanity check: a scheduler, one worker, one client, one task."""

from .cluster import WorkerSpec
from .helpers import inc

CLUSTER_WORKERS = [WorkerSpec(nthreads=1)]


def test_submit_inc(client):
    assert client.submit(inc, 1).result(timeout=30) == 2

"""`distributed.scheduler.no-workers-timeout`: tasks that wait too long for a
worker fail (`NoWorkerError`, `NoValidWorkerError`) instead of waiting forever."""

import pytest
from distributed.scheduler import NoValidWorkerError, NoWorkerError

from .cluster import WorkerSpec, wait_until
from .helpers import inc, sleep_until_file, unique

TIMEOUT_ENV = {"DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": "1s"}


def timeout_events(client):
    return [
        msg
        for _, msg in client.get_events("scheduler")
        if isinstance(msg, dict) and msg.get("action") == "no-workers-timeout-exceeded"
    ]


def test_without_workers_tasks_and_their_dependents_fail(make_cluster):
    c = make_cluster(env=TIMEOUT_ENV)
    client = c.client()
    x = client.submit(inc, 1, key=unique("x"))
    y = client.submit(inc, x, key=unique("y"))
    with pytest.raises(NoWorkerError, match="waiting without any running workers") as info:
        x.result(timeout=30)
    assert info.value.task == x.key
    assert info.value.timeout == 1.0
    # the dependent fails through it
    with pytest.raises(NoWorkerError):
        y.result(timeout=30)
    assert y.status == "error"
    wait_until(lambda: timeout_events(client), timeout=10, what="timeout event")
    assert x.key in timeout_events(client)[0]["keys"]
    # a worker arriving later runs new work
    c.add_worker(WorkerSpec())
    assert client.submit(inc, 41, key=unique("later")).result(timeout=30) == 42


def test_unsatisfiable_restrictions_fail_while_other_work_runs(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=1, resources="CPU=1")], env=TIMEOUT_ENV)
    client = c.client()
    nowhere = "tcp://127.0.0.1:1"
    pinned = client.submit(inc, 1, workers=[nowhere], key=unique("pinned"))
    gpu = client.submit(inc, 2, resources={"GPU": 1}, key=unique("gpu"))
    free = client.submit(inc, 3, key=unique("free"))
    assert free.result(timeout=30) == 4
    with pytest.raises(NoValidWorkerError, match="matching all restrictions") as info:
        pinned.result(timeout=30)
    assert info.value.task == pinned.key
    assert info.value.worker_restrictions == {nowhere}
    assert info.value.host_restrictions == set()
    assert info.value.timeout == 1.0
    with pytest.raises(NoValidWorkerError) as info:
        gpu.result(timeout=30)
    assert info.value.resource_restrictions == {"GPU": 1}
    assert "resource_restrictions={'GPU': 1" in str(info.value)
    # the worker stays and runs work that fits it
    assert client.submit(inc, 10, key=unique("after")).result(timeout=30) == 11


def test_work_left_when_the_last_worker_dies_fails(make_cluster, tmp_path):
    c = make_cluster([WorkerSpec(nthreads=1)], env=TIMEOUT_ENV)
    client = c.client()
    started = tmp_path / "never"
    running = client.submit(sleep_until_file, str(started), 60, key=unique("running"))
    wait_until(lambda: client.processing()[c.address_of(c.workers[0])], timeout=30,
               what="the task to be processing")
    c.kill_worker(c.workers[0])
    # the worker's removal began the period without workers: NoWorkerError,
    # not the restrictions' error, although the task waited in no-worker
    with pytest.raises(NoWorkerError):
        running.result(timeout=30)

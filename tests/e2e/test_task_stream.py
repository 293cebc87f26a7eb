"""`get_task_stream` and `Client.get_task_stream`: the per-task records
Python's `TaskStreamPlugin` keeps (what ran where and when), collected from
real workers."""

import time

import pytest
from distributed import get_task_stream

from .helpers import inc, unique


def div(x, y):
    return x / y


def test_context_manager_collects_the_tasks_of_its_block(client, cluster):
    client.submit(inc, 0, key=unique("before")).result(timeout=30)
    prefix = unique("ts")
    with get_task_stream(client) as ts:
        futs = client.map(inc, range(20), key=[f"{prefix}-{i}" for i in range(20)])
        assert client.gather(futs) == list(range(1, 21))
    keys = sorted(r["key"] for r in ts.data)
    # exactly the block's tasks: not the one before it
    assert keys == sorted(f"{prefix}-{i}" for i in range(20))
    workers = set(cluster.admin().scheduler_info()["workers"])
    for r in ts.data:
        assert r["worker"] in workers
        assert r["status"] == "OK"
        assert r["typename"] == "int"
        assert "op" not in r and "run_id" not in r
        (ss,) = [s for s in r["startstops"] if s["action"] == "compute"]
        assert ss["start"] <= ss["stop"] <= time.time() + 5
    # the client renders these into the dashboard's task-stream rectangles
    from distributed.diagnostics.task_stream import rectangles

    rects = rectangles(ts.data)
    assert len(rects["start"]) >= 20


def test_client_get_task_stream_by_count_and_time(client):
    client.get_task_stream()  # starts recording (as in Python)
    prefix = unique("tsc")
    futs = client.map(inc, range(5), key=[f"{prefix}-{i}" for i in range(5)])
    client.gather(futs)
    last = client.get_task_stream(count=3)
    assert len(last) == 3
    assert {r["key"] for r in last} <= {f"{prefix}-{i}" for i in range(5)}
    recent = client.get_task_stream(start="60s")
    assert {f"{prefix}-{i}" for i in range(5)} <= {r["key"] for r in recent}
    assert len(client.get_task_stream(start=time.time() + 3600)) == 0


def test_erred_tasks_are_in_the_stream(client):
    key = unique("boom")
    with get_task_stream(client) as ts:
        f = client.submit(div, 1, 0, key=key)
        with pytest.raises(ZeroDivisionError):
            f.result(timeout=30)
    (r,) = [r for r in ts.data if r["key"] == key]
    assert r["status"] == "error"
    assert any(s["action"] == "compute" for s in r["startstops"])

"""The dashboard's info pages beside the workers table: a worker, a task,
their call stacks, a worker's logs, the scheduler's logs and the exceptions
(Python's ``distributed.http.scheduler.info`` routes). Addresses and keys
go in the path URL-escaped, keys as ``str(key)``, as Python's pages link
them. These tests pass against the Python scheduler too.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from distributed import wait

from .cluster import WorkerSpec
from .helpers import div, inc, sleep_until_file, unique

CLUSTER_WORKERS = [WorkerSpec(nthreads=1, name="info-a"), WorkerSpec(nthreads=1, name="info-b")]
TIMEOUT = 60


def get(cluster, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(cluster.scheduler.dashboard_url(path), timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def esc(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def until_processing(client, future):
    deadline = time.monotonic() + TIMEOUT
    while not any(future.key in keys for keys in client.processing().values()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)


def test_a_worker_page_lists_its_data(cluster, client):
    a = cluster.workers_by_name()["info-a"]
    x = client.submit(inc, 1, key=unique("held"), workers=[a])
    wait(x, timeout=TIMEOUT)
    status, body = get(cluster, f"/info/worker/{esc(a)}.html")
    assert status == 200
    assert a in body and x.key in body
    assert get(cluster, f"/info/worker/{esc('tcp://127.0.0.1:1')}.html")[0] == 404


def test_a_task_page_shows_its_state_and_relatives(cluster, client):
    x = client.submit(inc, 1, key=unique("dep"))
    y = client.submit(inc, x, key=unique("dependent"))
    wait(y, timeout=TIMEOUT)
    status, body = get(cluster, f"/info/task/{esc(y.key)}.html")
    assert status == 200
    assert y.key in body and "memory" in body
    assert x.key in body  # a dependency
    # the result's type name
    assert re.search(r"<th>\s*Type\s*</th>\s*<td>\s*int\s*</td>", body), body
    status, body = get(cluster, f"/info/task/{esc(x.key)}.html")
    assert status == 200 and y.key in body  # a dependent
    assert get(cluster, f"/info/task/{esc(unique('nothing'))}.html")[0] == 404


def test_a_task_page_shows_its_transition_log(cluster, client):
    """Python's task page ends with the task's story: a row per transition
    (time, key, start, finish, stimulus id) and one per recommendation."""
    import dask

    # one graph, so that x's completion is what makes y runnable (two
    # submissions would race: x could finish before y is known)
    x, y = unique("logged"), unique("logged-after")
    fut = client.compute(dask.delayed(inc)(dask.delayed(inc)(1, dask_key_name=x),
                                           dask_key_name=y))
    assert fut.result(timeout=TIMEOUT) == 3
    status, body = get(cluster, f"/info/task/{esc(x)}.html")
    assert status == 200
    log = body[body.index("Transition Log"):]
    cells = [c.strip() for c in re.findall(r"<td>(.*?)</td>", log, re.S)]
    rows = [cells[i:i + 7] for i in range(0, len(cells), 7)]
    moves = [(r[2], r[3]) for r in rows if f">{x}<" in r[1]]
    for move in [("released", "waiting"), ("waiting", "processing"), ("processing", "memory")]:
        assert move in moves, (move, rows)
    # x's completion recommended that y be computed: a recommendation row
    assert any(f">{y}<" in r[5] and r[6] == "processing" for r in rows), rows
    # the submission's stimulus id, as Python's update_graph names it, then
    # the worker's for the completion
    stimuli = {(r[2], r[3]): r[4] for r in rows if f">{x}<" in r[1]}
    assert stimuli[("released", "waiting")].startswith("update-graph-"), stimuli
    assert stimuli[("processing", "memory")].startswith("task-finished-"), stimuli
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0][0]), rows[0]


def test_a_tuple_key_s_page_is_found_by_its_str(cluster, client):
    key = (unique("tuple"), 3)
    x = client.submit(inc, 1, key=key)
    wait(x, timeout=TIMEOUT)
    status, body = get(cluster, f"/info/task/{esc(str(key))}.html")
    assert status == 200 and "memory" in body


def test_exceptions_and_a_raised_task_s_page(cluster, client):
    bad = client.submit(div, 1, 0, key=unique("raises"))
    wait(bad, timeout=TIMEOUT)
    assert bad.status == "error"
    status, body = get(cluster, "/info/main/exceptions.html")
    assert status == 200
    assert bad.key in body and "ZeroDivisionError" in body
    status, body = get(cluster, f"/info/task/{esc(bad.key)}.html")
    assert status == 200 and "erred" in body and "ZeroDivisionError" in body


def test_call_stacks_of_a_worker_and_of_a_task(cluster, client, tmp_path):
    stop = tmp_path / "stop"
    b = cluster.workers_by_name()["info-b"]
    blocked = client.submit(sleep_until_file, str(stop), key=unique("stuck"), workers=[b])
    try:
        until_processing(client, blocked)
        status, body = get(cluster, f"/info/call-stacks/{esc(b)}.html")
        assert status == 200 and "sleep_until_file" in body, body[-2000:]
        status, body = get(cluster, f"/info/call-stack/{esc(blocked.key)}.html")
        assert status == 200 and "sleep_until_file" in body, body[-2000:]
    finally:
        stop.touch()
    wait(blocked, timeout=TIMEOUT)


def test_scheduler_and_worker_logs(cluster):
    status, body = get(cluster, "/info/main/logs.html")
    assert status == 200 and "Register worker" in body
    a = cluster.workers_by_name()["info-a"]
    status, body = get(cluster, f"/info/logs/{esc(a)}.html")
    assert status == 200 and "Registered to" in body


@pytest.mark.rust_only
def test_the_workers_table_links_each_worker_s_page(cluster):
    status, body = get(cluster, "/info/main/workers.html")
    assert status == 200
    for address in cluster.workers_by_name().values():
        assert f'href="../worker/{esc(address)}.html"' in body

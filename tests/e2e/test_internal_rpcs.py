"""The scheduler RPCs that distributed's own parts call rather than a
``Client`` method: ``get_task_prefix_states`` (the dashboard),
``set_restrictions`` (the P2P shuffle's scheduler plugin) and ``add_keys``
(workers, "from time to time"). Each is called over the RPC as those parts
call it. They pass against the Python scheduler too.
"""

from __future__ import annotations

import time
import uuid

from distributed import wait

from .cluster import WorkerSpec
from .helpers import inc, sleep_until_file, where_am_i

CLUSTER_WORKERS = [WorkerSpec(nthreads=1, name="rpc-a"), WorkerSpec(nthreads=1, name="rpc-b")]
TIMEOUT = 60


def numbered(prefix: str) -> str:
    """A key whose prefix (``key_split``) is ``prefix``."""
    return f"{prefix}-{uuid.uuid4().int % 10**12}"


def prefix_states(client) -> dict:
    return client.sync(client.scheduler.get_task_prefix_states)


def wait_for_prefix(client, prefix: str, state: str) -> None:
    """Until one task of ``prefix`` is in ``state`` (the scheduler learns of a
    submitted task a moment after the client)."""
    deadline = time.monotonic() + TIMEOUT
    while prefix_states(client).get(prefix, {}).get(state) != 1:
        assert time.monotonic() < deadline, prefix_states(client)
        time.sleep(0.02)


def test_task_prefix_states_count_each_prefix_s_tasks(client, tmp_path):
    stop = tmp_path / "stop"
    done = client.submit(inc, 1, key=numbered("incprefix"))
    wait(done, timeout=TIMEOUT)
    blocked = client.submit(sleep_until_file, str(stop), key=numbered("blockprefix"))
    try:
        wait_for_prefix(client, "blockprefix", "processing")
        got = prefix_states(client)
        assert got["incprefix"] == {
            "memory": 1, "erred": 0, "released": 0, "processing": 0, "waiting": 0,
        }
        assert got["blockprefix"]["processing"] == 1
    finally:
        stop.touch()
    assert blocked.result(timeout=TIMEOUT) is None


def test_set_restrictions_moves_a_waiting_task(cluster, client, tmp_path):
    names = cluster.workers_by_name()
    a, b = names["rpc-a"], names["rpc-b"]
    stop = tmp_path / "stop"
    dep = client.submit(sleep_until_file, str(stop), result=1, key=numbered("dep"), workers=[a])
    task = client.submit(where_am_i, dep, key=numbered("where"), workers=[a])
    try:
        wait_for_prefix(client, "where", "waiting")
        client.sync(client.scheduler.set_restrictions, worker={task.key: [b]})
    finally:
        stop.touch()
    assert task.result(timeout=TIMEOUT) == b
    # an unknown key is a KeyError, as in Python
    try:
        client.sync(client.scheduler.set_restrictions, worker={"no-such-key": b})
    except KeyError:
        pass
    else:
        raise AssertionError("set_restrictions on an unknown key did not fail")


def test_add_keys_from_an_unknown_worker_and_of_an_unknown_key(cluster, client):
    x = client.submit(inc, 1, key=numbered("held"), workers=[cluster.workers_by_name()["rpc-a"]])
    wait(x, timeout=TIMEOUT)
    holders = client.who_has([x])[x.key]
    reply = client.sync(client.scheduler.add_keys, worker="tcp://127.0.0.1:1", keys=[x.key])
    assert reply == "not found"
    b = cluster.workers_by_name()["rpc-b"]
    assert client.sync(client.scheduler.add_keys, worker=b, keys=["never-heard-of"]) == "OK"
    assert client.who_has([x])[x.key] == holders
    assert x.result(timeout=TIMEOUT) == 2

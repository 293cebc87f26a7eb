"""Issue 2, point 2: futures (submit, map, gather, dedup, dependencies, release, cancel)."""

import os
import time

import pytest
from distributed import CancelledError, as_completed, wait

from .cluster import wait_until
from .helpers import (
    add,
    inc,
    scheduler_task_keys,
    slow_inc,
    sleep_until_file,
    touch_then_sleep_until_file,
    unique,
    wait_released,
    worker_data_keys,
)


def record_call(path, x):
    """inc(x), appending a line to ``path`` for every execution."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x + 1


def total(*xs):
    return sum(xs)


def test_submit_result(client):
    assert client.submit(inc, 1).result(timeout=30) == 2
    assert client.submit(add, 2, y=3).result(timeout=30) == 5
    f = client.submit(inc, 10, key=unique("named"))
    assert f.result(timeout=30) == 11
    assert f.status == "finished"
    assert f.done()


def test_map_20000_gather(client):
    n = 20_000
    futures = client.map(inc, range(n))
    assert len({f.key for f in futures}) == n
    results = client.gather(futures)
    assert results == list(range(1, n + 1))
    direct = client.gather(futures, direct=True)
    assert sum(direct) == n * (n + 1) // 2
    del futures, results, direct


def test_pure_deduplication(client, tmp_path):
    log = tmp_path / "calls.txt"
    a = client.submit(record_call, str(log), 7, pure=True)
    b = client.submit(record_call, str(log), 7, pure=True)
    assert a.key == b.key
    assert a.result(timeout=30) == b.result(timeout=30) == 8
    assert log.read_text().split() == ["7"], "a pure task must run exactly once"

    c = client.submit(record_call, str(log), 7, pure=False)
    d = client.submit(record_call, str(log), 7, pure=False)
    assert len({a.key, c.key, d.key}) == 3
    assert client.gather([c, d]) == [8, 8]
    assert log.read_text().split() == ["7", "7", "7"]


def test_dependencies(client):
    x = client.submit(inc, 1)
    y = client.submit(add, x, 10)
    z = client.submit(total, x, y, 100)
    chain = x
    for _ in range(20):
        chain = client.submit(inc, chain)
    assert z.result(timeout=30) == 2 + 12 + 100
    assert chain.result(timeout=30) == 22
    assert client.submit(total, *client.map(inc, range(50))).result(timeout=30) == sum(range(1, 51))


def test_wait_and_as_completed(client):
    futures = client.map(slow_inc, range(20), delay=0.05, pure=False)
    done, not_done = wait(futures, timeout=30)
    assert len(done) == 20 and not not_done
    assert all(f.status == "finished" for f in futures)

    futures = client.map(slow_inc, range(20), delay=0.05, pure=False)
    seen = []
    for future, result in as_completed(futures, with_results=True, timeout=30):
        seen.append(result)
        assert future.result() == result
    assert sorted(seen) == list(range(1, 21))

    first = wait(client.map(slow_inc, range(4), delay=0.01, pure=False),
                 return_when="FIRST_COMPLETED", timeout=30)
    assert len(first.done) >= 1


def test_release_frees_keys_on_workers_and_scheduler(client):
    keys = [unique(f"release-{i}") for i in range(20)]
    futures = client.map(inc, range(20), key=keys)
    wait(futures, timeout=30)
    on_workers = set().union(*worker_data_keys(client).values())
    assert set(keys) <= on_workers
    assert set(keys) <= scheduler_task_keys(client)

    del futures
    wait_released(client, keys)


def test_two_clients_share_a_key(cluster, client):
    key = unique("shared")
    other = cluster.client(set_as_default=False)
    try:
        a = client.submit(inc, 41, key=key)
        assert a.result(timeout=30) == 42
        b = other.submit(inc, 41, key=key)  # same key, same task: shares A's result
        assert b.key == a.key
        assert b.result(timeout=30) == 42

        # A lets go; B still holds the key, so the data stays
        del a
        time.sleep(0.5)
        assert key in scheduler_task_keys(client)
        assert b.result(timeout=30) == 42
        assert other.gather(b) == 42
        assert any(key in ks for ks in worker_data_keys(client).values())

        # B lets go too: now it is forgotten everywhere
        del b
        wait_released(client, [key])
    finally:
        other.close(timeout=10)


def test_cancel_running_and_waiting_tasks(client, tmp_path):
    stop = str(tmp_path / "stop")
    started = str(tmp_path / "started")
    try:
        running = client.submit(touch_then_sleep_until_file, started, stop, 60, 1,
                                key=unique("running"))
        waiting = client.submit(inc, running, key=unique("waiting"))
        dependent = client.submit(add, waiting, 1, key=unique("dependent"))
        wait_until(lambda: os.path.exists(started), 30, "the long task to start")
        assert waiting.status == "pending"

        # cancelling the running task cancels its dependents
        client.cancel([running])
        for f in (running, waiting, dependent):
            wait_until(lambda: f.status == "cancelled", 10, f"{f.key} to be cancelled")
            assert f.cancelled()
            with pytest.raises(CancelledError):
                f.result(timeout=10)

        # cancelling a waiting task cancels its dependents and leaves its dependency alone
        root = client.submit(sleep_until_file, stop, 60, 5, key=unique("root"))
        middle = client.submit(inc, root, key=unique("middle"))
        leaf = client.submit(inc, middle, key=unique("leaf"))
        middle.cancel()
        for f in (middle, leaf):
            wait_until(lambda: f.status == "cancelled", 10, f"{f.key} to be cancelled")
            with pytest.raises(CancelledError):
                f.result(timeout=10)
        assert root.status == "pending"
        open(stop, "w").close()
        assert root.result(timeout=30) == 5
        # the scheduler forgets every cancelled task
        wait_released(client, [f.key for f in (running, waiting, dependent, middle, leaf)])
        # the scheduler still works normally for new work
        assert client.submit(inc, root).result(timeout=30) == 6
    finally:
        open(stop, "w").close()


def write_file_after(path, delay):
    time.sleep(delay)
    with open(path, "w") as f:
        f.write("done")
    return path


def test_fire_and_forget_runs_after_the_client_is_gone(cluster, client, tmp_path):
    """``fire_and_forget``: the task runs although its only client closes at
    once, and the scheduler forgets it when it is done."""
    from distributed import fire_and_forget

    target = tmp_path / "fired"
    other = cluster.client(set_as_default=False)
    key = unique("fired")
    fire_and_forget(other.submit(write_file_after, str(target), 0.5, key=key))
    other.close()
    wait_until(target.exists, 30, "the forgotten task to run")
    assert target.read_text() == "done"
    wait_released(client, [key])


def reschedule_once(marker):
    """Raise ``Reschedule`` the first time (the scheduler places the task
    again), return the number of attempts the second time."""
    from distributed import Reschedule

    attempts = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
    with open(marker, "w") as f:
        f.write(str(attempts))
    if attempts == 1:
        raise Reschedule()
    return attempts


def test_a_task_raising_reschedule_runs_again(client, tmp_path):
    marker = str(tmp_path / "attempts")
    f = client.submit(reschedule_once, marker, key=unique("resched"), pure=False)
    assert f.result(timeout=30) == 2
    assert client.submit(inc, f).result(timeout=30) == 3

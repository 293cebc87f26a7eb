"""Published datasets, ``Variable`` and ``Event`` through the Rust scheduler,
shared between two real clients, with real workers.

The scheduler holds a published dataset's or a variable's futures for a
pseudo-client (``published-<name>``, ``variable-<name>``), so they outlive
the client that made them; dropping the dataset or variable releases them.
"""

import threading
import time

import dask.array as da
import numpy as np
import pytest
from distributed import Event, Lock, MultiLock, Queue, Semaphore, Variable, futures_of

from .cluster import wait_until
from .helpers import inc, scheduler_task_keys, unique


@pytest.fixture(scope="module")
def other(cluster):
    """A second client on the same scheduler."""
    return cluster.client()


# --------------------------------------------------------------------------
# publish_dataset


def test_published_collection_is_shared_and_outlives_its_future(client, other):
    name = unique("ds")
    x = client.persist(da.arange(100, chunks=10))
    client.publish_dataset(x, name=name)
    assert name in other.list_datasets()
    y = other.get_dataset(name)
    np.testing.assert_array_equal(other.compute(y).result(timeout=60), np.arange(100))
    assert int(other.compute((y + 1).sum()).result(timeout=60)) == sum(range(1, 101))
    # the publishing client lets go: the dataset still holds the keys
    keys = {f.key for f in futures_of(x)}
    del x
    time.sleep(0.5)
    assert keys <= scheduler_task_keys(client)
    np.testing.assert_array_equal(other.compute(other.get_dataset(name)).result(timeout=60), np.arange(100))
    # unpublished, and nobody else holds them: forgotten
    del y
    client.unpublish_dataset(name)
    assert name not in client.list_datasets()
    wait_until(lambda: not (keys & scheduler_task_keys(client)), 15,
               "the unpublished dataset's keys to be forgotten")


def test_publish_twice_needs_override(client, other):
    name = unique("ds")
    client.publish_dataset(client.submit(inc, 1), name=name)
    with pytest.raises(KeyError, match="already exists"):
        client.publish_dataset(client.submit(inc, 2), name=name)
    assert other.get_dataset(name).result(timeout=30) == 2
    client.publish_dataset(client.submit(inc, 10), name=name, override=True)
    assert other.get_dataset(name).result(timeout=30) == 11
    client.unpublish_dataset(name)


def test_get_missing_dataset(client):
    name = unique("missing")
    with pytest.raises(KeyError):
        client.get_dataset(name)
    assert client.get_dataset(name, default="fallback") == "fallback"


def test_datasets_mapping_and_plain_data(client, other):
    a, b = unique("a"), unique("b")
    client.datasets[a] = {"plain": [1, 2, 3]}
    client.publish_dataset(**{b: client.submit(inc, 41)})
    names = other.list_datasets()
    assert a in names and b in names
    assert list(names) == sorted(names, key=str)
    assert other.datasets[a] == {"plain": [1, 2, 3]}
    assert other.datasets[b].result(timeout=30) == 42
    del client.datasets[a]
    client.unpublish_dataset(b)
    assert a not in other.list_datasets() and b not in other.list_datasets()


def test_publish_right_after_persist_waits_for_the_graph(client, other):
    """The flush on the client's stream makes the scheduler handle the
    persist before the publish, so the dataset holds the new keys (the
    collections are built on ``client`` explicitly: the default client is
    whichever connected last)."""
    name = unique("ds")
    for i in range(5):
        x = client.persist(client.persist(da.ones(50, chunks=5)) + i)
        client.publish_dataset(x, name=name, override=True)
        del x
        assert int(other.compute(other.get_dataset(name).sum()).result(timeout=60)) == 50 * (1 + i)
    client.unpublish_dataset(name)


# --------------------------------------------------------------------------
# Variable


def test_variable_plain_value(client, other):
    name = unique("var")
    Variable(name, client=client).set({"n": 5, "s": "text"})
    assert Variable(name, client=other).get(timeout=10) == {"n": 5, "s": "text"}
    Variable(name, client=client).set(6)
    assert Variable(name, client=other).get(timeout=10) == 6


def test_variable_get_times_out_when_unset(other):
    v = Variable(unique("unset"), client=other)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.5)
    assert time.monotonic() - start < 10


def test_variable_get_waits_for_the_set(client, other):
    name = unique("var")
    got = {}

    def getter():
        got["value"] = Variable(name, client=other).get(timeout=30)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "get returned before the variable was set"
    Variable(name, client=client).set("now")
    t.join(30)
    assert got.get("value") == "now"


def test_variable_shares_a_future_and_releases_it_when_replaced(client, other):
    name = unique("var")
    v = Variable(name, client=client)
    fut = client.submit(inc, 100, key=unique("held-by-variable"))
    v.set(fut)
    key = fut.key
    del fut
    time.sleep(0.3)
    assert key in scheduler_task_keys(client), "the variable holds the future"
    got = Variable(name, client=other).get(timeout=10)
    assert got.result(timeout=30) == 101
    # replaced by a value: the variable lets go; the other client still holds it
    v.set(0)
    time.sleep(0.3)
    assert key in scheduler_task_keys(client)
    del got
    wait_until(lambda: key not in scheduler_task_keys(client), 15,
               "the replaced future to be forgotten")


def test_variable_delete_releases_its_future(client):
    name = unique("var")
    v = Variable(name, client=client)
    fut = client.submit(inc, 7, key=unique("deleted-with-variable"))
    v.set(fut)
    key = fut.key
    del fut
    v.delete()
    wait_until(lambda: key not in scheduler_task_keys(client), 15,
               "the deleted variable's future to be forgotten")
    with pytest.raises(TimeoutError):
        Variable(name, client=client).get(timeout=0.2)


def test_variable_erred_future(client, other):
    name = unique("var")

    def fail():
        raise ValueError("variable boom")

    Variable(name, client=client).set(client.submit(fail, pure=False))
    got = Variable(name, client=other).get(timeout=10)
    with pytest.raises(ValueError, match="variable boom"):
        got.result(timeout=30)


# --------------------------------------------------------------------------
# Event


def test_event_set_wait_clear(client, other):
    name = unique("ev")
    e, f = Event(name, client=client), Event(name, client=other)
    assert not f.is_set()
    assert f.wait(timeout=0.2) is False
    e.set()
    assert f.is_set()
    assert f.wait(timeout=5) is True
    e.clear()
    assert not f.is_set()
    assert f.wait(timeout=0.2) is False


def test_event_wakes_a_waiter(client, other):
    name = unique("ev")
    result = {}

    def waiter():
        result["woke"] = Event(name, client=other).wait(timeout=30)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "wait returned before the event was set"
    Event(name, client=client).set()
    t.join(30)
    assert result.get("woke") is True


def test_event_used_from_tasks(client):
    """Workers use the same scheduler routes: a task waits for an event a
    client sets."""
    name = unique("ev")

    def wait_for_go(name):
        from distributed import Event

        return Event(name).wait(timeout=30)

    fut = client.submit(wait_for_go, name, pure=False)
    time.sleep(0.5)
    assert not fut.done()
    Event(name, client=client).set()
    assert fut.result(timeout=30) is True


# --------------------------------------------------------------------------
# Lock and Semaphore


def lock_on(client, name):
    """A ``Lock`` that talks to the scheduler through ``client``."""
    return Lock(name, scheduler_rpc=client.scheduler, loop=client.loop)


def test_lock_excludes_a_second_holder(client, other):
    name = unique("lock")
    a, b = lock_on(client, name), lock_on(other, name)
    assert a.acquire(timeout=5)
    assert a.locked() and b.locked()
    assert b.acquire(timeout=0.3) is False
    a.release()
    assert not b.locked()
    assert b.acquire(timeout=5)
    b.release()


def test_lock_waiter_gets_it_when_released(client, other):
    name = unique("lock")
    a = lock_on(client, name)
    assert a.acquire(timeout=5)
    got = {}

    def waiter():
        got["acquired"] = b.acquire(timeout=30)
        got["at"] = time.monotonic()

    b = lock_on(other, name)
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the second acquire did not wait"
    released = time.monotonic()
    a.release()
    t.join(30)
    assert got.get("acquired") is True
    assert got["at"] >= released
    b.release()


def test_semaphore_limits_concurrent_tasks(client):
    """Tasks on the workers share a semaphore of two leases: never more than
    two run the guarded section at once."""
    name = unique("sem")
    sem = Semaphore(max_leases=2, name=name)

    def guarded(i, sem):
        import time as _t

        with sem:
            _t.sleep(0.2)
            # leases held now, this one included
            return sem.get_value()

    values = client.gather(client.map(guarded, range(8), sem=sem, pure=False))
    assert all(1 <= v <= 2 for v in values), values
    assert max(values) == 2, "two leases were held at once at some point"
    assert sem.get_value() == 0
    sem.close()


def test_semaphore_inconsistent_max_leases(client):
    name = unique("sem")
    Semaphore(max_leases=2, name=name).register()
    with pytest.raises(ValueError, match="Inconsistent max leases"):
        Semaphore(max_leases=3, name=name).register()


def test_semaphore_lease_of_a_dead_holder_times_out(make_cluster):
    """A lease that nobody refreshes is taken back after the lease timeout."""
    import dask

    with dask.config.set({"distributed.scheduler.locks.lease-timeout": "1s",
                          "distributed.scheduler.locks.lease-validation-interval": "100ms"}):
        cluster = make_cluster()
        c1 = cluster.client()
        c2 = cluster.client()
        name = unique("sem")
        s1 = Semaphore(max_leases=1, name=name, scheduler_rpc=c1.scheduler, loop=c1.loop)
        s1.refresh_leases = False  # the holder stops refreshing, as if it died
        assert s1.acquire(timeout=5)
        s2 = Semaphore(max_leases=1, name=name, scheduler_rpc=c2.scheduler, loop=c2.loop)
        start = time.monotonic()
        assert s2.acquire(timeout=20), "the stale lease was never taken back"
        assert time.monotonic() - start < 15
        s2.release()
        c1.close()
        c2.close()


# --------------------------------------------------------------------------
# Queue


def test_queue_passes_values_and_futures(client, other):
    name = unique("q")
    q1, q2 = Queue(name, client=client), Queue(name, client=other)
    q1.put(1)
    q1.put({"two": 2})
    fut = client.submit(inc, 2, key=unique("queued"))
    q1.put(fut)
    assert q2.qsize() == 3
    assert q2.get(timeout=5) == 1
    assert q2.get(timeout=5) == {"two": 2}
    got = q2.get(timeout=5)
    assert got.result(timeout=30) == 3
    assert q2.qsize() == 0
    with pytest.raises(TimeoutError):
        q2.get(timeout=0.3)


def test_queue_get_waits_and_batches(client, other):
    name = unique("q")
    q1, q2 = Queue(name, client=client), Queue(name, client=other)
    got = {}

    def getter():
        got["v"] = q2.get(timeout=30)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "get returned from an empty queue"
    q1.put("late")
    t.join(30)
    assert got.get("v") == "late"
    for i in range(4):
        q1.put(i)
    assert q2.get(batch=2) == [0, 1]
    assert q2.get(batch=True) == [2, 3]
    assert q2.get(batch=True) == []


def test_bounded_queue_put_waits_for_room(client, other):
    name = unique("q")
    q1, q2 = Queue(name, maxsize=1, client=client), Queue(name, client=other)
    q1.put("a")
    with pytest.raises(TimeoutError):
        q1.put("b", timeout=0.3)
    done = {}

    def putter():
        q1.put("c", timeout=30)
        done["put"] = True

    t = threading.Thread(target=putter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "put into a full queue did not wait"
    assert q2.get(timeout=5) == "a"
    t.join(30)
    assert done.get("put")
    assert q2.get(timeout=5) == "c"


def test_queue_holds_its_futures_until_taken(client, other):
    name = unique("q")
    q1, q2 = Queue(name, client=client), Queue(name, client=other)
    fut = client.submit(inc, 5, key=unique("in-queue"))
    q1.put(fut)
    key = fut.key
    del fut
    time.sleep(0.3)
    assert key in scheduler_task_keys(client), "the queue holds the future"
    got = q2.get(timeout=5)
    assert got.result(timeout=30) == 6
    del got
    wait_until(lambda: key not in scheduler_task_keys(client), 15,
               "the taken future to be forgotten once its getter lets go")


# --------------------------------------------------------------------------
# MultiLock


def test_multilock_takes_locks_together(client, other):
    x, y, z = unique("x"), unique("y"), unique("z")
    a = MultiLock([x, y], client=client)
    b = MultiLock([y, z], client=other)
    assert a.acquire(timeout=5)
    assert b.acquire(timeout=0.3) is False, "y is held"
    got = {}

    def waiter():
        got["b"] = b.acquire(timeout=30)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "b did not wait for y"
    a.release()
    t.join(30)
    assert got.get("b") is True
    # only one of several: x is free again
    c = MultiLock([y, x], client=client)
    assert c.acquire(timeout=5, num_locks=1)
    b.release()
    c.release()


@pytest.mark.rust_only
def test_odd_timeouts_are_not_a_crash(client):
    """NaN, infinite and huge timeouts are read as numbers of seconds (NaN
    as zero); the scheduler keeps serving."""
    name = unique("ev")
    sync = client.sync
    assert sync(client.scheduler.event_wait, name=name, timeout=float("nan")) is False
    client.sync(client.scheduler.event_set, name=name)
    assert sync(client.scheduler.event_wait, name=name, timeout=float("inf")) is True
    assert sync(client.scheduler.event_wait, name=name, timeout=1e300) is True
    with pytest.raises(TimeoutError):
        sync(client.scheduler.variable_get, name=unique("var"), timeout=-5)
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


# --------------------------------------------------------------------------
# set_metadata / get_metadata


def test_metadata_is_shared_between_clients(client, other):
    name = unique("meta")
    client.set_metadata([name, "y"], 123)
    client.set_metadata([name, "w", "z"], 456)
    assert other.get_metadata(name) == {"y": 123, "w": {"z": 456}}
    assert other.get_metadata([name, "w"]) == {"z": 456}
    assert client.get_metadata([name, "nope"], default=None) is None
    assert client.get_metadata([name, "nope"], default=7) == 7
    with pytest.raises(KeyError):
        client.get_metadata([name, "nope"])
    # a non-dict on the path is replaced by a dict
    other.set_metadata([name, "y", "deeper"], [1, 2])
    assert client.get_metadata([name, "y"]) == {"deeper": (1, 2)}  # msgpack gives tuples
    # an empty path names nothing to set: Python indexes keys[-1]
    with pytest.raises(IndexError):
        client.set_metadata([], 1)


def test_metadata_named_like_a_task_goes_with_it(client):
    f = client.submit(inc, 1, key=unique("metatask"))
    assert f.result(timeout=30) == 2
    key = f.key
    client.set_metadata(key, {"owner": "me"})
    assert client.get_metadata(key) == {"owner": "me"}
    del f
    wait_until(lambda: client.get_metadata(key, default=None) is None, 15,
               "the task's metadata to go with the task")

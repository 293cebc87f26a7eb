"""Issue 5, point 3: graceful retirement of workers (``Client.retire_workers``,
the ``retire_workers`` RPC): every key only a retiring worker holds is
replicated elsewhere before the worker goes, so futures, gathers and dependent
computations keep working and scattered data (which cannot be recomputed) is
never lost. A worker whose data has nowhere to go is not retired.
"""

from __future__ import annotations

from pathlib import Path

from distributed import wait

from .cluster import WorkerSpec, wait_until
from .helpers import inc, sleep_until_file, slow_inc, unique, where_am_i


def holders(client, futures) -> dict:
    """key -> set of worker addresses holding it (scheduler's view)."""
    return {k: set(v) for k, v in client.who_has(futures).items()}


def add_all(*xs):
    return sum(xs)


def put_data_on(client, addr, n_computed=12, n_scattered=4):
    """Computed results and scattered data that only ``addr`` holds."""
    tag = unique("r")
    computed = [
        client.submit(inc, i, workers=[addr], key=f"{tag}-c-{i}") for i in range(n_computed)
    ]
    payloads = [f"{tag}-payload-{i}" for i in range(n_scattered)]
    scattered = client.scatter(payloads, workers=[addr])
    wait(computed + scattered, timeout=60)
    before = holders(client, computed + scattered)
    assert all(h == {addr} for h in before.values()), before
    return computed, scattered, payloads


def test_retire_moves_unique_data_then_closes_the_worker(make_cluster):
    c = make_cluster([WorkerSpec(name="a", nthreads=1), WorkerSpec(name="b", nthreads=1),
                      WorkerSpec(name="c", nthreads=1)])
    client = c.client()
    addrs = c.workers_by_name()
    a = addrs["a"]
    computed, scattered, payloads = put_data_on(client, a)

    retired = client.retire_workers([a])  # close_workers=True, like Client's default

    assert list(retired) == [a]
    assert retired[a]["name"] == "a"
    # Right after the call every key is already held by a remaining worker:
    # nothing was lost and had to be recomputed.
    after = holders(client, computed + scattered)
    assert set(after) == {f.key for f in computed + scattered}
    for key, where in after.items():
        assert where and a not in where, (key, where)
        assert where <= {addrs["b"], addrs["c"]}
    # Futures, gather and dependent work on the moved data.
    assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(12)]
    assert client.gather(scattered) == payloads
    total = client.submit(add_all, *computed, pure=False)
    assert total.result(timeout=30) == sum(range(1, 13))
    # The worker was told to close and is gone from the scheduler.
    worker_a = next(w for w in c.workers if w.name == "a")
    wait_until(lambda: not worker_a.alive(), 60, "the retired worker to exit",
               context=c.diagnostics)
    assert set(c.workers_by_name()) == {"b", "c"}


def test_retire_by_name_and_by_count(make_cluster):
    c = make_cluster([WorkerSpec(name="a"), WorkerSpec(name="b"), WorkerSpec(name="c")])
    client = c.client()
    addrs = c.workers_by_name()
    computed, scattered, payloads = put_data_on(client, addrs["b"], n_computed=5, n_scattered=2)

    retired = client.retire_workers(names=["b"])
    assert list(retired) == [addrs["b"]]
    assert client.gather(scattered) == payloads
    assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(5)]

    # n=1: the scheduler picks the worker to retire itself (workers_to_close).
    retired = client.retire_workers(n=1)
    assert len(retired) == 1
    [gone] = retired
    assert gone in (addrs["a"], addrs["c"])
    remaining = set(c.workers_by_name().values())
    assert gone not in remaining and len(remaining) == 1
    assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(5)]
    assert all(set(w) == remaining for w in holders(client, computed + scattered).values())


def test_only_worker_with_data_is_not_retired(make_cluster):
    c = make_cluster([WorkerSpec(name="solo")])
    client = c.client()
    [a] = c.workers_by_name().values()
    computed, scattered, payloads = put_data_on(client, a, n_computed=3, n_scattered=2)

    assert client.retire_workers([a]) == {}

    # Still registered, running again, holding its data, and taking work.
    assert list(c.workers_by_name().values()) == [a]
    wait_until(lambda: c.info()["workers"][a]["status"] == "running", 30,
               "the worker to be running again", context=c.diagnostics)
    assert all(h == {a} for h in holders(client, computed + scattered).values())
    assert [f.result(timeout=30) for f in computed] == [1, 2, 3]
    assert client.gather(scattered) == payloads
    assert client.submit(inc, 41, pure=False).result(timeout=30) == 42
    assert c.workers[0].alive()


def test_worker_without_unique_data_retires_at_once(make_cluster):
    c = make_cluster([WorkerSpec(name="a"), WorkerSpec(name="b")])
    client = c.client()
    addrs = c.workers_by_name()
    [shared] = client.scatter([123], broadcast=True)
    wait_until(lambda: holders(client, [shared])[shared.key] == set(addrs.values()), 30,
               "the broadcast to reach both workers")
    assert list(client.retire_workers([addrs["a"]])) == [addrs["a"]]
    assert holders(client, [shared])[shared.key] == {addrs["b"]}
    assert shared.result(timeout=30) == 123


def test_retired_nanny_worker_is_not_restarted(make_cluster):
    c = make_cluster([WorkerSpec(name="keep"), WorkerSpec(name="nanny", nanny=True)])
    client = c.client()
    addrs = c.workers_by_name()
    computed, scattered, payloads = put_data_on(client, addrs["nanny"], n_computed=4,
                                                n_scattered=2)

    assert list(client.retire_workers([addrs["nanny"]])) == [addrs["nanny"]]

    nanny_proc = next(w for w in c.workers if w.name == "nanny")
    wait_until(lambda: not nanny_proc.alive(), 60, "the nanny and its worker to exit",
               context=c.diagnostics)
    # It did not come back (a nanny restarting it would re-register the name).
    assert set(c.workers_by_name()) == {"keep"}
    assert [f.result(timeout=30) for f in computed] == [1, 2, 3, 4]
    assert client.gather(scattered) == payloads


def test_processing_task_on_retired_worker_still_completes(make_cluster, tmp_path):
    c = make_cluster([WorkerSpec(name="a"), WorkerSpec(name="b")])
    client = c.client()
    addrs = c.workers_by_name()
    stop = tmp_path / "stop"
    # Data only a holds, and a long task on a (allowed elsewhere).
    computed, scattered, payloads = put_data_on(client, addrs["a"], n_computed=3, n_scattered=1)
    running = client.submit(sleep_until_file, str(stop), 60.0, "done",
                            workers=[addrs["a"]], allow_other_workers=True, pure=False)
    wait_until(lambda: client.processing()[addrs["a"]], 30, "the long task to start")

    retired = client.retire_workers([addrs["a"]])
    assert list(retired) == [addrs["a"]]
    Path(stop).touch()
    # Rescheduled on b (the retired worker is gone); the result is right.
    assert running.result(timeout=60) == "done"
    assert set(client.who_has([running])[running.key]) == {addrs["b"]}
    assert [f.result(timeout=30) for f in computed] == [1, 2, 3]
    assert client.gather(scattered) == payloads
    # New work only goes to the remaining worker.
    assert client.submit(where_am_i, pure=False).result(timeout=30) == addrs["b"]


def test_retire_unknown_worker_is_a_no_op(make_cluster):
    c = make_cluster([WorkerSpec(name="a")])
    client = c.client()
    assert client.retire_workers(["tcp://127.0.0.1:1"]) == {}
    assert client.retire_workers(names=["nobody"]) == {}
    assert set(c.workers_by_name()) == {"a"}
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_retiring_several_workers_at_once(make_cluster):
    c = make_cluster([WorkerSpec(name=n) for n in ("a", "b", "c", "d")])
    client = c.client()
    addrs = c.workers_by_name()
    import numpy as np

    held = {}
    for name in ("a", "b", "c"):
        computed, scattered, payloads = put_data_on(client, addrs[name], n_computed=6,
                                                    n_scattered=2)
        # ~1 MB each, so that the transfers take real work.
        arrays = client.scatter([np.full(125_000, i, dtype="f8") for i in range(3)],
                                workers=[addrs[name]])
        held[name] = (computed, scattered, payloads, arrays)

    retired = client.retire_workers([addrs["a"], addrs["b"], addrs["c"]])

    # All of them go (d receives everything), and nothing is lost.
    assert sorted(retired) == sorted([addrs["a"], addrs["b"], addrs["c"]])
    assert set(c.workers_by_name()) == {"d"}
    for computed, scattered, payloads, arrays in held.values():
        assert all(set(w) == {addrs["d"]}
                   for w in holders(client, computed + scattered + arrays).values())
        assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(6)]
        assert client.gather(scattered) == payloads
        assert [float(a.sum()) for a in client.gather(arrays)] == [
            125_000.0 * i for i in range(3)]


def test_retiring_every_worker_keeps_those_with_data(make_cluster):
    c = make_cluster([WorkerSpec(name="a"), WorkerSpec(name="b"), WorkerSpec(name="empty")])
    client = c.client()
    addrs = c.workers_by_name()
    data = {n: put_data_on(client, addrs[n], n_computed=2, n_scattered=1) for n in ("a", "b")}

    retired = client.retire_workers(list(addrs.values()))

    # Only the worker without data can go: the others have nowhere to send theirs.
    assert list(retired) == [addrs["empty"]]
    assert set(c.workers_by_name()) == {"a", "b"}
    for computed, scattered, payloads in data.values():
        assert [f.result(timeout=30) for f in computed] == [1, 2]
        assert client.gather(scattered) == payloads
    wait_until(lambda: all(w["status"] == "running" for w in c.info()["workers"].values()),
               30, "the workers to be running again", context=c.diagnostics)
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_retire_during_a_computation(make_cluster):
    import dask
    import dask.array as da

    c = make_cluster([WorkerSpec(name=n, nthreads=2) for n in ("a", "b", "c")])
    client = c.client()
    addrs = c.workers_by_name()
    x = da.random.RandomState(0).random((2000, 2000), chunks=(200, 200))
    expected = dask.compute((x + x.T).sum(), scheduler="sync")[0]
    fut = client.compute((x + x.T).sum())
    wait_until(lambda: any(client.has_what().values()), 60, "some results to exist")
    retired = client.retire_workers([addrs["a"]])
    assert list(retired) == [addrs["a"]]
    assert abs(fut.result(timeout=120) - expected) < 1e-6 * abs(expected)
    assert set(c.workers_by_name()) == {"b", "c"}


def test_retire_while_a_reduction_waits(make_cluster, tmp_path):
    c = make_cluster([WorkerSpec(name=n, nthreads=2) for n in ("a", "b")])
    client = c.client()
    addrs = c.workers_by_name()
    stop = tmp_path / "stop"
    parts = client.map(slow_inc, range(40), delay=0.01, pure=False)
    gate = client.submit(sleep_until_file, str(stop), 60.0, 0, pure=False)
    total = client.submit(add_all, gate, *parts, pure=False)
    wait(parts, timeout=60)
    assert not total.done()  # the gate holds the reduction back
    where = client.who_has(parts)
    on_a = [f for f in parts if addrs["a"] in where[f.key]]
    assert on_a, "some inputs of the reduction are on the worker being retired"

    assert list(client.retire_workers([addrs["a"]])) == [addrs["a"]]
    stop.touch()

    assert total.result(timeout=60) == sum(range(1, 41))
    assert [f.result(timeout=30) for f in parts] == list(range(1, 41))


async def close_gracefully(dask_worker):
    """Run on a worker: what `dask worker --lifetime` does when its time is up."""
    await dask_worker.close_gracefully(reason="test-close-gracefully")


def test_worker_closing_gracefully_hands_its_data_over(make_cluster):
    # Worker.close_gracefully asks the scheduler to retire it (the
    # retire_workers RPC with close_workers=False, remove=True), then closes.
    c = make_cluster([WorkerSpec(name="a"), WorkerSpec(name="b")])
    client = c.client()
    addrs = c.workers_by_name()
    computed, scattered, payloads = put_data_on(client, addrs["a"], n_computed=5, n_scattered=2)

    client.run(close_gracefully, workers=[addrs["a"]], wait=False)

    worker_a = next(w for w in c.workers if w.name == "a")
    wait_until(lambda: not worker_a.alive(), 60, "worker a to close", context=c.diagnostics)
    assert set(c.workers_by_name()) == {"b"}
    assert all(set(w) == {addrs["b"]} for w in holders(client, computed + scattered).values())
    assert [f.result(timeout=30) for f in computed] == [1, 2, 3, 4, 5]
    assert client.gather(scattered) == payloads
    assert worker_a.returncode == 0
    assert "Could not retire" not in c.scheduler.log_text()


def test_concurrent_retirements_of_the_same_worker(make_cluster):
    from concurrent.futures import ThreadPoolExecutor

    c = make_cluster([WorkerSpec(name="a"), WorkerSpec(name="b")])
    client = c.client()
    addrs = c.workers_by_name()
    computed, scattered, payloads = put_data_on(client, addrs["a"], n_computed=20, n_scattered=5)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: client.retire_workers([addrs["a"]]), range(2)))

    # Each call reports a as retired, or (if it came after the other ended) nothing.
    assert any(r for r in results)
    for r in results:
        assert set(r) <= {addrs["a"]}
        if r:
            assert r[addrs["a"]]["name"] == "a"
    assert set(c.workers_by_name()) == {"b"}
    assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(20)]
    assert client.gather(scattered) == payloads

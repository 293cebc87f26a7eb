"""Issue 2, point 7: a client that disconnects without closing releases its
keys; released graphs leave nothing behind in the scheduler."""

import gc
import json
import select
import subprocess
import textwrap

import dask
import pytest

from .cluster import PYTHON, WorkerSpec, child_env, wait_until
from .helpers import inc, scheduler_task_keys, unique, wait_released, worker_data_keys

CLUSTER_WORKERS = [WorkerSpec(nthreads=2), WorkerSpec(nthreads=2)]

HOLDER = textwrap.dedent("""
    import json, os, sys
    import dask.array as da
    from dask.core import flatten
    from distributed import Client, wait
    from e2e.helpers import inc

    address, prefix = sys.argv[1], sys.argv[2]
    client = Client(address, timeout=30)
    futures = client.map(inc, range(50), key=[f"{prefix}-{i}" for i in range(50)])
    array = da.ones(100, chunks=10).persist()
    wait(futures)
    wait(array)
    keys = [f.key for f in futures] + [list(k) for k in flatten(array.__dask_keys__())]
    print(json.dumps(keys), flush=True)
    sys.stdin.readline()  # hold the futures until told to go
    os._exit(0)           # no client.close(): the connection just drops
""")


def readline(proc, timeout):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the holder client process did not report its keys"
    return proc.stdout.readline()


@pytest.mark.parametrize("how", ["os._exit", "SIGKILL"])
def test_vanished_client_releases_its_keys(cluster, client, how):
    proc = subprocess.Popen(
        [PYTHON, "-c", HOLDER, cluster.address, unique("holder")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
        text=True, start_new_session=True,
    )
    try:
        line = readline(proc, 60)
        keys = {k if isinstance(k, str) else tuple(k) for k in json.loads(line)}
        assert len(keys) == 60
        assert keys <= scheduler_task_keys(client)
        assert keys <= set().union(*worker_data_keys(client).values())

        if how == "SIGKILL":
            proc.kill()
        else:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert proc.wait(30) is not None

        wait_released(client, keys)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    # the scheduler is fine for everybody else
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def run_and_release_graphs(client, n: int, width: int = 10) -> None:
    """``n`` graphs, each submitted, computed and dropped, with distinct keys:
    single submits, maps and delayed graphs in turn."""
    expected = sum(range(1, width + 1))
    for i in range(n):
        kind = i % 3
        if kind == 0:
            futures = [client.submit(inc, i, key=unique(f"graph{i}"))]
            assert futures[0].result(timeout=30) == i + 1
        elif kind == 1:
            futures = client.map(inc, range(width), key=[unique(f"graph{i}-{j}") for j in range(width)])
            assert sum(client.gather(futures)) == expected
        else:
            parts = [dask.delayed(inc)(j, dask_key_name=unique(f"graph{i}-{j}")) for j in range(width)]
            futures = [client.compute(dask.delayed(sum)(parts, dask_key_name=unique(f"graph{i}")))]
            assert futures[0].result(timeout=30) == expected
        del futures  # release


def wait_scheduler_empty(client, timeout=30):
    """No tasks in the scheduler, nothing in any worker's memory."""
    def empty():
        gc.collect()  # futures in reference cycles, see helpers.wait_cluster_empty
        return (not scheduler_task_keys(client)
                and not any(client.has_what().values())
                and not any(worker_data_keys(client).values()))

    wait_until(empty, timeout, "the scheduler and workers to hold no tasks")


def test_100_released_graphs_leave_no_tasks(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=2), WorkerSpec(nthreads=2)])
    client = c.client()
    run_and_release_graphs(client, 100)
    wait_scheduler_empty(client)
    assert client.scheduler_info()["n_workers"] == 2


@pytest.mark.rust_only  # a statement about the Rust process's memory
def test_memory_back_near_baseline(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=2), WorkerSpec(nthreads=2)])
    client = c.client()
    run_and_release_graphs(client, 20, width=100)  # warm up allocator and pools
    wait_scheduler_empty(client)
    baseline = c.scheduler.rss_bytes()
    run_and_release_graphs(client, 100, width=100)
    wait_scheduler_empty(client)
    after = c.scheduler.rss_bytes()
    assert after < baseline + 50 * 2**20, (
        f"scheduler RSS grew from {baseline / 2**20:.1f} MiB to {after / 2**20:.1f} MiB"
    )


def test_shutdown_closes_the_scheduler_and_its_workers(make_cluster):
    """``client.shutdown()``: the scheduler closes and tells every worker
    (and nanny) to close too, as Python's ``Scheduler.close`` does; the
    workers do not wait out their death timeout."""
    c = make_cluster([WorkerSpec(), WorkerSpec(nanny=True)])
    client = c.client()
    assert client.submit(inc, 1, key=unique("before")).result(timeout=30) == 2
    client.shutdown()
    wait_until(lambda: not c.scheduler.alive(), 30, "the scheduler to exit")
    wait_until(lambda: not any(w.alive() for w in c.workers), 30, "the workers to exit")


def test_sigterm_to_the_scheduler_closes_its_workers(make_cluster):
    """A Kubernetes pod deletion: SIGTERM to the scheduler closes it the way
    ``client.shutdown()`` does, workers and nannies included."""
    import signal

    c = make_cluster([WorkerSpec(), WorkerSpec(nanny=True)])
    client = c.client()
    assert client.submit(inc, 1, key=unique("before-term")).result(timeout=30) == 2
    c.scheduler.send_signal(signal.SIGTERM)
    assert c.scheduler.wait(30) == 0, c.scheduler.describe()
    wait_until(lambda: not any(w.alive() for w in c.workers), 30, "the workers to exit")

"""Tasks that submit tasks (``worker_client``, ``get_client`` with
``secede``/``rejoin``), and client conveniences built on futures
(``get_executor``, ``add_done_callback``, ``span``, ``forward_logging``).

One worker with one thread: a task waiting for the tasks it submitted holds
the only thread unless it secedes, so these hang if the scheduler does not
free its slot (``long-running``) for the tasks it waits on."""

import logging
import threading

import dask
from distributed import get_client, rejoin, secede, worker_client

from .cluster import WorkerSpec, wait_until
from .helpers import inc, unique

CLUSTER_WORKERS = [WorkerSpec(nthreads=1)]


def fan_out_with_worker_client(n):
    with worker_client() as client:
        futures = client.map(inc, range(n), key=[f"{unique('inner')}-{i}" for i in range(n)])
        return sum(client.gather(futures))


def fan_out_seceding(n):
    client = get_client()
    futures = client.map(inc, range(n), pure=False)
    secede()
    total = sum(client.gather(futures))
    rejoin()
    return total


def nested(depth):
    if depth == 0:
        return 1
    with worker_client() as client:
        return 1 + client.submit(nested, depth - 1, pure=False).result()


def test_worker_client_submits_and_gathers_on_a_single_thread(client):
    n = 30  # more root tasks than the one thread's queue slots
    f = client.submit(fan_out_with_worker_client, n, key=unique("outer"))
    assert f.result(timeout=60) == sum(range(1, n + 1))


def test_get_client_with_secede_and_rejoin(client):
    f = client.submit(fan_out_seceding, 20, key=unique("seceding"))
    assert f.result(timeout=60) == sum(range(1, 21))


def test_tasks_submitted_three_levels_deep(client):
    assert client.submit(nested, 3, key=unique("nested")).result(timeout=60) == 4


def test_get_executor_maps_and_submits(client):
    with client.get_executor(pure=False) as ex:
        assert list(ex.map(inc, [1, 2, 3])) == [2, 3, 4]
        assert ex.submit(inc, 10).result(timeout=30) == 11


def test_add_done_callback_fires_once_with_the_future(client):
    seen = []
    done = threading.Event()

    def callback(fut):
        seen.append((fut.key, fut.status))
        done.set()

    f = client.submit(inc, 5, key=unique("callback"))
    f.add_done_callback(callback)
    assert done.wait(30)
    assert seen == [(f.key, "finished")]


def test_span_names_the_tasks_submitted_in_it(client):
    from distributed import span

    with span("my-span") as span_id:
        x = dask.delayed(inc)(1).persist()
    assert isinstance(span_id, str) and span_id
    assert x.compute() == 2


def log_from_task(x):
    logging.getLogger("user.task.logger").warning("hello from task %d", x)
    return x


def test_forward_logging_brings_task_logs_to_the_client(client, caplog):
    client.forward_logging("user.task.logger", level=logging.WARNING)
    try:
        with caplog.at_level(logging.WARNING, logger="user.task.logger"):
            assert client.submit(log_from_task, 7, key=unique("logs")).result(timeout=30) == 7
            wait_until(lambda: "hello from task 7" in caplog.text, 30, "the forwarded record")
    finally:
        client.unforward_logging("user.task.logger")

"""Issue 2, point 4: scatter and computing on scattered data; client.run."""

import os

import dask
import numpy as np
import pytest

from .cluster import wait_until
from .helpers import add, inc, unique


class RunError(ValueError):
    pass


def boom():
    raise RunError("boom from client.run")


def worker_addresses(client):
    return set(client.scheduler_info()["workers"])


def test_scatter_list(client):
    futures = client.scatter([1, 2, 3, 4])
    assert len({f.key for f in futures}) == 4
    assert client.gather(futures) == [1, 2, 3, 4]
    who_has = client.who_has(futures)
    assert all(who_has[f.key] for f in futures)
    assert client.submit(sum, futures).result(timeout=30) == 10
    assert client.gather(client.map(inc, futures)) == [2, 3, 4, 5]


def test_scatter_dict(client):
    names = {unique("a"): 10, unique("b"): 20}
    futures = client.scatter(names)
    assert set(futures) == set(names)
    for name, future in futures.items():
        assert future.key == name
        assert future.result(timeout=30) == names[name]
    a, b = (futures[n] for n in names)
    assert client.submit(add, a, b).result(timeout=30) == 30


def test_scatter_broadcast(client):
    future = client.scatter(np.arange(1000), broadcast=True)
    everyone = worker_addresses(client)
    assert len(everyone) == 2
    wait_until(lambda: set(client.who_has([future])[future.key]) == everyone, 15,
               "the broadcast data to be on every worker")
    has_what = client.has_what()
    assert all(future.key in has_what[w] for w in everyone)
    on_workers = client.run(lambda dask_worker, key=future.key: int(dask_worker.data[key].sum()))
    assert on_workers == {w: int(np.arange(1000).sum()) for w in everyone}


@pytest.mark.parametrize("direct", [False, True], ids=["via-scheduler", "direct"])
def test_scatter_40mb_array(client, direct):
    arr = np.random.default_rng(0).random(5_000_000)  # 40 MB of float64
    assert arr.nbytes == 40_000_000
    future = client.scatter(arr, direct=direct)
    assert client.submit(np.sum, future).result(timeout=60) == pytest.approx(arr.sum())
    back = future.result(timeout=60)
    assert back.shape == arr.shape and np.array_equal(back, arr)
    doubled = client.submit(np.multiply, future, 2).result(timeout=60)
    assert np.array_equal(doubled, arr * 2)


def test_compute_on_scattered_with_collections(client):
    [x] = client.scatter([np.arange(10)])
    total = dask.delayed(np.sum)(x)
    assert total.compute() == 45
    assert dask.delayed(add)(total, x).compute().tolist() == (np.arange(10) + 45).tolist()


def test_run_on_all_workers(client):
    pids = client.run(os.getpid)
    assert set(pids) == worker_addresses(client)
    assert all(isinstance(p, int) and p != os.getpid() for p in pids.values())
    assert len(set(pids.values())) == 2
    addrs = client.run(lambda dask_worker: dask_worker.address)
    assert addrs == {a: a for a in addrs}
    assert client.run(add, 1, y=2) == {a: 3 for a in addrs}


def test_run_on_chosen_workers(client):
    addr = sorted(worker_addresses(client))[0]
    result = client.run(lambda dask_worker: dask_worker.address, workers=[addr])
    assert result == {addr: addr}


def test_run_raising_function(client):
    with pytest.raises(RunError, match="boom from client.run"):
        client.run(boom)
    returned = client.run(boom, on_error="return")
    assert set(returned) == worker_addresses(client)
    for exc in returned.values():
        assert isinstance(exc, RunError)
        assert "boom from client.run" in str(exc)
    assert client.run(boom, on_error="ignore") == {}
    # the workers are fine afterwards
    assert set(client.run(os.getpid)) == worker_addresses(client)


def test_nbytes_summary_by_prefix_and_per_key(client):
    """``client.nbytes``: summed by ``key_split`` prefix by default, per key with
    ``summary=False``; an unknown key is the scheduler's ``KeyError``."""
    from dask.sizeof import sizeof

    tag = unique("nbsum").replace("-", "")  # one word: its own prefix
    names = {f"{tag}-{i}": np.zeros(1000 * (i + 1)) for i in range(3)}
    futures = client.scatter(names)
    sizes = client.nbytes(keys=list(futures), summary=False)
    assert sizes == {k: sizeof(v) for k, v in names.items()}
    assert client.nbytes(keys=list(futures)) == {tag: sum(sizes.values())}
    assert client.nbytes()[tag] == sum(sizes.values())
    assert client.nbytes(summary=False)[f"{tag}-2"] == sizes[f"{tag}-2"]
    with pytest.raises(KeyError):
        client.nbytes(keys=[unique("never-submitted")])


def test_run_handler_failures_on_workers_arrive_as_python_s(client):
    """A worker's ``run`` handler itself failing (``wait=False`` needs a
    coroutine function) reaches the client as the Python scheduler passes it
    on: ``Exception(<the worker's exception text>)``."""
    with pytest.raises(Exception, match="Combination not supported") as info:
        client.run(os.getpid, wait=False)
    assert type(info.value) is Exception
    assert "AssertionError" in str(info.value)

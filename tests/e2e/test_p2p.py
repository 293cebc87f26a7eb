"""Dask's P2P shuffle and rechunk through the Rust scheduler, with real
workers running Dask's own ``ShuffleWorkerPlugin`` (the scheduler installs
it on every worker, as the Python scheduler's shuffle extension does).

P2P is what dask picks by default for dataframe shuffles and merges when a
distributed client is active and pyarrow is installed (it is in the pinned
environment), so ``df.shuffle(...)`` and ``df.merge(...)`` below use it
without asking.
"""

import time

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from .cluster import WorkerSpec, wait_until
from .helpers import scheduler_task_keys


def frame(n=6000, parts=12):
    pdf = pd.DataFrame({"k": np.arange(n) % 97, "v": np.arange(n)})
    return pdf, dd.from_pandas(pdf, npartitions=parts)


def uses_p2p(collection) -> bool:
    keys = collection.__dask_graph__().keys()
    return any(str(k).startswith("shuffle-barrier-") for k in keys)


def test_default_dataframe_shuffle_is_p2p_and_correct(client):
    pdf, df = frame()
    with client.as_current():
        shuffled = df.shuffle("k")
        assert uses_p2p(shuffled)
        out = shuffled.compute()
    assert sorted(out.v) == list(range(len(pdf)))
    # every value of k sits in one output partition
    with client.as_current():
        parts = shuffled.map_partitions(lambda p: p.k.unique().tolist()).compute()
    seen = [k for ks in parts for k in ks]
    assert len(seen) == len(set(seen)) == 97


def test_p2p_hash_join(client):
    pdf, df = frame()
    right = pd.DataFrame({"k": np.arange(97), "w": np.arange(97) * 2})
    with client.as_current():
        merged = df.merge(dd.from_pandas(right, npartitions=4), on="k")
        assert uses_p2p(merged)
        out = merged.compute()
    assert len(out) == len(pdf)
    assert (out.w == out.k * 2).all()


def test_p2p_rechunk(client):
    x = da.random.random((300, 300), chunks=(300, 10))
    with client.as_current():
        y = x.rechunk((10, 300), method="p2p")
        assert uses_p2p(y)
        a, b = client.compute([x.sum(), y.sum()], sync=True)
        assert y.chunks == ((10,) * 30, (300,))
        assert np.allclose(client.compute(y, sync=True), client.compute(x, sync=True))
    assert a == pytest.approx(b)


def test_p2p_state_is_dropped_with_the_graph(client):
    pdf, df = frame(2000, 6)
    with client.as_current():
        fut = client.compute(df.shuffle("k"))
        assert len(fut.result(timeout=60)) == len(pdf)
    del fut
    wait_until(lambda: not any(str(k).startswith("shuffle") for k in scheduler_task_keys(client)),
               30, "the shuffle's tasks to be forgotten")


def slow_partition(p):
    time.sleep(0.4)
    return p


def test_p2p_shuffle_restarts_when_a_worker_dies(make_cluster):
    cluster = make_cluster([WorkerSpec(nthreads=1), WorkerSpec(nthreads=1), WorkerSpec(nthreads=1)])
    c = cluster.client()
    c.wait_for_workers(3, timeout=60)
    pdf, df = frame(6000, 24)
    with c.as_current():
        fut = c.compute(df.map_partitions(slow_partition).shuffle("k"))
    # once the shuffle runs (transfers under way), kill one worker
    wait_until(lambda: "initialized" in cluster.scheduler.log_text(), 60, "the shuffle to start")
    cluster.kill_worker(cluster.workers[1])
    out = fut.result(timeout=120)
    assert sorted(out.v) == list(range(len(pdf)))

"""Issue 2, point 3: collections through update-graph (the graph materializer).

Every result is compared with the same graph computed locally with the
synchronous scheduler.
"""

import operator

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.core import flatten
from distributed import wait

from .helpers import add, inc


def local(*collections):
    """Compute locally, in this process, without the distributed scheduler."""
    return dask.compute(*collections, scheduler="sync")


def assert_frame_equal_unordered(a, b):
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index(), check_exact=False)


def test_delayed_tree(client):
    leaves = [dask.delayed(inc)(i) for i in range(64)]
    level = leaves
    while len(level) > 1:
        level = [dask.delayed(add)(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    root = level[0]
    assert root.compute() == sum(range(1, 65)) == local(root)[0]
    # several outputs at once, sharing inputs
    a, b = dask.compute(leaves[0], root)
    assert (a, b) == (1, sum(range(1, 65)))


def test_array_ones_sum(client):
    x = da.ones((1000, 1000), chunks=(100, 100))
    assert x.sum().compute() == 1_000_000
    assert x.sum(axis=0).compute().tolist() == [1000.0] * 1000


def test_array_random_equals_local(client):
    x = da.random.default_rng(42).random((600, 400), chunks=(100, 100))
    remote = x.mean(axis=1).compute()
    (expected,) = local(x.mean(axis=1))
    np.testing.assert_allclose(remote, expected, rtol=1e-12)
    y = da.random.RandomState(7).normal(size=(300, 300), chunks=50)
    np.testing.assert_allclose(y.std().compute(), local(y.std())[0], rtol=1e-12)


def test_array_matmul(client):
    x = da.random.default_rng(0).random((400, 200), chunks=(100, 50))
    remote = (x @ x.T).compute()
    (expected,) = local(x @ x.T)
    assert remote.shape == (400, 400)
    np.testing.assert_allclose(remote, expected, rtol=1e-10)


def test_array_persist_then_reuse(client):
    x = da.random.default_rng(1).random((500, 500), chunks=100)
    y = (x + 1).persist()
    wait(y, timeout=60)
    keys = set(flatten(y.__dask_keys__()))
    who_has = client.who_has(y)
    assert keys <= set(who_has) and all(who_has[k] for k in keys), "persisted chunks are in memory"
    z1 = (y * 2).sum().compute()
    z2 = y.T.mean(axis=0).compute()
    e1, e2 = local(((x + 1) * 2).sum(), (x + 1).T.mean(axis=0))
    np.testing.assert_allclose(z1, e1, rtol=1e-10)
    np.testing.assert_allclose(z2, e2, rtol=1e-10)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    left = pd.DataFrame({
        "k": rng.integers(0, 50, 2000),
        "x": rng.random(2000),
        "y": rng.integers(0, 100, 2000),
    })
    right = pd.DataFrame({"k": np.arange(50), "label": [f"l{i}" for i in range(50)],
                          "w": np.arange(50) * 1.5})
    return left, right


def test_dataframe_from_pandas_groupby_sum(client, frames):
    left, _ = frames
    ddf = dd.from_pandas(left, npartitions=8)
    assert len(ddf) == 2000
    assert ddf.x.sum().compute() == pytest.approx(left.x.sum())
    result = ddf.groupby("k").sum().compute()
    assert_frame_equal_unordered(result, left.groupby("k").sum())


def test_dataframe_merge_tasks_shuffle(client, frames):
    left, right = frames
    a = dd.from_pandas(left, npartitions=6)
    b = dd.from_pandas(right, npartitions=3)
    merged = dd.merge(a, b, on="k", how="inner", shuffle_method="tasks")
    # the task-based shuffle (the P2P one is tested in test_p2p.py)
    graph_keys = merged.__dask_graph__().keys()
    assert not any("p2p" in str(k).lower() for k in graph_keys)
    result = merged.compute()
    expected = left.merge(right, on="k", how="inner")
    cols = ["k", "x", "y", "label", "w"]
    assert len(result) == len(expected)
    pd.testing.assert_frame_equal(
        result[cols].sort_values(["k", "x"]).reset_index(drop=True),
        expected[cols].sort_values(["k", "x"]).reset_index(drop=True),
        check_dtype=False,
    )


def test_dataframe_timeseries(client):
    ts = dask.datasets.timeseries(start="2000-01-01", end="2000-01-08", freq="10s",
                                  partition_freq="1D", seed=42)
    query = ts[ts.x > 0].groupby("name").agg({"x": "mean", "y": "max", "id": "count"})
    result = query.compute()
    (expected,) = local(query)
    assert len(result) > 10
    assert_frame_equal_unordered(result, expected)
    assert len(ts) == local(ts.map_partitions(len).sum())[0]


def test_bag_foldby(client):
    b = db.from_sequence(range(10_000), npartitions=10)
    folded = b.foldby(lambda x: x % 7, operator.add, 0, operator.add, 0)
    result = dict(folded.compute())
    expected = dict(local(folded)[0])
    assert result == expected
    assert result == {k: sum(i for i in range(10_000) if i % 7 == k) for k in range(7)}
    assert b.map(inc).filter(lambda x: x % 2).count().compute() == 5000

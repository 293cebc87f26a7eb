"""Issue 2, point 1: connecting a client and asking the scheduler about the cluster."""

import threading
import time
import warnings

import pytest
from distributed import Client, wait
from distributed.versions import VersionMismatchWarning

from .cluster import WorkerSpec
from .helpers import inc, unique

CLUSTER_WORKERS = [
    WorkerSpec(name="alpha", nthreads=2, nanny=True, resources="GPU=1", memory_limit="2GB"),
    WorkerSpec(name="beta", nthreads=1, nanny=False),
]


def workers_by_name(client):
    return {w["name"]: (addr, w) for addr, w in client.scheduler_info()["workers"].items()}


def test_identity_has_dashboard(cluster, client):
    info = client.scheduler_info()
    assert info["type"] == "Scheduler"
    assert info["address"] == cluster.address
    assert info["services"]["dashboard"] == cluster.scheduler.dashboard_port
    assert isinstance(info["id"], str) and info["id"]
    # the raw identity RPC carries the same
    ident = client.sync(client.scheduler.identity)
    assert ident["services"]["dashboard"] == cluster.scheduler.dashboard_port
    assert str(cluster.scheduler.dashboard_port) in client.dashboard_link


def test_scheduler_info_workers(client):
    workers = workers_by_name(client)
    assert set(workers) == {"alpha", "beta"}
    _, alpha = workers["alpha"]
    _, beta = workers["beta"]
    assert alpha["nthreads"] == 2
    assert beta["nthreads"] == 1
    assert alpha["memory_limit"] == 2_000_000_000
    assert beta["memory_limit"] == 0
    assert alpha["resources"] == {"GPU": 1}
    assert beta["resources"] == {}
    info = client.scheduler_info()
    assert info["n_workers"] == 2
    assert info["total_threads"] == 3
    for addr, w in info["workers"].items():
        assert addr.startswith("tcp://127.0.0.1:")
        assert w["host"] == "127.0.0.1"
        assert w["status"] == "running"


def test_nthreads_and_ncores(client):
    workers = workers_by_name(client)
    expected = {workers["alpha"][0]: 2, workers["beta"][0]: 1}
    assert client.nthreads() == expected
    assert client.ncores() == expected
    beta_addr = workers["beta"][0]
    assert client.nthreads(workers=[beta_addr]) == {beta_addr: 1}


def test_who_has_and_has_what(client):
    futures = client.map(inc, range(10), key=[unique(f"whohas-{i}") for i in range(10)])
    wait(futures, timeout=30)
    addrs = {addr for addr, _ in workers_by_name(client).values()}

    who_has = client.who_has(futures)
    assert set(who_has) == {f.key for f in futures}
    for key, holders in who_has.items():
        assert holders, f"no worker holds {key}"
        assert set(holders) <= addrs

    has_what = client.has_what()
    assert set(has_what) == addrs
    held = {k for keys in has_what.values() for k in keys}
    assert {f.key for f in futures} <= held
    # has_what and who_has agree
    for key, holders in who_has.items():
        for addr in holders:
            assert key in has_what[addr]
    assert client.gather(futures) == list(range(1, 11))


def test_get_versions_no_mismatch(client):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        versions = client.get_versions(check=True)
    mismatch = [w for w in caught if issubclass(w.category, VersionMismatchWarning)]
    assert not mismatch, [str(w.message) for w in mismatch]
    packages = versions["scheduler"]["packages"]
    assert packages["dask"] == "2026.8.0"
    assert packages["distributed"] == "2026.8.0"
    assert packages["python"].startswith("3.11")
    assert len(versions["workers"]) == 2
    for w in versions["workers"].values():
        assert w["packages"]["distributed"] == "2026.8.0"


def test_new_client_without_version_warning(cluster):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Client(cluster.address, timeout=30, set_as_default=False) as c:
            assert c.submit(inc, 41, pure=False).result(timeout=30) == 42
    mismatch = [w for w in caught if issubclass(w.category, VersionMismatchWarning)]
    assert not mismatch, [str(w.message) for w in mismatch]


def test_wait_for_workers(make_cluster):
    c = make_cluster()  # a scheduler with no workers yet
    client = c.client(set_as_default=False)
    assert client.scheduler_info()["workers"] == {}
    with pytest.raises(TimeoutError):
        client.wait_for_workers(1, timeout=0.5)

    # start two workers while the client is blocked in wait_for_workers
    starter = threading.Timer(0.5, lambda: [c.add_worker(wait=False) for _ in range(2)])
    starter.start()
    t0 = time.monotonic()
    try:
        client.wait_for_workers(2, timeout=60)
    finally:
        starter.join()
    assert time.monotonic() - t0 < 60
    assert len(client.scheduler_info()["workers"]) == 2
    assert client.submit(inc, 1).result(timeout=30) == 2


def test_peers_configured_for_compression(make_cluster, monkeypatch):
    """A client and workers with ``distributed.comm.compression: zlib``
    (the scheduler too, for Python's): Dask compresses a connection only
    where both ends offer the same codec, so with this scheduler, which
    offers none, the frames it exchanges stay uncompressed, and computing,
    scattering and gathering work."""
    import dask
    import numpy as np

    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__COMPRESSION", "zlib")
    c = make_cluster([WorkerSpec(nthreads=1), WorkerSpec(nthreads=1)])
    with dask.config.set({"distributed.comm.compression": "zlib"}):
        client = c.client()
        x = np.arange(1_000_000)
        [f] = client.scatter([x])
        assert client.submit(np.sum, f).result(timeout=60) == x.sum()
        assert (client.gather(f) == x).all()
        futs = client.map(inc, range(50))
        assert client.submit(sum, futs).result(timeout=60) == sum(range(1, 51))

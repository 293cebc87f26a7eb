"""Cluster managers against the scheduler: ``distributed.deploy.Cluster``.

dask-kubernetes' ``KubeCluster`` (pinned 2026.3.0), once its scheduler's
Service answers, sets ``scheduler_comm = rpc(address)`` and calls
``Cluster._start``, which opens a ``subscribe_worker_status`` stream, keeps
``cluster.scheduler_info`` current from it as workers come and go, and syncs
``cluster-manager-info`` into the scheduler's metadata every second. These
tests do exactly that with a real ``Cluster`` (only the Kubernetes part is
left out) and real ``dask worker`` processes. They pass against the Python
scheduler too, except where one says otherwise.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from distributed import Client
from distributed.core import rpc
from distributed.deploy.cluster import Cluster as ClusterManager

from .cluster import WorkerSpec
from .helpers import inc, unique

TIMEOUT = 30


class ExternalCluster(ClusterManager):
    """A cluster manager whose scheduler runs elsewhere: what ``KubeCluster``
    does after ``_create_cluster`` / ``_connect_cluster``."""

    def __init__(self, address: str):
        super().__init__(asynchronous=True, name=unique("manager"))
        self.scheduler_comm = rpc(address)


async def eventually(check, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def names(manager) -> dict[str, str]:
    return {w["name"]: a for a, w in manager.scheduler_info["workers"].items()}


def test_a_cluster_manager_starts_and_follows_the_workers(make_cluster):
    c = make_cluster([WorkerSpec(nthreads=1, name="first")])
    first = c.workers[0]

    async def main():
        manager = ExternalCluster(c.address)
        await asyncio.wait_for(manager._start(), TIMEOUT)
        try:
            info = manager.scheduler_info
            assert info["type"] == "Scheduler"
            assert info["address"] == c.address
            assert list(names(manager)) == ["first"]
            entry = info["workers"][names(manager)["first"]]
            assert entry["nthreads"] == 1
            # volatile fields are left out, as Python's WorkerStatusPlugin does
            assert "metrics" not in entry and "last_seen" not in entry
            assert manager.scheduler_address == c.address
            assert manager.dashboard_link  # from the identity's services

            # a worker joining shows up without polling the scheduler
            await asyncio.to_thread(c.add_worker, WorkerSpec(nthreads=2, name="second"))
            await eventually(lambda: "second" in names(manager), "the added worker")
            added = manager.scheduler_info["workers"][names(manager)["second"]]
            assert added["nthreads"] == 2 and "metrics" not in added

            # and one dying goes away
            first_address = names(manager)["first"]
            await asyncio.to_thread(c.kill_worker, first)
            await eventually(
                lambda: first_address not in manager.scheduler_info["workers"],
                "the killed worker's removal",
            )
            assert list(names(manager)) == ["second"]

            # a client made from the manager computes, and sees the manager's
            # info synced into the scheduler's metadata
            async with Client(manager, asynchronous=True) as client:
                assert await client.submit(inc, 41, key=unique("inc")) == 42
                meta = {}
                deadline = time.monotonic() + TIMEOUT
                while meta.get("name") != manager.name:
                    assert time.monotonic() < deadline, f"no cluster-manager-info: {meta}"
                    meta = await client.get_metadata(["cluster-manager-info"], default={})
                    await asyncio.sleep(0.1)
                assert meta["type"].endswith("ExternalCluster")
        finally:
            await manager._close()

    asyncio.run(main())

    # the subscriber is gone: workers still register and work still runs
    c.add_worker(WorkerSpec(nthreads=1, name="third"))
    client = c.client()
    assert client.submit(inc, 1, key=unique("after")).result(timeout=TIMEOUT) == 2
    assert "third" in c.workers_by_name()


@pytest.mark.rust_only
def test_two_managers_each_get_every_update(make_cluster):
    """Python's scheduler registers each subscriber as a plugin named
    ``worker-status``, so a second one replaces the first, which then hears
    nothing more (distributed 2026.8.0, ``WorkerStatusPlugin``). Here every
    subscriber hears every update until it closes."""
    c = make_cluster()

    async def main():
        one, two = ExternalCluster(c.address), ExternalCluster(c.address)
        await asyncio.wait_for(asyncio.gather(one._start(), two._start()), TIMEOUT)
        try:
            assert one.scheduler_info["workers"] == {} == two.scheduler_info["workers"]
            await asyncio.to_thread(c.add_worker, WorkerSpec(nthreads=1, name="w"))
            for m in (one, two):
                await eventually(lambda m=m: "w" in names(m), "the worker on both")
            # one manager leaving does not cost the other its updates
            await one._close()
            await asyncio.to_thread(c.kill_worker, c.workers[0])
            await eventually(lambda: names(two) == {}, "the removal on the other")
        finally:
            await one._close()
            await two._close()

    asyncio.run(main())

"""Issue 5, points 3 and 4: the API the Dask Kubernetes operator calls.

The operator (``dask_kubernetes.operator.controller.controller``, pinned
2026.3.0) first tries the HTTP API on the dashboard port (``/api/v1/...``,
with aiohttp) and falls back to the scheduler RPC (``distributed.core.rpc``).
These tests run the operator's own functions (``retire_workers``,
``check_scheduler_idle``, ``get_desired_workers``) against a real scheduler,
with only its Kubernetes service lookup (``get_scheduler_address``) pointed at
the local processes, and check the raw responses with aiohttp the same way.

The Python scheduler serves ``/api/v1`` only when configured to; the tests
configure it through the environment so that they validate against it too.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest
from distributed import wait
from distributed.core import rpc

from .cluster import WorkerSpec, wait_until
from .helpers import inc, sleep_until_file, unique

ctl = pytest.importorskip("dask_kubernetes.operator.controller.controller")

# The Python scheduler's default routes plus the API (the Rust one serves it by default).
API_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": repr([
        "distributed.http.scheduler.prometheus",
        "distributed.http.scheduler.info",
        "distributed.http.scheduler.json",
        "distributed.http.health",
        "distributed.http.proxy",
        "distributed.http.statics",
        "distributed.http.scheduler.api",
    ])
}

log = logging.getLogger("operator-under-test")


def point_operator_at(monkeypatch, cluster, dashboard_path=""):
    """The operator resolves the scheduler's Service; resolve to our processes.

    ``dashboard_path``: a prefix where nothing is served makes every HTTP call
    answer 404, so the operator falls back to the RPC.
    """

    async def get_scheduler_address(service_name, namespace, port_name="tcp-comm", **kwargs):
        if port_name == "http-dashboard":
            return cluster.scheduler.dashboard_url(dashboard_path).rstrip("/")
        return cluster.address

    monkeypatch.setattr(ctl, "get_scheduler_address", get_scheduler_address)


def operator_retire(n):
    return asyncio.run(ctl.retire_workers(
        n_workers=n, scheduler_service_name="sched", worker_group_name="default",
        namespace="ns", logger=log))


def data_on(client, addr, n=6):
    tag = unique("op")
    computed = [client.submit(inc, i, workers=[addr], key=f"{tag}-{i}") for i in range(n)]
    payloads = [f"{tag}-payload-{i}" for i in range(3)]
    scattered = client.scatter(payloads, workers=[addr])
    wait(computed + scattered, timeout=60)
    return computed, scattered, payloads


async def http(method, url, **kwargs):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = await (resp.json() if "json" in ctype else resp.text())
            return resp.status, ctype, body


def test_http_api_shapes(make_cluster):
    c = make_cluster([WorkerSpec(name="w1"), WorkerSpec(name="w2")], env=API_ENV)
    client = c.client()
    url = c.scheduler.dashboard_url

    status, ctype, body = asyncio.run(http("GET", url("/api/v1")))
    assert (status, body) == (200, "API V1") and ctype.startswith("text/plain")

    status, ctype, body = asyncio.run(http("GET", url("/api/v1/get_workers")))
    assert status == 200 and ctype.startswith("application/json")
    assert body["num_workers"] == 2
    assert sorted(w["name"] for w in body["workers"]) == ["w1", "w2"]
    assert {w["address"] for w in body["workers"]} == set(c.workers_by_name().values())

    status, _, body = asyncio.run(http("GET", url("/api/v1/adaptive_target")))
    assert status == 200 and set(body) == {"workers"} and isinstance(body["workers"], int)

    # Idle: a number (what the operator turns into float); busy: null.
    wait_until(lambda: asyncio.run(http("GET", url("/api/v1/check_idle")))[2]["idle_since"],
               30, "the scheduler to report idleness")
    status, _, body = asyncio.run(http("GET", url("/api/v1/check_idle")))
    assert status == 200 and set(body) == {"idle_since"} and isinstance(body["idle_since"], float)

    # Bad requests get Python's error answer and change nothing.
    status, ctype, body = asyncio.run(http(
        "POST", url("/api/v1/retire_workers"), data=b"{not json",
        headers={"Content-Type": "application/json"}))
    assert status == 500 and body == {"Error": "Internal Server Error"}
    status, _, body = asyncio.run(http("POST", url("/api/v1/retire_workers"),
                                       json={"workers": ["tcp://127.0.0.1:1"]}))
    assert (status, body) == (200, {})
    assert set(c.workers_by_name()) == {"w1", "w2"}

    stop = c.tmp_dir / "stop"
    busy = client.submit(sleep_until_file, str(stop), 60.0, 1, pure=False)
    wait_until(lambda: any(client.processing().values()), 30, "the task to start")
    assert asyncio.run(http("GET", url("/api/v1/check_idle")))[2] == {"idle_since": None}
    stop.touch()
    assert busy.result(timeout=30) == 1


def test_http_retire_workers_by_address(make_cluster):
    c = make_cluster([WorkerSpec(name="w1"), WorkerSpec(name="w2")], env=API_ENV)
    client = c.client()
    addrs = c.workers_by_name()
    computed, scattered, payloads = data_on(client, addrs["w1"])

    status, ctype, body = asyncio.run(http(
        "POST", c.scheduler.dashboard_url("/api/v1/retire_workers"),
        json={"workers": [addrs["w1"]]}))

    assert status == 200 and ctype.startswith("application/json")
    assert list(body) == [addrs["w1"]]
    assert body[addrs["w1"]]["name"] == "w1"
    assert set(c.workers_by_name()) == {"w2"}
    for key, where in client.who_has(computed + scattered).items():
        assert list(where) == [addrs["w2"]], key
    assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(6)]
    assert client.gather(scattered) == payloads


def test_operator_scale_down_over_http(make_cluster, monkeypatch):
    c = make_cluster([WorkerSpec(name="grp-a"), WorkerSpec(name="grp-b"),
                      WorkerSpec(name="grp-c", nanny=True)], env=API_ENV)
    client = c.client()
    addrs = c.workers_by_name()
    # Every worker holds data only it has: whichever the scheduler picks, its
    # data must survive.
    held = {name: data_on(client, addr, n=3) for name, addr in addrs.items()}
    point_operator_at(monkeypatch, c)

    retired = operator_retire(1)

    assert len(retired) == 1 and retired[0] in addrs
    assert set(c.workers_by_name()) == set(addrs) - set(retired)
    for computed, scattered, payloads in held.values():
        assert [f.result(timeout=30) for f in computed] == [1, 2, 3]
        assert client.gather(scattered) == payloads
    gone = next(w for w in c.workers if w.name == retired[0])
    # HTTP retirement removes the worker without closing it; it shuts itself
    # down once the scheduler dropped it (the operator then deletes the pod).
    wait_until(lambda: not gone.alive(), 60, "the retired worker to exit",
               context=c.diagnostics)
    assert set(c.workers_by_name()) == set(addrs) - set(retired)


def test_operator_scale_down_over_rpc(make_cluster, monkeypatch):
    c = make_cluster([WorkerSpec(name="grp-a"), WorkerSpec(name="grp-b")], env=API_ENV)
    client = c.client()
    addrs = c.workers_by_name()
    held = {name: data_on(client, addr, n=3) for name, addr in addrs.items()}
    # The HTTP calls get 404 here, so the operator uses the RPC:
    # workers_to_close(n=1, attribute="name") then retire_workers(names=...).
    point_operator_at(monkeypatch, c, dashboard_path="/not-served")

    retired = operator_retire(1)

    assert len(retired) == 1 and retired[0] in addrs
    assert set(c.workers_by_name()) == set(addrs) - set(retired)
    for computed, scattered, payloads in held.values():
        assert [f.result(timeout=30) for f in computed] == [1, 2, 3]
        assert client.gather(scattered) == payloads


def test_operator_idle_and_desired_workers(make_cluster, monkeypatch):
    c = make_cluster([WorkerSpec(name="w1"), WorkerSpec(name="w2")], env=API_ENV)
    client = c.client()
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2

    for path in ("", "/not-served"):  # HTTP, then the RPC fallback
        point_operator_at(monkeypatch, c, dashboard_path=path)

        def idle_since():
            try:
                return asyncio.run(ctl.check_scheduler_idle("sched", "ns", log))
            except TypeError:  # busy: idle_since is None, float(None) fails
                return None

        wait_until(lambda: idle_since() is not None, 30, "the scheduler to be idle")
        since = idle_since()
        assert isinstance(since, float) and since > 0
        desired = asyncio.run(ctl.get_desired_workers("sched", "ns"))
        assert isinstance(desired, int) and 0 <= desired <= 2


def test_rpc_ops_like_the_operator(make_cluster):
    c = make_cluster([WorkerSpec(name="w1"), WorkerSpec(name="w2")])
    client = c.client()
    addrs = c.workers_by_name()
    computed, scattered, payloads = data_on(client, addrs["w2"])

    async def go():
        async with rpc(c.address) as s:
            target = await s.adaptive_target()
            idle = await s.check_idle()
            by_name = await s.workers_to_close(n=1, attribute="name")
            by_addr = await s.workers_to_close(n=1)
            retired = await s.retire_workers(names=list(by_name))
            return target, idle, by_name, by_addr, retired

    target, idle, by_name, by_addr, retired = asyncio.run(go())
    assert isinstance(target, int)
    assert idle is None or isinstance(idle, float)
    # w1 holds nothing, so it is the cheap one to close.
    assert list(by_name) == ["w1"]
    assert list(by_addr) == [addrs["w1"]]
    assert list(retired) == [addrs["w1"]] and retired[addrs["w1"]]["name"] == "w1"
    assert set(c.workers_by_name()) == {"w2"}
    assert [f.result(timeout=30) for f in computed] == [i + 1 for i in range(6)]
    assert client.gather(scattered) == payloads


def test_idle_timeout_closes_the_scheduler_only_when_idle(make_cluster):
    c = make_cluster([WorkerSpec(name="w1")], extra=["--idle-timeout", "2s"])
    client = c.client()
    stop = c.tmp_dir / "stop-idle"
    # Busy for longer than the idle timeout: the scheduler must stay up.
    busy = client.submit(sleep_until_file, str(stop), 60.0, "ok", pure=False)
    wait_until(lambda: any(client.processing().values()), 30, "the task to start")
    time.sleep(4)
    assert c.scheduler.alive(), "the scheduler closed while a task was running"
    stop.touch()
    assert busy.result(timeout=30) == "ok"
    # Then, with nothing to do, it closes by itself, cleanly.
    wait_until(lambda: not c.scheduler.alive(), 60, "the idle scheduler to close",
               context=c.diagnostics)
    assert c.scheduler.returncode == 0

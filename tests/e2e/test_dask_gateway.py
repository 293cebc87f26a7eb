"""dask-gateway's scheduler side: a dask-gateway cluster runs ``dask
scheduler --preload dask_gateway.scheduler_preload``, whose ``dask_setup``
starts an HTTP API on the scheduler's host (the gateway asks it to scale or
adapt), adds a scheduler plugin that follows the workers, and sends the
gateway a heartbeat with the scheduler's and dashboard's addresses and the
workers it wants, retires those it no longer wants
(``workers_to_close``, ``retire_workers``), scales by ``adaptive_target``,
and asks the gateway to shut the cluster down once it has been idle
(``transition_log``, ``unrunnable``, ``time_started``, ``loop.time()``).
Here the gateway is a small HTTP server that records what the preload
sends; the preload is dask-gateway's own (pinned in
``python/requirements-test.txt``)."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .cluster import Worker, WorkerSpec, free_port, wait_until

TIMEOUT = 60
TOKEN = "gateway-token"


class Gateway:
    """What the preload talks to: records heartbeats and shutdown requests."""

    def __init__(self):
        self.heartbeats: list[dict] = []
        self.deletes: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                assert self.headers.get("Authorization") == f"token {TOKEN}"
                assert self.path == "/api/v1/clusters/c1/heartbeat", self.path
                gateway.heartbeats.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def do_DELETE(self):
                gateway.deletes.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/api"

    def last(self) -> dict:
        return self.heartbeats[-1] if self.heartbeats else {}

    def close(self):
        self.server.shutdown()


@pytest.fixture
def gateway():
    g = Gateway()
    yield g
    g.close()


def start(make_scheduler, gateway, *options):
    api_port = free_port()
    sched = make_scheduler(
        extra=[
            "--preload", "dask_gateway.scheduler_preload",
            "--dg-api-address", f"127.0.0.1:{api_port}",
            "--dg-heartbeat-period", "0.5",
            "--dg-adaptive-period", "0.3",
            *options,
        ],
        env={
            "DASK_GATEWAY_CLUSTER_NAME": "c1",
            "DASK_GATEWAY_API_URL": gateway.url,
            "DASK_GATEWAY_API_TOKEN": TOKEN,
        },
    )
    return sched, api_port


def ask(api_port, **msg):
    """What the gateway sends the scheduler's API: scale or adapt."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/api/comm",
        data=json.dumps(msg).encode(),
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def test_heartbeats_scaling_and_retiring_workers(make_scheduler, gateway, tmp_path):
    sched, api_port = start(make_scheduler, gateway)
    wait_until(lambda: gateway.heartbeats, TIMEOUT, "the first heartbeat", context=sched.describe)
    beat = gateway.last()
    assert beat["scheduler_address"] == sched.address
    assert beat["dashboard_address"] == f"http://127.0.0.1:{sched.dashboard_port}"
    assert beat["api_address"] == f"http://127.0.0.1:{api_port}"
    assert beat["count"] == 0 and beat["active_workers"] == []

    assert ask(api_port, op="scale", count=1) == 200
    wait_until(lambda: gateway.last().get("count") == 1, TIMEOUT, "count 1", context=sched.describe)

    # the gateway starts the worker it asked for; the preload's plugin sees it
    worker = Worker(sched.address, tmp_path, WorkerSpec(name="dg-0"))
    try:
        wait_until(lambda: gateway.last().get("active_workers") == ["dg-0"], TIMEOUT,
                   "the worker in a heartbeat", context=sched.describe)
        # scaling down: the preload picks the worker to close and retires it
        assert ask(api_port, op="scale", count=0) == 200
        wait_until(lambda: "dg-0" in gateway.last().get("closed_workers", []), TIMEOUT,
                   "the worker closed", context=sched.describe)
        assert any(b.get("closing_workers") == ["dg-0"] for b in gateway.heartbeats)
        assert worker.wait(TIMEOUT) is not None, "the retired worker did not exit"
    finally:
        worker.stop()


def test_adaptive_scaling_follows_adaptive_target(make_scheduler, gateway):
    sched, api_port = start(make_scheduler, gateway)
    wait_until(lambda: gateway.heartbeats, TIMEOUT, "the first heartbeat", context=sched.describe)
    # no work: adaptive_target is 0, so the minimum decides
    assert ask(api_port, op="adapt", minimum=2, maximum=5) == 200
    wait_until(lambda: gateway.last().get("count") == 2, TIMEOUT, "count 2", context=sched.describe)
    assert ask(api_port, op="adapt", active=False) == 200
    assert ask(api_port, op="scale", count=3) == 200
    wait_until(lambda: gateway.last().get("count") == 3, TIMEOUT, "count 3", context=sched.describe)


def test_an_idle_cluster_asks_the_gateway_to_shut_it_down(make_scheduler, gateway):
    sched, _ = start(make_scheduler, gateway, "--dg-idle-timeout", "2")
    wait_until(lambda: gateway.deletes, TIMEOUT, "the shutdown request", context=sched.describe)
    assert gateway.deletes[0] == "/api/v1/clusters/c1"
    assert "Cluster has been idle" in sched.log_text()

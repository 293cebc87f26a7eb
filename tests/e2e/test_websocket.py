"""Dask over WebSockets: the scheduler started with ``--protocol ws`` (or
``wss`` with TLS flags) listens on ``ws://``, and real clients and ``dask
worker``s speak distributed's WebSocket comm to it (each message a frame
count, then one binary WebSocket message per frame). The workers listen on
the scheduler's scheme, so transfers between workers and the scheduler's own
connections to the workers go over WebSockets too. Every test here not
marked ``rust_only`` also passes against the Python scheduler
(``DASK_SCHEDULER_IMPL=python``).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

import pytest
from distributed import Client

from .cluster import (
    HOST,
    IMPL,
    Cluster,
    Scheduler,
    Worker,
    WorkerSpec,
    free_port,
    port_open,
    wait_until,
)
from .helpers import inc, run_some_work, unique
from .tls_certs import CertAuthority, client_security, worker_flags

WS_TIMEOUT = 30
BIG = 20_000_000  # over the WebSocket comm's 8 MiB shard size


def make_bytes(n: int) -> bytes:
    return b"x" * n


def check_address(reported: str, scheme: str, port: int) -> None:
    """The address a WebSocket scheduler reports. Python's ``WSListener``
    binds every interface whatever ``--host`` says, and so reports the
    machine's outward IP; this scheduler binds and reports the host given."""
    assert reported.startswith(f"{scheme}://") and reported.endswith(f":{port}"), reported
    if IMPL == "rust":
        assert reported == f"{scheme}://{HOST}:{port}"


@pytest.fixture(scope="module")
def ws_cluster(tmp_path_factory):
    c = Cluster(
        tmp_path_factory.mktemp("ws-cluster"),
        [WorkerSpec(nthreads=1, name="ws-a"), WorkerSpec(nthreads=1, name="ws-b")],
        scheme="ws",
        extra=["--protocol", "ws"],
    )
    try:
        yield c
    finally:
        c.close()


def run_big_transfers(client: Client, names: dict[str, str]) -> None:
    """A value larger than one WebSocket shard moves worker to worker, from
    the client through the scheduler to a worker, and back to the client
    through the scheduler."""
    (a, b) = sorted(names.values())
    big = client.submit(make_bytes, BIG, workers=[a], key=unique("ws-big"))
    assert client.submit(len, big, workers=[b], key=unique("ws-len")).result(WS_TIMEOUT) == BIG
    assert len(client.gather(big, direct=False)) == BIG
    [scattered] = client.scatter([b"y" * BIG], workers=[b], direct=False)
    assert client.submit(len, scattered, key=unique("ws-slen")).result(WS_TIMEOUT) == BIG


def test_a_websocket_cluster_runs_work_end_to_end(ws_cluster):
    client = ws_cluster.client()
    check_address(client.scheduler_info()["address"], "ws", ws_cluster.scheduler.port)
    names = ws_cluster.workers_by_name()
    assert set(names) == {"ws-a", "ws-b"}
    assert all(addr.startswith("ws://") for addr in names.values()), names
    run_some_work(client, names, WS_TIMEOUT)
    run_big_transfers(client, names)


def test_the_websocket_port_refuses_what_is_not_dask(ws_cluster):
    host_port = ws_cluster.address.split("://", 1)[1]
    # an HTTP request that is not an upgrade, and one for another path
    for path in ("/", "/health"):
        with pytest.raises((OSError, urllib.error.URLError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://{host_port}{path}", timeout=10).read()
    # the cluster and its clients carry on
    client = ws_cluster.client()
    assert client.submit(inc, 41, key=unique("ws-after")).result(timeout=WS_TIMEOUT) == 42
    assert ws_cluster.scheduler.alive()
    assert len(ws_cluster.workers_by_name()) == 2


@pytest.mark.rust_only
def test_refused_websocket_peers_are_logged(ws_cluster):
    """(Python's tornado server keeps a peer that sends no HTTP request
    open for good, so a ``tcp://`` client there hangs.)"""
    host_port = ws_cluster.address.split("://", 1)[1]
    # Dask's plain TCP framing to the WebSocket port: no upgrade within the
    # handshake timeout closes the connection
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://{host_port}", timeout=3, set_as_default=False)
    with pytest.raises((OSError, urllib.error.URLError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://{host_port}/nope", timeout=10).read()
    wait_until(
        lambda: "WebSocket upgrade failed" in ws_cluster.scheduler.log_text(),
        10,
        "the refused upgrade to be logged",
    )


def test_a_wss_cluster_runs_work_end_to_end(tmp_path):
    """``--protocol wss`` with TLS flags: WebSockets over mutual TLS."""
    ca = CertAuthority(tmp_path / "ca")
    sched = ca.issue("scheduler")
    c = Cluster(
        tmp_path / "cluster",
        [
            WorkerSpec(nthreads=1, name="wss-a",
                       extra=worker_flags(ca.ca_file, ca.issue("wss-a"))),
            WorkerSpec(nthreads=1, name="wss-b",
                       extra=worker_flags(ca.ca_file, ca.issue("wss-b"))),
        ],
        security=client_security(ca.ca_file, ca.issue("client")),
        scheme="wss",
        extra=["--protocol", "wss", *worker_flags(ca.ca_file, sched)],
    )
    try:
        client = c.client()
        check_address(client.scheduler_info()["address"], "wss", c.scheduler.port)
        names = c.workers_by_name()
        assert all(addr.startswith("wss://") for addr in names.values()), names
        run_some_work(client, names, WS_TIMEOUT)
        # a WebSocket client without a certificate is refused; the rest go on
        with pytest.raises((OSError, TimeoutError)):
            Client(f"ws://{c.address.split('://', 1)[1]}", timeout=3, set_as_default=False)
        assert client.submit(inc, 1, key=unique("wss-after")).result(WS_TIMEOUT) == 2
    finally:
        c.close()


@pytest.mark.rust_only
def test_what_websockets_need_is_named_at_startup(tmp_path):
    shared = free_port()
    cases = [
        (["--protocol", "wss"], free_port(), "wss:// needs a CA file and a certificate"),
        # (the harness gives one --port)
        (["--protocol", "tcp,ws"], free_port(), "lists of equal length"),
        # (Python serves both from the dashboard's HTTP server then)
        (["--protocol", "ws", "--dashboard-address", f":{shared}"], shared, "one port"),
        # on tcp:// too: its socket listens only once the scheduler is ready, so the
        # clash is found before then
        (["--dashboard-address", f"{HOST}:{shared}"], shared,
         "tcp:// and the dashboard on one port"),
    ]
    for extra, port, needle in cases:
        s = Scheduler(tmp_path, wait=False, extra=extra, port=port, dashboard=False)
        try:
            assert s.wait(60) not in (None, 0), s.describe()
            assert needle in s.log_text(), (extra, s.describe())
        finally:
            s.stop()


def test_a_websocket_scheduler_takes_its_address_from_host(tmp_path):
    """``--host ws://127.0.0.1`` alone picks the scheme, as in Python."""
    port = free_port()
    c = Cluster(tmp_path, [WorkerSpec(nthreads=1, name="ws-h")], scheme="ws",
                host=f"ws://{HOST}", port=port)
    try:
        client = c.client()
        check_address(client.scheduler_info()["address"], "ws", port)
        assert client.submit(inc, 2, key=unique("ws-host")).result(WS_TIMEOUT) == 3
    finally:
        c.close()


def test_one_scheduler_listens_on_tcp_and_ws_at_once(tmp_path):
    """``--protocol tcp,ws --port P,Q``: a worker on each listener, a client
    on the WebSocket one; the scheduler's address is the first listener's,
    and the two workers exchange data across schemes."""
    ws_port = free_port()
    c = Cluster(tmp_path, [WorkerSpec(nthreads=1, name="on-tcp")], scheme="tcp",
                extra=["--protocol", "tcp,ws"], more_ports=[ws_port])
    try:
        ws_address = f"ws://{HOST}:{ws_port}"
        wait_until(lambda: port_open(ws_port), 30, "the ws:// listener")
        c.workers.append(Worker(ws_address, c.tmp_dir, WorkerSpec(nthreads=1, name="on-ws")))
        c.wait_for_worker_names(["on-ws"])
        client = Client(ws_address, timeout=WS_TIMEOUT, set_as_default=False)
        c.clients.append(client)
        assert client.scheduler_info()["address"] == c.address
        names = c.workers_by_name()
        assert names["on-tcp"].startswith("tcp://"), names
        assert names["on-ws"].startswith("ws://"), names
        run_some_work(client, names, WS_TIMEOUT)
    finally:
        c.close()

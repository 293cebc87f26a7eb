"""``tls://`` comms: the scheduler started with ``--tls-ca-file``,
``--tls-cert`` and ``--tls-key`` (or Dask's ``distributed.comm.tls.*``
config) talks mutual TLS to real clients and ``dask worker``s, as the Python
scheduler does with ``Security``: every peer shows a certificate signed by
the cluster's CA, host names are not checked, and a peer without one costs
only its own connection. Every test here not marked ``rust_only`` also
passes against the Python scheduler (``DASK_SCHEDULER_IMPL=python``).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request

import pytest
from distributed import Client

from .cluster import HOST, Cluster, Scheduler, WorkerSpec, free_port, wait_until
from .helpers import inc, run_some_work, unique
from .tls_certs import CertAuthority, client_security, self_signed, worker_flags

TLS_TIMEOUT = 30


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CertAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_cluster(ca, tmp_path_factory):
    """A scheduler whose key is appended to its certificate file (no
    ``--tls-key``), one worker with an RSA key and one with an EC key."""
    sched = ca.issue("scheduler", key_in_cert=True)
    workers = [
        WorkerSpec(nthreads=1, name="tls-rsa", extra=worker_flags(ca.ca_file, ca.issue("w-rsa"))),
        WorkerSpec(nthreads=1, name="tls-ec",
                   extra=worker_flags(ca.ca_file, ca.issue("w-ec", ec_key=True))),
    ]
    c = Cluster(
        tmp_path_factory.mktemp("tls-cluster"),
        workers,
        security=client_security(ca.ca_file, ca.issue("client")),
        scheme="tls",
        extra=["--tls-ca-file", str(ca.ca_file), "--tls-cert", str(sched.cert)],
    )
    try:
        yield c
    finally:
        c.close()


def test_a_tls_cluster_runs_work_end_to_end(tls_cluster):
    client = tls_cluster.client()
    info = client.scheduler_info()
    assert info["address"] == tls_cluster.address
    assert info["address"].startswith("tls://")
    names = tls_cluster.workers_by_name()
    assert set(names) == {"tls-rsa", "tls-ec"}
    assert all(addr.startswith("tls://") for addr in names.values()), names
    run_some_work(client, names)


def test_a_peer_without_a_valid_certificate_costs_only_its_connection(tls_cluster, ca, tmp_path):
    host_port = tls_cluster.address.split("://", 1)[1]
    # a plain tcp:// client
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://{host_port}", timeout=3, set_as_default=False)
    # a certificate signed by another CA
    stranger = CertAuthority(tmp_path / "stranger", name="stranger-ca")
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_cluster.address, timeout=3, set_as_default=False,
               security=client_security(ca.ca_file, stranger.issue("client")))
    # a client that trusts only another CA refuses the scheduler
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_cluster.address, timeout=3, set_as_default=False,
               security=client_security(stranger.ca_file, stranger.issue("client2")))
    # the cluster and its clients carry on
    client = tls_cluster.client()
    assert client.submit(inc, 41, key=unique("after")).result(timeout=TLS_TIMEOUT) == 42
    assert tls_cluster.scheduler.alive()
    assert len(tls_cluster.workers_by_name()) == 2


def test_one_self_signed_certificate_for_every_role_from_dask_config(tmp_path):
    """Like ``Security.temporary()``: one self-signed certificate is CA file
    and certificate of every role. The scheduler reads it from Dask's config
    (``DASK_DISTRIBUTED__COMM__*``); ``require-encryption`` makes it listen
    on ``tls://`` without any TLS flag."""
    shared = self_signed(tmp_path / "certs")
    env = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(shared.cert),
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": str(shared.cert),
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": str(shared.key),
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
    }
    flags = worker_flags(shared.cert, shared)
    c = Cluster(
        tmp_path / "cluster",
        [WorkerSpec(nthreads=1, name="ss-a", extra=flags),
         WorkerSpec(nthreads=1, name="ss-b", extra=flags)],
        security=client_security(shared.cert, shared),
        scheme="tls",
        env=env,
    )
    try:
        client = c.client()
        assert client.scheduler_info()["address"].startswith("tls://")
        run_some_work(client, c.workers_by_name())
    finally:
        c.close()


def test_require_encryption_refuses_a_tcp_listener(tmp_path, ca):
    """TLS flags require encryption (Python's ``Security(**flags)``), so
    ``--protocol tcp`` with them cannot start."""
    sched = ca.issue("sched-tcp")
    s = Scheduler(tmp_path, wait=False,
                  extra=["--protocol", "tcp", *worker_flags(ca.ca_file, sched)])
    try:
        assert s.wait(60) not in (None, 0), s.describe()
    finally:
        s.stop()


@pytest.mark.rust_only
def test_what_tls_needs_is_named_at_startup(tmp_path, ca):
    sched = ca.issue("sched-named")
    cases = [
        (["--protocol", "tls"], "--tls-ca-file"),
        (["--tls-ca-file", str(ca.ca_file)], "--tls-cert"),
        (["--protocol", "tcp", *worker_flags(ca.ca_file, sched)], "refusing to listen on tcp://"),
        (["--tls-ca-file", str(tmp_path / "missing.pem"), "--tls-cert", str(sched.cert)],
         "missing.pem"),
        (["--tls-ca-file", str(ca.ca_file), "--tls-cert", str(ca.ca_file)], "private key"),
    ]
    for extra, needle in cases:
        s = Scheduler(tmp_path, wait=False, extra=extra, port=free_port())
        try:
            assert s.wait(60) not in (None, 0), s.describe()
            assert needle in s.log_text(), (extra, s.describe())
        finally:
            s.stop()


@pytest.mark.rust_only
def test_a_tls_scheduler_logs_refused_peers(tls_cluster):
    host_port = tls_cluster.address.split("://", 1)[1]
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://{host_port}", timeout=3, set_as_default=False)
    wait_until(
        lambda: "TLS handshake failed" in tls_cluster.scheduler.log_text(),
        10,
        "the refused handshake to be logged",
    )
    assert HOST in tls_cluster.scheduler.log_text()


def fetch(url: str, context=None) -> str:
    with urllib.request.urlopen(url, timeout=10, context=context) as r:
        return r.read().decode()


def test_the_dashboard_port_serves_https_when_configured(make_scheduler, ca):
    """``distributed.scheduler.dashboard.tls.cert``/``.key``: /health and
    /metrics over HTTPS (no client certificate asked for, as in Python); a
    plain-HTTP request to that port fails without harming the server."""
    web = ca.issue("dashboard")
    s = make_scheduler(env={
        "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT": str(web.cert),
        "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__KEY": str(web.key),
    })
    trusted = ssl.create_default_context(cafile=str(ca.ca_file))
    base = f"https://{HOST}:{s.dashboard_port}"

    def healthy():
        try:
            return fetch(base + "/health", trusted) == "ok"
        except (OSError, urllib.error.URLError):
            return False

    wait_until(healthy, 30, "/health over HTTPS", context=s.describe)
    assert "dask_scheduler_workers" in fetch(base + "/metrics", trusted)
    # (a TLS alert back is not an HTTP status line)
    with pytest.raises((OSError, urllib.error.URLError, http.client.HTTPException)):
        fetch(f"http://{HOST}:{s.dashboard_port}/health")
    # a client that does not trust the certificate refuses it
    with pytest.raises(urllib.error.URLError):
        fetch(base + "/health", ssl.create_default_context())
    assert fetch(base + "/health", trusted) == "ok"
    assert s.alive()

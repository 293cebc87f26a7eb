"""Issue 2, point 9: command-line compatibility with `dask scheduler`, and /health."""

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from distributed import Client

from .cluster import (
    HOST, ManagedProcess, Scheduler, Worker, WorkerSpec, port_open, scheduler_command,
    wait_until,
)
from .helpers import inc


def http_get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def assert_works(address: str, **client_kwargs):
    """A client connects and talks to the scheduler; return scheduler_info()."""
    with Client(address, timeout=30, set_as_default=False, **client_kwargs) as c:
        info = c.scheduler_info()
        assert info["type"] == "Scheduler"
        assert c.who_has() == {}
        assert c.nthreads() == {}
        return info


def test_health(make_scheduler):
    s = make_scheduler()
    status, body = http_get(s.dashboard_url("/health"))
    assert status == 200
    assert body.strip() == "ok"


def test_help_lists_deployment_flags():
    out = subprocess.run(scheduler_command() + ["--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    for flag in ("--host", "--port", "--dashboard-address", "--no-dashboard", "--protocol",
                 "--scheduler-file", "--idle-timeout", "--pid-file", "--interface"):
        assert flag in out.stdout, f"{flag} missing from --help"


def test_host_and_port(make_scheduler):
    s = make_scheduler()
    info = assert_works(s.address)
    assert info["address"] == s.address


def test_host_all_interfaces(make_scheduler, tmp_path):
    s = make_scheduler(host="0.0.0.0")  # reached through 127.0.0.1
    info = assert_works(s.address)
    assert info["address"].startswith("tcp://")
    assert info["address"].endswith(f":{s.port}")
    # a worker and a client work through it too
    w = Worker(s.address, tmp_path, WorkerSpec(name="w0"))
    try:
        with Client(s.address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=60)
            assert c.submit(inc, 1).result(timeout=30) == 2
    finally:
        w.stop()


def test_exact_operator_invocation(tmp_path):
    """`dask-scheduler --host 0.0.0.0`, nothing else: default ports 8786 / 8787."""
    if port_open(8786) or port_open(8787):
        pytest.skip("ports 8786/8787 are in use on this machine")
    proc = ManagedProcess(scheduler_command() + ["--host", "0.0.0.0"], tmp_path / "sched.log")
    proc.kind = "scheduler"
    try:
        wait_until(lambda: port_open(8786) or not proc.alive(), 30, "port 8786 to open")
        assert proc.alive(), proc.describe()
        assert_works(f"tcp://{HOST}:8786")
        wait_until(lambda: port_open(8787), 10, "the dashboard port 8787 to open")
        assert http_get(f"http://{HOST}:8787/health") == (200, "ok")
    finally:
        proc.stop()


def test_dashboard_address(make_scheduler):
    s = make_scheduler()
    info = assert_works(s.address)
    assert info["services"]["dashboard"] == s.dashboard_port
    assert port_open(s.dashboard_port)


def test_no_dashboard_flag_accepted(make_scheduler):
    # (the Python scheduler still serves HTTP, e.g. /health, with --no-dashboard;
    # only the Bokeh dashboard goes away, so nothing is asserted about the port)
    s = make_scheduler(extra=["--no-dashboard"])
    assert_works(s.address)


def test_protocol_tcp(make_scheduler):
    s = make_scheduler(extra=["--protocol", "tcp"])
    info = assert_works(s.address)
    assert info["address"].startswith("tcp://")


def test_interface_lo(make_scheduler):
    s = make_scheduler(host=None, extra=["--interface", "lo"])
    info = assert_works(s.address)
    assert info["address"] == f"tcp://127.0.0.1:{s.port}"


def test_scheduler_file(make_scheduler, tmp_path):
    path = tmp_path / "scheduler.json"
    s = make_scheduler(extra=["--scheduler-file", str(path)])
    wait_until(lambda: path.exists() and path.read_text().strip(), 10, "the scheduler file")
    data = json.loads(path.read_text())
    assert data["type"] == "Scheduler"
    assert data["address"] == s.address
    assert data["id"]
    assert data["services"]["dashboard"] == s.dashboard_port

    # both clients and workers find the scheduler through the file
    w = Worker(None, tmp_path, WorkerSpec(name="from-file", extra=["--scheduler-file", str(path)]))
    try:
        with Client(scheduler_file=str(path), timeout=30, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=60)
            assert c.submit(inc, 41).result(timeout=30) == 42
    finally:
        w.stop()


def test_pid_file(make_scheduler, tmp_path):
    path = tmp_path / "scheduler.pid"
    s = make_scheduler(extra=["--pid-file", str(path)])
    wait_until(lambda: path.exists() and path.read_text().strip(), 10, "the pid file")
    assert int(path.read_text()) == s.pid
    assert_works(s.address)  # fully started (signal handling installed) before SIGTERM
    s.send_signal(signal.SIGTERM)
    assert s.wait(20) == 0
    assert not path.exists(), "the pid file is removed on exit"


def test_sigterm_exits_cleanly(make_scheduler):
    s = make_scheduler()
    assert_works(s.address)
    s.send_signal(signal.SIGTERM)
    assert s.wait(20) == 0, s.describe()


def test_idle_timeout(make_scheduler):
    t0 = time.monotonic()
    s = make_scheduler(extra=["--idle-timeout", "2s"])
    assert s.wait(30) == 0, "the scheduler did not exit by itself when idle\n" + s.describe()
    assert time.monotonic() - t0 > 1.5


DASK_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - [\w.]+ - (DEBUG|INFO|WARNING|WARN|ERROR) - "
)


def test_logs_are_readable_like_dask(make_cluster):
    c = make_cluster([WorkerSpec(name="logged")])
    worker_addr = c.workers_by_name()["logged"]
    lines = [ln for ln in c.scheduler.log_text().splitlines() if DASK_LOG_LINE.match(ln)]
    assert lines, "no log line in Dask's format (time - logger - LEVEL - message)"
    assert any(c.address in ln for ln in lines), "the listening address is not logged"
    assert any(worker_addr in ln for ln in lines), "the worker's registration is not logged"


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss to read a backlog")
def test_socket_backlog_from_dask_config(tmp_path):
    """``distributed.comm.socket-backlog``: the listening socket's queue of
    pending connections (``ss`` shows it as the listener's Send-Q)."""
    s = Scheduler(tmp_path, env={"DASK_DISTRIBUTED__COMM__SOCKET_BACKLOG": "77"})
    try:
        port = s.address.rsplit(":", 1)[1]
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        assert out[0] == "LISTEN" and out[2] == "77", out
    finally:
        s.stop()

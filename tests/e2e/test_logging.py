"""Issue 5, point 7: log lines in Dask's format with the life-cycle lines a
Dask user greps for, and the level from Dask's logging config
(``DASK_LOGGING__DISTRIBUTED``). Also passes with DASK_SCHEDULER_IMPL=python.
"""

from __future__ import annotations

import re

import pytest

from .cluster import Cluster, Scheduler, WorkerSpec, wait_until
from .helpers import inc

# "2026-11-22 02:14:38,123 - distributed.scheduler - INFO - message"
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (distributed[\w.]*) - "
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) - (.*)$")


def scheduler_messages(text: str, level: str = "INFO") -> list[str]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and m.group(1) == "distributed.scheduler" and m.group(2) == level:
            out.append(m.group(3))
    return out


def test_lifecycle_lines(tmp_path):
    c = Cluster(tmp_path, [WorkerSpec(nthreads=1)])
    try:
        (name, addr), = c.workers_by_name().items()
        client = c.client()
        assert client.submit(inc, 1).result() == 2
        client_id = client.id
        client.close()
        wait_until(lambda: f"Remove client {client_id}" in c.scheduler.log_text(), 30,
                   "the client removal to be logged")
        c.kill_worker(c.workers[0])
        wait_until(lambda: "Lost all workers" in c.scheduler.log_text(), 60,
                   "the worker loss to be logged")
        msgs = scheduler_messages(c.scheduler.log_text())
        assert f"Register worker addr: {addr} name: {name}" in msgs, msgs
        assert f"Starting worker compute stream, {addr}" in msgs, msgs
        assert f"Receive client connection: {client_id}" in msgs, msgs
        assert f"Remove client {client_id}" in msgs, msgs
        assert f"Close client connection: {client_id}" in msgs, msgs
        removed = [m for m in msgs if m.startswith(f"Remove worker addr: {addr} name: {name} (")]
        assert len(removed) == 1, msgs
        assert re.fullmatch(r".*\(stimulus_id='[^']+'\)", removed[0]), removed
        assert "Lost all workers" in msgs
        # the order a user reads them in
        assert msgs.index(f"Register worker addr: {addr} name: {name}") < msgs.index(
            f"Receive client connection: {client_id}") < msgs.index(removed[0])
    finally:
        c.close()


def test_level_from_dask_logging_config(tmp_path):
    s = Scheduler(tmp_path, env={"DASK_LOGGING__DISTRIBUTED": "warning"})
    try:
        from distributed import Client

        with Client(s.address, timeout=30, set_as_default=False) as client:
            client_id = client.id
            assert client.scheduler_info()["type"] == "Scheduler"
        text = s.log_text()
        assert f"Receive client connection: {client_id}" not in text
        assert scheduler_messages(text, "INFO") == []
    finally:
        s.stop()


@pytest.mark.rust_only
def test_explicit_log_level_wins(tmp_path):
    s = Scheduler(tmp_path, extra=["--log-level", "info"],
                  env={"DASK_LOGGING__DISTRIBUTED": "error"})
    try:
        from distributed import Client

        with Client(s.address, timeout=30, set_as_default=False) as client:
            client_id = client.id
        wait_until(lambda: f"Receive client connection: {client_id}" in s.log_text(), 30,
                   "the client connection to be logged")
    finally:
        s.stop()


def test_level_from_dask_yaml_logging_config(tmp_path):
    """The ``logging:`` section of a Dask YAML config file (not only the
    environment variables) sets the scheduler's level."""
    conf = tmp_path / "dask-config"
    conf.mkdir()
    (conf / "logging.yaml").write_text(
        "logging:\n  distributed: info\n  distributed.scheduler: warning\n")
    s = Scheduler(tmp_path, env={"DASK_CONFIG": str(conf)})
    try:
        from distributed import Client

        with Client(s.address, timeout=30, set_as_default=False) as client:
            client_id = client.id
            assert client.scheduler_info()["type"] == "Scheduler"
        text = s.log_text()
        assert f"Receive client connection: {client_id}" not in text
        assert scheduler_messages(text, "INFO") == [], text
    finally:
        s.stop()

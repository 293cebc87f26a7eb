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


LOGFMT = "level=%(levelname)s logger=%(name)s msg=%(message)s"
JSON_FORMAT = '{"level": "%(levelname)s", "logger": "%(name)s", "message": "%(message)s"}'


@pytest.mark.parametrize("how", ["env", "yaml"])
def test_log_format_from_dask_config(tmp_path, how):
    """``distributed.admin.log-format``, the Python logging format operators
    set for their log collectors, from the environment variable (here
    logfmt: Dask parses a value that looks like a Python literal, such as a
    JSON object, as that literal) or a YAML config file (here JSON lines):
    the scheduler's lines and ``get_scheduler_logs`` follow it."""
    if how == "env":
        env = {"DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": LOGFMT}
        line = "level=INFO logger=distributed.scheduler msg=Receive client connection: {}"
    else:
        conf = tmp_path / "dask-config"
        conf.mkdir()
        (conf / "admin.yaml").write_text(
            f"distributed:\n  admin:\n    log-format: '{JSON_FORMAT}'\n")
        env = {"DASK_CONFIG": str(conf)}
        line = ('{{"level": "INFO", "logger": "distributed.scheduler", '
                '"message": "Receive client connection: {}"}}')
    s = Scheduler(tmp_path, env=env)
    try:
        from distributed import Client

        with Client(s.address, timeout=30, set_as_default=False) as client:
            want = line.format(client.id)
            wait_until(lambda: want in s.log_text().splitlines(), 30,
                       f"the line {want!r}", context=s.log_text)
            logs = client.get_scheduler_logs(n=20)
            assert any(text == want for _, text in logs), logs
        assert not scheduler_messages(s.log_text()), "a line in the default format"
    finally:
        s.stop()


@pytest.mark.rust_only  # Python's logging prints a "Logging error" for every line
def test_a_log_format_naming_an_unknown_field_is_refused(tmp_path):
    s = Scheduler(tmp_path, env={"DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": "%(asctime)s %(nope)s"})
    try:
        from distributed import Client

        with Client(s.address, timeout=30, set_as_default=False) as client:
            client_id = client.id
        wait_until(lambda: f"Receive client connection: {client_id}"
                   in scheduler_messages(s.log_text()), 30, "a line in the default format")
        assert "log-format field %(nope) is not supported" in s.log_text()
    finally:
        s.stop()

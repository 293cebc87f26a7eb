"""Issue 5, point 7: log lines in Dask's format with the life-cycle lines a
Dask user greps for, and the level from Dask's logging config
(``DASK_LOGGING__DISTRIBUTED``). Also passes with DASK_SCHEDULER_IMPL=python.
"""

from __future__ import annotations

import re
import time

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


def dict_config(tmp_path, body: str) -> dict[str, str]:
    """A Dask config directory whose ``logging:`` is the dictConfig form
    (``version: 1``) with ``body`` below it; the environment to use it."""
    conf = tmp_path / "dask-config"
    conf.mkdir()
    lines = "\n".join("  " + line for line in body.strip("\n").splitlines())
    (conf / "logging.yaml").write_text(f"logging:\n  version: 1\n{lines}\n")
    return {"DASK_CONFIG": str(conf)}


def connect_once(s) -> str:
    from distributed import Client

    with Client(s.address, timeout=30, set_as_default=False) as client:
        assert client.scheduler_info()["type"] == "Scheduler"
        return client.id


def test_dictconfig_handlers_formats_and_levels(tmp_path):
    """Dask's ``logging:`` config in its ``version: 1`` form (Python's
    ``logging.config.dictConfig``): a logger's level, a file handler and a
    stdout handler, each with its formatter (one in ``{`` style with a date
    format), and propagation to the root's handler."""
    log = tmp_path / "scheduler.log"
    env = dict_config(tmp_path, f"""
disable_existing_loggers: false
formatters:
  plain: {{format: "%(levelname)s|%(name)s|%(message)s"}}
  brace: {{format: "{{asctime}} <{{name}}> {{levelname}}: {{message}}", style: "{{", datefmt: "%H:%M:%S"}}
handlers:
  file: {{class: logging.FileHandler, filename: "{log}", formatter: plain}}
  out: {{class: logging.StreamHandler, stream: "ext://sys.stdout", formatter: brace}}
loggers:
  distributed.scheduler: {{level: INFO, handlers: [file]}}
  distributed.core: {{level: CRITICAL}}
root: {{level: WARNING, handlers: [out]}}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        client_id = connect_once(s)
        want = f"INFO|distributed.scheduler|Receive client connection: {client_id}"
        wait_until(lambda: log.exists() and want in log.read_text().splitlines(), 30,
                   f"the line {want!r} in the file", context=s.log_text)
        # the record went on to the root's handler (its level is the
        # logger's, not the root's), in the brace format with the date format
        out = re.compile(r"^\d\d:\d\d:\d\d <distributed\.scheduler> INFO: "
                         + re.escape(f"Receive client connection: {client_id}") + "$")
        wait_until(lambda: any(out.match(line) for line in s.log_text().splitlines()), 30,
                   "the line on stdout", context=s.log_text)
        assert not scheduler_messages(s.log_text()), "a line in Dask's default format"
        assert not scheduler_messages(log.read_text())
    finally:
        s.stop()


def test_dictconfig_level_silences_the_scheduler(tmp_path):
    env = dict_config(tmp_path, """
disable_existing_loggers: false
handlers:
  err: {class: logging.StreamHandler, stream: "ext://sys.stderr"}
loggers:
  distributed: {level: ERROR, handlers: [err], propagate: false}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        client_id = connect_once(s)
        time.sleep(0.5)
        assert f"Receive client connection: {client_id}" not in s.log_text()
    finally:
        s.stop()


def test_rotating_file_handler_rolls_over(tmp_path):
    log = tmp_path / "rot.log"
    env = dict_config(tmp_path, f"""
disable_existing_loggers: false
handlers:
  rot: {{class: logging.handlers.RotatingFileHandler, filename: "{log}", maxBytes: 400, backupCount: 2}}
loggers:
  distributed.scheduler: {{level: INFO, handlers: [rot]}}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        ids = [connect_once(s) for _ in range(6)]
        backup = tmp_path / "rot.log.1"
        wait_until(lambda: backup.exists() and f"Close client connection: {ids[-1]}"
                   in log.read_text(), 30, "a rolled-over log", context=s.log_text)
        for f in (log, backup):
            assert 0 < f.stat().st_size <= 400, f
        assert not (tmp_path / "rot.log.3").exists()
        text = "".join(f.read_text() for f in (tmp_path / "rot.log.2", backup, log)
                       if f.exists())
        # the newest lines, in order, the default formatter's message alone
        assert f"Receive client connection: {ids[-1]}\n" in text
    finally:
        s.stop()


def test_logging_file_config(tmp_path):
    """``logging-file-config``: a ``logging.config.fileConfig`` ini file."""
    log = tmp_path / "ini.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(f"""\
[loggers]
keys=root,scheduler

[handlers]
keys=file

[formatters]
keys=f

[logger_root]
level=WARNING
handlers=

[logger_scheduler]
level=INFO
handlers=file
qualname=distributed.scheduler

[handler_file]
class=FileHandler
formatter=f
args=({str(log)!r}, 'a')

[formatter_f]
format=ini %(name)s %(message)s
""")
    conf = tmp_path / "dask-config"
    conf.mkdir()
    # (Python reads the key from YAML only: DASK_LOGGING_FILE_CONFIG comes
    # out as `logging_file_config`, which distributed does not look for)
    (conf / "logging.yaml").write_text(f"logging-file-config: {ini}\n")
    s = Scheduler(tmp_path, env={"DASK_CONFIG": str(conf)})
    try:
        client_id = connect_once(s)
        want = f"ini distributed.scheduler Receive client connection: {client_id}"
        wait_until(lambda: log.exists() and want in log.read_text().splitlines(), 30,
                   f"the line {want!r}", context=s.log_text)
    finally:
        s.stop()


@pytest.mark.rust_only  # Python's scheduler runs any handler or formatter class
def test_dictconfig_parts_it_cannot_honour_are_named(tmp_path):
    env = dict_config(tmp_path, """
disable_existing_loggers: false
formatters:
  color: {(): colorlog.ColoredFormatter, fmt: "%(log_color)s%(message)s"}
handlers:
  sock: {class: logging.handlers.SocketHandler, host: 127.0.0.1, port: 9}
  colored: {class: logging.StreamHandler, formatter: color}
loggers:
  distributed.scheduler: {level: INFO, handlers: [sock, colored]}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        client_id = connect_once(s)
        wait_until(lambda: f"Receive client connection: {client_id}"
                   in scheduler_messages(s.log_text()), 30,
                   "lines in Dask's default format", context=s.log_text)
        text = s.log_text()
        assert ("handler class logging.handlers.SocketHandler is not supported by this "
                "scheduler") in text
        assert re.search(r"formatter class colorlog[.\w]*\.ColoredFormatter is not supported", text)
        # both handlers' lines: one each
        assert scheduler_messages(text).count(f"Receive client connection: {client_id}") == 2
    finally:
        s.stop()


def test_json_lines_from_python_json_logger(tmp_path):
    """python-json-logger's ``JsonFormatter``, what an operator names in
    Dask's logging config for a log collector that reads JSON: its fields
    from the format, a renamed field, a static field, the UTC timestamp and
    the date format, one object per line."""
    import json

    log = tmp_path / "scheduler.jsonl"
    env = dict_config(tmp_path, f"""
disable_existing_loggers: false
formatters:
  json:
    (): pythonjsonlogger.json.JsonFormatter
    fmt: "%(asctime)s %(levelname)s %(name)s %(message)s"
    datefmt: "%Y-%m-%dT%H:%M:%S"
    rename_fields: {{levelname: level}}
    static_fields: {{service: dask-scheduler, tags: [a, "é"]}}
    timestamp: true
handlers:
  file: {{class: logging.FileHandler, filename: "{log}", formatter: json}}
loggers:
  distributed.scheduler: {{level: INFO, handlers: [file], propagate: false}}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        client_id = connect_once(s)

        def record():
            for line in log.read_text().splitlines() if log.exists() else []:
                r = json.loads(line)
                if r["message"] == f"Receive client connection: {client_id}":
                    return r, line
            return None

        r, line = wait_until(record, 30, "the JSON line", context=s.log_text)
        assert list(r) == ["asctime", "level", "name", "message", "service", "tags",
                           "timestamp"], r
        assert (r["level"], r["name"], r["service"], r["tags"]) == (
            "INFO", "distributed.scheduler", "dask-scheduler", ["a", "é"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", r["asctime"]), r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00",
                            r["timestamp"]), r
        # json.dumps's spacing and ASCII escapes, as the formatter writes them
        assert '"tags": ["a", "\\u00e9"], "timestamp": "' in line, line
        # every line of the file is one JSON object
        assert all(json.loads(x) for x in log.read_text().splitlines())
    finally:
        s.stop()


def test_log_length_bounds_the_scheduler_logs(tmp_path):
    """``distributed.admin.log-length``: how many lines ``get_scheduler_logs``
    keeps."""
    s = Scheduler(tmp_path, env={"DASK_DISTRIBUTED__ADMIN__LOG_LENGTH": "3"})
    try:
        from distributed import Client

        with Client(s.address, timeout=30, set_as_default=False) as client:
            client_id = client.id
            logs = client.get_scheduler_logs(n=100)
            assert 0 < len(logs) <= 3, logs
            assert any(f"Receive client connection: {client_id}" in line
                       for _, line in logs), logs
    finally:
        s.stop()


@pytest.mark.rust_only  # the materializer's lines are this scheduler's own
def test_lines_before_the_config_is_read_go_through_it(tmp_path):
    """The scheduler learns Dask's logging config from its materializer's
    Python, so its first lines (that Python starting) come before it: they
    are held and written through the config's handlers too, as Python's
    scheduler writes every line (it applies the config at import)."""
    log = tmp_path / "all.log"
    env = dict_config(tmp_path, f"""
disable_existing_loggers: false
formatters:
  f: {{format: "X %(name)s %(message)s"}}
handlers:
  file: {{class: logging.FileHandler, filename: "{log}", formatter: f}}
root: {{level: INFO, handlers: [file]}}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        connect_once(s)
        wait_until(lambda: log.exists() and "X distributed.scheduler Receive client connection"
                   in log.read_text(), 30, "the lines in the file", context=s.log_text)
        lines = log.read_text().splitlines()
        ready = [i for i, line in enumerate(lines) if "graph materializer ready" in line]
        listening = [i for i, line in enumerate(lines) if "Scheduler at:" in line]
        assert ready and listening and ready[0] < listening[0], lines
        assert lines[ready[0]].startswith("X "), lines
        # nothing in Dask's default format on stderr
        assert not [line for line in s.log_text().splitlines() if LINE.match(line)], \
            s.log_text()
    finally:
        s.stop()


def test_the_signal_line_is_pythons_logger_and_words(tmp_path):
    """SIGTERM is logged as Python's ``distributed._signals`` logs it, so a
    logging config naming that logger applies to it here too."""
    s = Scheduler(tmp_path)
    connect_once(s)
    s.stop()
    want = re.compile(r"^\S+ \S+ - distributed\._signals - INFO - Received signal SIGTERM \(15\)$")
    assert any(want.match(line) for line in s.log_text().splitlines()), s.log_text()


def test_dictconfig_name_filters(tmp_path):
    """``logging.Filter(name)`` on handlers: each file gets the lines of its
    logger's subtree only."""
    import socket

    sched, comm = tmp_path / "sched.log", tmp_path / "comm.log"
    env = dict_config(tmp_path, f"""
disable_existing_loggers: false
filters:
  scheduler: {{name: distributed.scheduler}}
  comm: {{name: distributed.comm}}
handlers:
  sched: {{class: logging.FileHandler, filename: "{sched}", filters: [scheduler]}}
  comm: {{class: logging.FileHandler, filename: "{comm}", filters: [comm]}}
root: {{level: INFO, handlers: [sched, comm]}}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        client_id = connect_once(s)
        host, port = s.address.rsplit("/", 1)[1].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()
        wait_until(lambda: comm.exists() and "closed before handshake" in comm.read_text(), 30,
                   "the comm line in its file", context=s.log_text)
        wait_until(lambda: f"Receive client connection: {client_id}" in sched.read_text(), 30,
                   "the scheduler line in its file", context=s.log_text)
        assert "closed before handshake" not in sched.read_text()
        assert "Receive client connection" not in comm.read_text()
    finally:
        s.stop()


def test_timed_rotating_file_handler(tmp_path):
    """``TimedRotatingFileHandler`` (here every second): the file rolls over
    into ``<name>.<time>`` files, ``backupCount`` of which are kept."""
    log = tmp_path / "timed.log"
    env = dict_config(tmp_path, f"""
disable_existing_loggers: false
handlers:
  timed: {{class: logging.handlers.TimedRotatingFileHandler, filename: "{log}", when: S,
           backupCount: 2}}
loggers:
  distributed.scheduler: {{level: INFO, handlers: [timed]}}
""")
    s = Scheduler(tmp_path, env=env)
    try:
        ids = []
        for _ in range(5):
            ids.append(connect_once(s))
            time.sleep(1.1)
        ids.append(connect_once(s))
        stamped = re.compile(r"^timed\.log\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d$")
        rotated = sorted(p.name for p in tmp_path.iterdir() if stamped.match(p.name))
        assert 1 <= len(rotated) <= 2, sorted(p.name for p in tmp_path.iterdir())
        assert f"Receive client connection: {ids[-1]}" in log.read_text()
        assert f"Receive client connection: {ids[0]}" not in log.read_text()
    finally:
        s.stop()

"""Issue 5, point 4: `--idle-timeout` shuts the scheduler down cleanly after
that long without work, as Dask's does (`Scheduler.check_idle`): connected
clients do not keep it alive, running tasks do. Also passes with
DASK_SCHEDULER_IMPL=python.
"""

from __future__ import annotations

from .cluster import Cluster, WorkerSpec, wait_until
from .helpers import sleep_until_file, unique


def test_idle_timeout_waits_for_running_work(tmp_path):
    # Long enough for the worker and client to connect first: like Python's,
    # the scheduler counts as idle from the start.
    c = Cluster(tmp_path, [WorkerSpec(nthreads=1)], extra=["--idle-timeout", "10s"])
    try:
        client = c.client()
        stop = tmp_path / "stop"
        fut = client.submit(sleep_until_file, str(stop), 120, "done", key=unique("busy"))
        wait_until(lambda: sum(len(v) for v in client.processing().values()) == 1, 60,
                   "the task to run")
        # Busy for twice the idle timeout: the scheduler must stay up.
        assert c.scheduler.wait(12) is None, "closed while a task was running\n" + \
            c.scheduler.describe()
        stop.touch()
        assert fut.result(timeout=60) == "done"
        # Now idle (a client is still connected, which does not count as work).
        rc = c.scheduler.wait(60)
        assert rc == 0, f"exit status {rc}\n" + c.scheduler.describe()
        assert "Scheduler closing after being idle for" in c.scheduler.log_text()
    finally:
        c.close()


def test_idle_timeout_from_dask_config(tmp_path):
    """Without the flag, `distributed.scheduler.idle-timeout` from Dask's
    config (here its environment variable) applies, as in Python."""
    c = Cluster(tmp_path, [], env={"DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT": "3s"})
    try:
        rc = c.scheduler.wait(60)
        assert rc == 0, f"exit status {rc}\n" + c.scheduler.describe()
        assert "Scheduler closing after being idle for 3.00 s" in c.scheduler.log_text()
    finally:
        c.close()

"""`distributed.scheduler.blocked-handlers`: an operator can switch RPCs off
(e.g. `run_function`, which runs client code inside the scheduler)."""

import pytest

from .cluster import WorkerSpec
from .helpers import inc, unique

BLOCKED_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__BLOCKED_HANDLERS": '["run_function", "set_metadata"]'
}


def scheduler_pid():
    import os

    return os.getpid()


def test_blocked_handlers_answer_an_error_and_the_rest_works(make_cluster):
    c = make_cluster([WorkerSpec()], env=BLOCKED_ENV)
    client = c.client()
    for call in (
        lambda: client.run_on_scheduler(scheduler_pid),
        lambda: client.set_metadata("x", 1),
    ):
        with pytest.raises(ValueError, match="explicitly disallowed in Scheduler"):
            call()
    # the connection and the scheduler go on: other handlers answer
    assert client.get_metadata("x", default="none") == "none"
    assert client.submit(inc, 1, key=unique("x")).result(timeout=30) == 2
    # run on the workers is a different handler (`broadcast`)
    assert len(client.run(scheduler_pid)) == 1


def test_nothing_is_blocked_by_default(make_cluster):
    c = make_cluster([WorkerSpec()])
    client = c.client()
    client.set_metadata("x", 1)
    assert client.get_metadata("x") == 1
    assert isinstance(client.run_on_scheduler(scheduler_pid), int)


def test_a_plain_string_names_one_handler(make_cluster):
    # an unquoted environment variable is a string, not a list
    c = make_cluster([WorkerSpec()], env={
        "DASK_DISTRIBUTED__SCHEDULER__BLOCKED_HANDLERS": "run_function"
    })
    client = c.client()
    with pytest.raises(ValueError, match="'run_function' handler has been explicitly"):
        client.run_on_scheduler(scheduler_pid)
    client.set_metadata("y", 2)
    assert client.get_metadata("y") == 2

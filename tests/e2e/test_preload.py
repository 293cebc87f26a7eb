"""``dask scheduler --preload``: each module's ``dask_setup(scheduler)`` runs
once the scheduler listens, and ``dask_teardown(scheduler)`` when it closes.
The Rust scheduler runs them in the process that runs ``run_on_scheduler``
functions, with the same stand-in for the scheduler object, so what a
preload keeps there those functions see. As in Python, a module that cannot
be loaded stops the scheduler, and a ``dask_setup`` that fails is logged.
All but the last two tests pass against the Python scheduler too.
"""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from .cluster import wait_until

TIMEOUT = 60

SETUP = '''
import json, os
import click

@click.command()
@click.option("--greeting", default="none")
def dask_setup(scheduler, greeting):
    with open(os.environ["PRELOAD_MARK"], "w") as f:
        json.dump({"address": scheduler.address, "greeting": greeting}, f)
    scheduler.kept_by_preload = greeting

def dask_teardown(scheduler):
    with open(os.environ["PRELOAD_MARK"] + ".teardown", "w") as f:
        f.write(scheduler.kept_by_preload)
'''


def read_kept(dask_scheduler):
    return dask_scheduler.kept_by_preload


def write_module(tmp_path, name: str, source: str):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_setup_runs_with_its_arguments_and_teardown_on_close(make_scheduler, tmp_path):
    from distributed import Client

    module = write_module(tmp_path, "my_preload", SETUP)
    mark = tmp_path / "mark.json"
    sched = make_scheduler(
        extra=["--preload", str(module), "--greeting", "hello"],
        env={"PRELOAD_MARK": str(mark)},
    )
    wait_until(lambda: mark.exists() and mark.stat().st_size > 0, TIMEOUT, "the preload's mark",
               context=sched.describe)
    got = json.loads(mark.read_text())
    assert got == {"address": sched.address, "greeting": "hello"}
    # what the preload kept on the scheduler, run_on_scheduler functions see
    with Client(sched.address, timeout=TIMEOUT) as client:
        assert client.run_on_scheduler(read_kept) == "hello"
    sched.stop(grace=20)
    teardown = tmp_path / "mark.json.teardown"
    assert teardown.exists(), sched.describe()
    assert teardown.read_text() == "hello"


def test_a_failing_setup_is_logged_and_the_scheduler_serves(make_scheduler, tmp_path):
    from distributed import Client

    module = write_module(
        tmp_path,
        "failing_preload",
        """
        def dask_setup(scheduler):
            raise ValueError("preload says no")
        """,
    )
    sched = make_scheduler(extra=["--preload", str(module)])
    wait_until(lambda: "preload says no" in sched.log_text(), TIMEOUT, "the failure logged",
               context=sched.describe)
    assert "Failed to start preload" in sched.log_text()
    with Client(sched.address, timeout=TIMEOUT) as client:
        assert client.scheduler_info()["address"] == sched.address
        assert client.run_on_scheduler(len, "abc") == 3


def test_a_plugin_a_preload_adds_is_started_and_told_of_transitions(make_scheduler, tmp_path):
    from distributed import Client

    from .helpers import inc, unique
    from .scheduler_plugin_helpers import calls

    module = write_module(
        tmp_path,
        "plugin_preload",
        """
        from e2e.scheduler_plugin_helpers import Recorder

        def dask_setup(scheduler):
            scheduler.add_plugin(Recorder("preloaded"), name="from-preload")
        """,
    )
    sched = make_scheduler(extra=["--preload", str(module)])
    key = unique("inc")
    with Client(sched.address, timeout=TIMEOUT) as client:
        wait_until(lambda: client.run_on_scheduler(calls, "from-preload"), TIMEOUT,
                   "the preload's plugin", context=sched.describe)
        # no workers: the task waits, and the plugin hears of it
        future = client.submit(inc, 1, key=key)
        wait_until(
            lambda: ("transition", key, "released", "waiting")
            in client.run_on_scheduler(calls, "from-preload"),
            TIMEOUT,
            "the transition",
            context=sched.describe,
        )
        # as Scheduler.start does, the plugin was started after the preloads
        assert client.run_on_scheduler(calls, "from-preload")[0] == ("start", sched.address)
        del future


def test_a_handler_a_preload_adds_is_called_by_clients(make_scheduler, tmp_path):
    """A preload that extends the scheduler with an RPC of its own, as
    libraries do with ``scheduler.handlers``: clients call it by name."""
    from distributed import Client

    module = write_module(
        tmp_path,
        "handler_preload",
        """
        def dask_setup(scheduler):
            greetings = []

            async def greet(comm, name):
                greetings.append(name)
                return f"hello {name}, #{len(greetings)}"

            scheduler.handlers["preload_greet"] = greet
        """,
    )
    sched = make_scheduler(extra=["--preload", str(module)])
    with Client(sched.address, timeout=TIMEOUT) as client:
        assert client.sync(client.scheduler.preload_greet, name="a") == "hello a, #1"
        assert client.sync(client.scheduler.preload_greet, name="b") == "hello b, #2"


def test_a_module_that_cannot_be_loaded_stops_the_scheduler(make_scheduler, tmp_path):
    sched = make_scheduler(extra=["--preload", "no_such_preload_module_xyz"], wait=False)
    assert sched.wait(TIMEOUT) not in (None, 0), sched.describe()
    assert "no_such_preload_module_xyz" in sched.log_text()


@pytest.mark.rust_only
def test_scheduler_attributes_a_preload_needs_are_named(make_scheduler, tmp_path):
    module = write_module(
        tmp_path,
        "plugin_preload",
        """
        def dask_setup(scheduler):
            scheduler.stream_handlers
        """,
    )
    sched = make_scheduler(extra=["--preload", str(module)])
    wait_until(lambda: "Scheduler.stream_handlers is not available" in sched.log_text(), TIMEOUT,
               "the failure naming the attribute", context=sched.describe)
    assert "Failed to start preload" in sched.log_text()


@pytest.mark.rust_only
def test_a_hanging_setup_neither_blocks_serving_nor_stopping(make_scheduler, tmp_path):
    # Python's scheduler would wait for the preload before it serves; here
    # it serves meanwhile, and a SIGTERM still ends it.
    from distributed import Client

    module = write_module(
        tmp_path,
        "hanging_preload",
        """
        import time

        def dask_setup(scheduler):
            time.sleep(3600)
        """,
    )
    sched = make_scheduler(extra=["--preload", str(module)])
    with Client(sched.address, timeout=TIMEOUT) as client:
        assert client.scheduler_info()["address"] == sched.address
    t0 = time.monotonic()
    sched.send_signal(15)
    assert sched.wait(30) is not None, sched.describe()
    assert time.monotonic() - t0 < 20

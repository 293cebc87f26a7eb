"""``distributed.progress``: the progress bars, which open a ``feed``
connection to the scheduler and read ``{"all", "remaining", "status"}``
every interval until the work is ``finished`` or in ``error``.

The bars here are distributed's own classes (``TextProgressBar`` as
``progress()`` uses it in a console, ``ProgressBar`` and
``MultiProgressBar``), with only their drawing replaced by a recorder.
Every test not marked ``rust_only`` also passes against the Python
scheduler.
"""

from __future__ import annotations

import uuid

import pytest
from distributed import progress, wait
from distributed.core import clean_exception, connect
from distributed.diagnostics.progressbar import MultiProgressBar, ProgressBar
from distributed.protocol.pickle import dumps

from .cluster import IMPL
from .helpers import div, inc, slow_inc, unique

TIMEOUT = 60


class Recording:
    """Mixed into distributed's bars: records what they would draw."""

    def __init__(self, keys, **kwargs):
        super().__init__(keys, interval="20ms", **kwargs)
        self.drawn = []

    def _draw_bar(self, **response):
        self.drawn.append(response)


class Recorded(Recording, ProgressBar):
    """distributed's single bar."""


class RecordedMulti(Recording, MultiProgressBar):
    """distributed's bar per prefix."""


def listen(client, bar):
    client.sync(bar.listen, callback_timeout=TIMEOUT)
    assert bar.drawn, "the bar drew nothing"
    return bar.drawn


def numbered() -> int:
    """A number no other test's keys use: ``inc-<n>-<i>`` splits to ``inc``."""
    return int(uuid.uuid4().int % 10**12)


def slow_graph(client, n=8, delay=0.05):
    tag = numbered()
    incs = [client.submit(slow_inc, i, delay, key=f"inc-{tag}-{i}") for i in range(n)]
    total = client.submit(sum, incs, key=f"sum-{tag}")
    return incs, total


def test_progress_in_a_console_draws_to_100_percent(client, capsys):
    futures = client.map(slow_inc, range(20), delay=0.02, key=[unique("c") for _ in range(20)])
    progress(futures, notebook=False)
    out = capsys.readouterr().out
    assert "100% Completed" in out, out
    assert all(f.status == "finished" for f in futures)
    assert client.gather(futures) == list(range(1, 21))


@pytest.mark.parametrize("complete", [False, True])
def test_a_bar_counts_down_to_finished(client, complete):
    incs, total = slow_graph(client)
    drawn = listen(client, Recorded([total], complete=complete))
    assert drawn[-1]["status"] == "finished"
    alls = {d["all"] for d in drawn}
    if complete:
        assert alls == {9}  # 8 incs and the sum
    else:
        # incs that finished before the bar opened are not counted
        assert len(alls) == 1 and 1 <= alls.pop() <= 9, drawn
    remaining = [d["remaining"] for d in drawn]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    assert all(d["status"] is None for d in drawn[:-1])
    assert total.result(timeout=TIMEOUT) == sum(range(1, 9))


def test_computed_dependencies_count_only_with_complete(client):
    incs, total = slow_graph(client, n=4, delay=0.0)
    wait(incs, timeout=TIMEOUT)
    tag = unique("after")
    later = client.submit(sum, incs, key=f"sum-{tag}")
    # incs are in memory: without `complete` only the new task counts
    for complete, expected in [(False, 1), (True, 5)]:
        drawn = listen(client, Recorded([later], complete=complete))
        assert drawn[-1]["status"] == "finished"
        assert drawn[0]["all"] == expected, (complete, drawn)


def test_a_bar_per_prefix(client):
    # `complete`: the incs count even if some finish before the bar opens
    incs, total = slow_graph(client, n=6)
    drawn = listen(client, RecordedMulti([total], complete=True))
    last = drawn[-1]
    assert last["status"] == "finished"
    assert last["all"] == {"inc": 6, "sum": 1}, last
    assert last["remaining"] == {"inc": 0, "sum": 0}
    assert all(d["all"] == last["all"] for d in drawn)


def test_a_failure_ends_the_bar_with_the_exception(client):
    tag = unique("err")
    bad = client.submit(div, 1, 0, key=f"div-{tag}")
    after = client.submit(inc, bad, key=f"inc-{tag}")
    drawn = listen(client, Recorded([after]))
    last = drawn[-1]
    assert last["status"] == "error", last
    _, exc, _ = clean_exception(last["exception"])
    assert isinstance(exc, ZeroDivisionError), exc
    assert last["key"] in (f"div-{tag}", f"inc-{tag}")


@pytest.mark.parametrize("bar_class", [Recorded, RecordedMulti])
def test_cancelling_ends_the_bar_with_an_error(client, tmp_path, bar_class):
    """Python ends the bar with the cancelled key and no exception (a bar
    per prefix without the key: its ``MultiProgress`` looks up the key
    ``None`` and fails with ``KeyError``); this scheduler names the key in
    both and gives the exception a text saying that it was cancelled."""
    from .helpers import sleep_until_file

    stop = tmp_path / "stop"
    tag = unique("cancel")
    blocked = client.submit(sleep_until_file, str(stop), key=f"block-{tag}")
    bar = bar_class([blocked])

    async def cancel_soon():
        import asyncio

        await asyncio.sleep(0.3)
        await client.cancel([blocked])

    client.loop.add_callback(cancel_soon)
    try:
        drawn = listen(client, bar)
    finally:
        stop.touch()
    last = drawn[-1]
    assert last["status"] == "error", last
    if IMPL == "rust" or bar_class is Recorded:
        assert last["key"] == f"block-{tag}"
    if IMPL == "rust":
        assert "cancelled" in str(last["exception"])


@pytest.mark.rust_only
def test_a_bar_grouped_by_a_function_is_refused_as_a_bar(client):
    incs, total = slow_graph(client, n=2, delay=0.0)
    drawn = listen(client, RecordedMulti([total], group_by=lambda k: k[:3]))
    last = drawn[-1]
    assert last["status"] == "error"
    _, exc, _ = clean_exception(last["exception"])
    assert isinstance(exc, NotImplementedError)
    assert "grouped by" in str(exc) and "runs no Python" in str(exc)
    # the scheduler is fine: the work itself completes
    assert total.result(timeout=TIMEOUT) == 3


@pytest.mark.rust_only
def test_any_other_feed_is_refused_naming_it(cluster, client):
    async def custom_setup(scheduler):
        return len(scheduler.tasks)

    def custom_function(scheduler, state):
        return {"n": state}

    async def run():
        comm = await connect(cluster.address)
        try:
            await comm.write({
                "op": "feed",
                "setup": dumps(custom_setup),
                "function": dumps(custom_function),
                "interval": 0.05,
            })
            return await comm.read()
        finally:
            await comm.close()

    reply = client.sync(run, callback_timeout=TIMEOUT)
    assert reply["status"] == "uncaught-error", reply
    _, exc, _ = clean_exception(**reply)
    assert isinstance(exc, NotImplementedError)
    assert "custom_setup" in str(exc) and "progress bars" in str(exc)
    assert client.submit(inc, 1, key=unique("ok")).result(timeout=TIMEOUT) == 2

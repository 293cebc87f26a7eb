"""``distributed.diagnostics.MemorySampler``: ``with ms.sample(label)``
asks the scheduler to sample the cluster's memory (``memory_sampler_start``)
and collects the readings on exit (``memory_sampler_stop``). Passes against
the Python scheduler too.
"""

from __future__ import annotations

import time

import pytest
from distributed import wait
from distributed.diagnostics import MemorySampler

from .helpers import unique

TIMEOUT = 60
MB = 1_000_000


def hold_bytes(n):
    return b"x" * n


def test_samples_cover_the_block_and_see_what_the_workers_hold(client):
    ms = MemorySampler()
    before = time.time()
    with ms.sample("process", interval=0.05), ms.sample("managed", measure="managed", interval=0.05):
        big = client.submit(hold_bytes, 40 * MB, key=unique("big"))
        wait(big, timeout=TIMEOUT)
        time.sleep(0.5)
    after = time.time()
    for label in ("process", "managed"):
        samples = ms.samples[label]
        # one at once, then every 50 ms for over half a second
        assert len(samples) >= 5, samples
        times = [t for t, _ in samples]
        assert times == sorted(times)
        assert before - 1 <= times[0] <= times[-1] <= after + 1
    # the workers' processes are resident, and at the end hold the result
    assert all(nbytes > 10 * MB for _, nbytes in ms.samples["process"])
    assert ms.samples["managed"][-1][1] >= 40 * MB
    assert ms.samples["managed"][0][1] < 40 * MB
    frame = ms.to_pandas()
    assert sorted(frame.columns) == ["managed", "process"]
    del big


def test_an_unknown_measure_is_refused(client):
    ms = MemorySampler()
    with pytest.raises(AttributeError, match="nonsense"):
        with ms.sample(measure="nonsense"):
            pass
    assert ms.samples == {}


def test_an_interval_that_is_not_a_number_is_refused(client):
    """Not silently sampled at the default interval: Python fails on it too."""
    ms = MemorySampler()
    with pytest.raises(TypeError):
        with ms.sample(interval="often"):
            pass
    assert ms.samples == {}


def test_stopping_an_unknown_sampler_is_a_key_error(client):
    with pytest.raises(KeyError):
        client.sync(client.scheduler.memory_sampler_stop, key="no-such-sampler")


def test_extreme_intervals_are_served(client):
    for interval in (1e-12, 1e30):
        key = client.sync(
            client.scheduler.memory_sampler_start,
            client=client.id,
            measure="process",
            interval=interval,
        )
        time.sleep(0.05)
        samples = client.sync(client.scheduler.memory_sampler_stop, key=key)
        assert len(samples) >= 1, interval
    with pytest.raises(ValueError):
        client.sync(
            client.scheduler.memory_sampler_start, client=client.id, measure="process", interval=0
        )
    assert client.scheduler_info()["workers"]

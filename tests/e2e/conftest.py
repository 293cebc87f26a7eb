"""Fixtures for the end-to-end tests: a real scheduler, real workers, real clients.

See cluster.py for the environment variables (DASK_SCHEDULER_IMPL=python runs
everything against the reference Python scheduler).
"""

from __future__ import annotations

import os
import signal

import pytest

from . import cluster as cl
from .cluster import Cluster, WorkerSpec

def _on_sigterm(signum, frame):
    # e.g. scripts/test.sh's `timeout`: kill what we started, then stop pytest
    cl.kill_leftovers()
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _on_sigterm)
    config.addinivalue_line(
        "markers",
        "rust_only: tests of behaviour specific to the Rust scheduler "
        "(skipped with DASK_SCHEDULER_IMPL=python)",
    )


def pytest_report_header(config):
    where = cl.RUST_BIN if cl.IMPL == "rust" else "python -m distributed.cli.dask_scheduler"
    return [f"e2e: scheduler under test: {cl.IMPL} ({where}); python: {cl.PYTHON}"]


def pytest_collection_modifyitems(config, items):
    # DASK_E2E_RUN_RUST_ONLY=1 runs rust_only tests against the Python scheduler
    # too (a debugging aid for the tests themselves; expect failures).
    if cl.IMPL != "python" or os.environ.get("DASK_E2E_RUN_RUST_ONLY") == "1":
        return
    skip = pytest.mark.skip(reason="rust_only: not applicable to the Python scheduler")
    for item in items:
        if "rust_only" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the logs of the scheduler(s) and workers still around."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for proc in cl.live_processes("scheduler"):
        report.sections.append((f"scheduler log tail ({proc.log_path})", proc.describe(80)))
    for proc in cl.live_processes("worker"):
        report.sections.append((f"worker log tail ({proc.log_path})", proc.describe(20)))


# --------------------------------------------------------------------------
# fixtures

DEFAULT_WORKERS = [WorkerSpec(nthreads=2), WorkerSpec(nthreads=2)]


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """One scheduler + workers shared by the tests of a module.

    A module may set ``CLUSTER_WORKERS = [WorkerSpec(...), ...]`` and
    ``CLUSTER_SCHEDULER = {...}`` (keyword arguments for Scheduler).
    """
    specs = getattr(request.module, "CLUSTER_WORKERS", DEFAULT_WORKERS)
    sched_kwargs = getattr(request.module, "CLUSTER_SCHEDULER", {})
    c = Cluster(
        tmp_path_factory.mktemp("cluster"),
        [WorkerSpec(**vars(s)) for s in specs],  # copies: names get assigned
        **sched_kwargs,
    )
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def client(cluster):
    """The module's default client."""
    return cluster.client()


@pytest.fixture
def make_cluster(tmp_path):
    """Factory for clusters private to one test (for tests that kill workers,
    need an empty scheduler or special flags)."""
    made: list[Cluster] = []

    def factory(workers=(), **scheduler_kwargs) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made)}", workers, **scheduler_kwargs)
        made.append(c)
        return c

    try:
        yield factory
    finally:
        for c in made:
            c.close()


@pytest.fixture
def make_scheduler(tmp_path):
    """Factory for bare scheduler processes (CLI tests)."""
    made: list[cl.Scheduler] = []

    def factory(**kwargs) -> cl.Scheduler:
        s = cl.Scheduler(tmp_path, **kwargs)
        made.append(s)
        return s

    try:
        yield factory
    finally:
        for s in made:
            s.stop()

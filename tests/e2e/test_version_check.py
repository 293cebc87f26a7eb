"""The version check of a registering client or worker: Python's scheduler
compares the newcomer's package versions with its own and the workers',
and sends what differs as a "Mismatched versions found" table, which the
client raises as a ``VersionMismatchWarning`` and a worker logs. Real
clients and workers; one worker (or the test's client) reports a faked
version. These tests pass against the Python scheduler too.
"""

from __future__ import annotations

import time
import warnings

import distributed.versions
import pytest
from distributed.versions import VersionMismatchWarning

from .cluster import WorkerSpec
from .helpers import inc, unique

TIMEOUT = 60
FAKE = "0.0.1+faked"

# a worker preload that makes the worker report a faked numpy version
FAKE_NUMPY_PRELOAD = f"""
import distributed.versions
import distributed.worker


def _faked(packages=None):
    # the module may be loaded more than once: the real function is the
    # versions module's, which is never replaced
    versions = distributed.versions.get_versions(packages)
    versions["packages"]["numpy"] = {FAKE!r}
    return versions


distributed.worker.get_versions = _faked
"""


def connect(cluster, monkeypatch=None, fake_dask=False):
    """A new client of ``cluster`` and the version warnings it raised on
    connecting (reporting a faked dask version if ``fake_dask``)."""
    if fake_dask:
        real = distributed.versions.get_versions

        def faked(packages=None):
            versions = real(packages)
            versions["packages"]["dask"] = FAKE
            return versions

        monkeypatch.setattr(distributed.versions, "get_versions", faked)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = cluster.client(set_as_default=False)
    if fake_dask:
        monkeypatch.undo()
    found = [str(w.message) for w in caught if issubclass(w.category, VersionMismatchWarning)]
    return client, found


def row(table: str, package: str) -> list[str]:
    """The cells of ``package``'s row of a warning's table."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == package:
            return cells
    raise AssertionError(f"no row for {package}:\n{table}")


def test_a_client_with_a_different_dask_is_warned(make_cluster, monkeypatch):
    import dask

    cluster = make_cluster([WorkerSpec(name="v-a")])
    client, found = connect(cluster)
    assert found == [], "the same environment everywhere: no warning"
    client, found = connect(cluster, monkeypatch, fake_dask=True)
    assert len(found) == 1, found
    assert found[0].startswith("Mismatched versions found\n\n+"), found[0]
    assert row(found[0], "Package") == ["Package", "Client", "Scheduler", "Workers"]
    assert row(found[0], "dask") == ["dask", FAKE, dask.__version__, dask.__version__]
    # only what differs is listed
    assert "distributed" not in found[0]
    # the warning is only a warning: the client works
    assert client.submit(inc, 1, key=unique("warned")).result(timeout=TIMEOUT) == 2


def test_a_worker_with_a_different_numpy_is_named_until_it_leaves(make_cluster, tmp_path):
    import numpy

    preload = tmp_path / "fake_numpy_preload.py"
    preload.write_text(FAKE_NUMPY_PRELOAD)
    cluster = make_cluster([WorkerSpec(name="v-real")])
    odd = cluster.add_worker(WorkerSpec(name="v-faked", extra=["--preload", str(preload)]))
    # the worker logs the table its registration reply carried: its own
    # numpy against the other worker's
    deadline = time.monotonic() + TIMEOUT
    while "Mismatched versions found" not in odd.log_text():
        assert time.monotonic() < deadline, odd.log_text()
        time.sleep(0.1)
    log = odd.log_text()
    table = log[log.index("Mismatched versions found"):]
    cells = row(table, "numpy")
    assert cells[1] == FAKE, cells
    assert FAKE in cells[3] and numpy.__version__ in cells[3], cells
    # functions on the scheduler read each worker's versions, and a client's
    def numpy_versions(dask_scheduler):
        return ({ws.name: ws.versions["packages"]["numpy"]
                 for ws in dask_scheduler.workers.values()},
                {cs.versions["packages"]["numpy"] for k, cs in dask_scheduler.clients.items()
                 if k != "fire-and-forget"})

    admin, _ = connect(cluster)  # warned as below
    workers_numpy, clients_numpy = admin.run_on_scheduler(numpy_versions)
    assert workers_numpy == {"v-real": numpy.__version__, "v-faked": FAKE}
    assert clients_numpy == {numpy.__version__}
    # a client with the real numpy is told the workers differ
    _, found = connect(cluster)
    assert len(found) == 1, found
    cells = row(found[0], "numpy")
    assert cells[1] == numpy.__version__, cells
    assert FAKE in cells[3] and numpy.__version__ in cells[3], cells
    # once the odd worker is gone, nothing differs
    cluster.kill_worker(odd)
    deadline = time.monotonic() + TIMEOUT
    while "v-faked" in cluster.workers_by_name():
        assert time.monotonic() < deadline, "the killed worker stayed registered"
        time.sleep(0.1)
    _, found = connect(cluster)
    assert found == []


@pytest.mark.rust_only
def test_a_worker_that_sends_no_versions_takes_no_part(make_cluster):
    # Python compares the letters of "UNKNOWN" as package names when a
    # party sends no versions; the Rust scheduler leaves it out
    import asyncio

    from distributed.comm import connect as comm_connect

    cluster = make_cluster([WorkerSpec(name="v-plain")])

    async def check():
        comm = await comm_connect(cluster.address)
        await comm.write({"op": "register-worker", "address": "tcp://127.0.0.1:1",
                          "nthreads": 1, "name": "bare", "server_id": "Worker-bare",
                          "memory_limit": 0, "status": "running", "reply": True})
        reply = await comm.read()
        assert reply["status"] == "OK" and reply["warning"] == "", reply
        # a client connecting while it is registered is not warned
        _, found = await asyncio.to_thread(connect, cluster)
        await comm.close()
        return found

    assert asyncio.run(check()) == []


def test_get_versions_reports_the_extra_packages_asked_for(make_cluster):
    import pytest as pytest_module

    cluster = make_cluster([WorkerSpec(name="v-pk")])
    client = cluster.client(set_as_default=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check=True: nothing differs
        versions = client.get_versions(check=True, packages=["pytest", "no-such-package-x"])
    for part in (versions["scheduler"], *versions["workers"].values(), versions["client"]):
        packages = part["packages"]
        assert packages["pytest"] == pytest_module.__version__, packages
        assert packages["no-such-package-x"] is None, packages
    # without packages, only the standard ones
    assert "pytest" not in client.get_versions()["scheduler"]["packages"]

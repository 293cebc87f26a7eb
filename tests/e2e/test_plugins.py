"""Worker plugins (``client.register_plugin``) are relayed to current and future
workers; ``upload_file``'s scheduler plugin makes a module usable in graphs.
(Other scheduler plugins: ``test_scheduler_plugins.py``.)"""

import importlib
import textwrap
import uuid

import pytest
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from .cluster import WorkerSpec

CLUSTER_WORKERS = [WorkerSpec(nthreads=1)]


class FlagPlugin(WorkerPlugin):
    name = "flag-plugin"

    def __init__(self, value):
        self.value = value

    def setup(self, worker):
        worker.flag_plugin_value = self.value

    def teardown(self, worker):
        worker.flag_plugin_value = "removed"


def flag(dask_worker):
    return getattr(dask_worker, "flag_plugin_value", None)


def test_worker_plugin_reaches_current_and_new_workers(cluster, client):
    client.register_plugin(FlagPlugin(42))
    assert set(client.run(flag).values()) == {42}

    cluster.add_worker(WorkerSpec(nthreads=1))
    client.wait_for_workers(2, timeout=60)
    values = client.run(flag)
    assert len(values) == 2
    assert set(values.values()) == {42}

    client.unregister_worker_plugin("flag-plugin")
    assert set(client.run(flag).values()) == {"removed"}


def test_unknown_worker_plugin_cannot_be_unregistered(client):
    with pytest.raises(ValueError, match="does not exist"):
        client.unregister_worker_plugin("no-such-plugin")


class FailingSetup(WorkerPlugin):
    name = "failing-setup"

    def setup(self, worker):
        raise RuntimeError("no licence on this worker")


def test_a_failing_worker_plugin_raises_its_error(client):
    """The worker answers with an error message; the client re-raises it."""
    with pytest.raises(RuntimeError, match="no licence"):
        client.register_plugin(FailingSetup())
    client.unregister_worker_plugin("failing-setup")


def test_a_plugin_the_workers_cannot_import_fails_the_call(client, tmp_path, monkeypatch):
    """The plugin's module exists only on the client, so each worker's
    ``plugin-add`` handler fails while unpickling it. As with Python's
    scheduler (``broadcast`` with ``on_error="raise"``), the call raises the
    worker's error instead of returning it as a result."""
    module = f"client_only_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        from distributed.diagnostics.plugin import WorkerPlugin

        class ClientOnly(WorkerPlugin):
            name = "client-only"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module(module).ClientOnly()
    with pytest.raises(Exception, match=f"No module named '{module}'"):
        client.register_plugin(plugin)
    assert client.submit(lambda: 1, pure=False).result(timeout=30) == 1


class Noop(SchedulerPlugin):
    name = "noop"


def test_a_scheduler_plugin_is_registered_under_its_name_attribute(client):
    client.register_plugin(Noop())
    assert "noop" in client.run_on_scheduler(plugin_names)
    client.unregister_scheduler_plugin("noop")
    assert "noop" not in client.run_on_scheduler(plugin_names)


def plugin_names(dask_scheduler=None):
    return sorted(dask_scheduler.plugins)


def test_upload_file_makes_a_module_usable_in_graphs(client, tmp_path, monkeypatch):
    """``upload_file`` puts the module on the workers and where this
    scheduler unpickles graphs, so tasks can call it by reference; a second
    upload replaces it."""
    import sys
    import uuid

    name = f"uploaded_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("def f(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    client.upload_file(str(path))
    module = __import__(name)
    # called by reference: the graph names `<module>.f`
    assert client.submit(module.f, 2, pure=False).result(timeout=30) == 6
    assert client.gather(client.map(module.f, range(4), pure=False)) == [0, 3, 6, 9]

    path.write_text("def f(x):\n    return 4 * x\n")
    client.upload_file(str(path))
    assert client.submit(module.f, 2, pure=False).result(timeout=30) == 8
    sys.modules.pop(name, None)


def test_upload_directory_reaches_the_nannies(make_cluster, tmp_path):
    """``UploadDirectory`` is a scheduler plugin whose ``start`` registers a
    nanny plugin through the scheduler object (``register_nanny_plugin``):
    the directory arrives in every nanny's local directory."""
    import os

    from distributed.diagnostics.plugin import UploadDirectory

    src = tmp_path / "shipped_dir"
    src.mkdir()
    (src / "shipped_mod.py").write_text("VALUE = 42\n")
    c = make_cluster([WorkerSpec(nanny=True), WorkerSpec(nanny=True)])
    client = c.client()
    client.register_plugin(UploadDirectory(str(src)))

    def has_it(dask_worker):
        return os.path.exists(
            os.path.join(dask_worker.local_directory, "shipped_dir", "shipped_mod.py")
        )

    assert list(client.run(has_it, nanny=True).values()) == [True, True]
    # a nanny joining later gets it too
    c.add_worker(WorkerSpec(nanny=True))
    assert list(client.run(has_it, nanny=True).values()) == [True, True, True]


def test_upload_directory_to_the_scheduler_too(make_cluster, tmp_path):
    """``mode="all"`` also unpacks into the scheduler's local directory,
    which is on the scheduler's ``sys.path``: ``run_on_scheduler``
    functions can import what was shipped."""
    from distributed.diagnostics.plugin import UploadDirectory

    src = tmp_path / "shipped_all"
    src.mkdir()
    (src / "shipped_all_mod.py").write_text("VALUE = 7\n")
    c = make_cluster([WorkerSpec(nanny=True)])
    client = c.client()
    client.register_plugin(UploadDirectory(str(src), mode="all"))

    def import_it(dask_scheduler):
        import importlib
        import os

        path = os.path.join(dask_scheduler.local_directory, "shipped_all", "shipped_all_mod.py")
        import sys

        sys.path.insert(0, os.path.dirname(path))
        return os.path.exists(path), importlib.import_module("shipped_all_mod").VALUE

    assert client.run_on_scheduler(import_it) == (True, 7)


def test_nanny_calls_skip_workers_without_a_nanny(make_cluster):
    """As Python's ``broadcast``: ``client.run(..., nanny=True)`` and a nanny
    plugin's registration go to the nannies there are and skip the workers
    that run without one, instead of failing."""
    import os

    from .helpers import MarkNanny

    c = make_cluster([WorkerSpec(), WorkerSpec(nanny=True)])
    client = c.client()
    client.wait_for_workers(2, timeout=30)
    worker_pids = set(client.run(os.getpid).values())
    nanny_pids = client.run(os.getpid, nanny=True)
    assert len(nanny_pids) == 1, nanny_pids
    assert not set(nanny_pids.values()) & worker_pids

    client.register_plugin(MarkNanny())
    marked = client.run(lambda dask_worker: getattr(dask_worker, "marked", False), nanny=True)
    assert list(marked.values()) == [True], marked

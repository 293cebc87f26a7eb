"""Scheduler plugins for ``test_scheduler_plugins.py``, importable by the
scheduler's Python (module level: pickled by reference, as a library's
plugins are)."""

from __future__ import annotations

from distributed.diagnostics.plugin import SchedulerPlugin


class Recorder(SchedulerPlugin):
    """Records every hook call it gets, in order."""

    def __init__(self, tag="first"):
        self.tag = tag
        self.calls = []
        self.graphs = []

    async def start(self, scheduler):
        self.calls.append(("start", scheduler.address))

    def update_graph(self, scheduler, *, client, keys, tasks, annotations=None, priority=None,
                     stimulus_id=None, **kwargs):
        self.calls.append(("update_graph", client, sorted(map(str, keys)), sorted(map(str, tasks))))
        self.graphs.append({
            "annotations": {k: dict(v) for k, v in (annotations or {}).items()},
            "priority_keys": sorted(map(str, priority or {})),
            "priority_types": sorted({type(p).__name__ for p in (priority or {}).values()}),
        })

    def transition(self, key, start, finish, *args, stimulus_id=None, **kwargs):
        assert stimulus_id, "transition without a stimulus id"
        self.calls.append(("transition", key, start, finish))

    def add_worker(self, scheduler, worker):
        self.calls.append(("add_worker", worker))

    def remove_worker(self, scheduler, worker, *, stimulus_id=None, **kwargs):
        self.calls.append(("remove_worker", worker))

    def add_client(self, scheduler, client):
        self.calls.append(("add_client", client))

    def remove_client(self, scheduler, client):
        self.calls.append(("remove_client", client))

    def log_event(self, topic, msg):
        self.calls.append(("log_event", topic, msg))


class StateReader(SchedulerPlugin):
    """Reads the scheduler's state in its hooks, as plugins that count
    workers or look tasks up do."""

    def __init__(self):
        self.seen = []

    def start(self, scheduler):
        self.scheduler = scheduler

    def add_worker(self, scheduler, worker):
        ws = scheduler.workers.get(worker)
        self.seen.append(("add_worker", worker, None if ws is None else ws.nthreads))

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            ts = self.scheduler.tasks.get(key)
            holders = None if ts is None else sorted(ws.address for ws in ts.who_has or ())
            self.seen.append(("memory", key, holders))


def seen(name, dask_scheduler=None):
    return dask_scheduler.plugins[name].seen


class Failing(SchedulerPlugin):
    """Every hook raises: the scheduler logs it and goes on."""

    def transition(self, key, start, finish, *args, **kwargs):
        raise RuntimeError("transition hook failed on purpose")

    def add_client(self, scheduler, client):
        raise RuntimeError("add_client hook failed on purpose")


class FailingStart(SchedulerPlugin):
    def start(self, scheduler):
        raise ValueError("start failed on purpose")


class Downscaling(SchedulerPlugin):
    def valid_workers_downscaling(self, scheduler, workers):
        return []


class Counting(SchedulerPlugin):
    """Adds an RPC of its own when started, as plugins that serve clients
    do: ``<prefix>_count`` counts the keys in memory on the scheduler,
    from what the plugin heard of their transitions."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.in_memory = set()

    def start(self, scheduler):
        scheduler.handlers[f"{self.prefix}_count"] = self.count

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            self.in_memory.add(key)
        else:
            self.in_memory.discard(key)

    def count(self, comm=None, prefix=""):
        return sum(1 for k in self.in_memory if str(k).startswith(prefix))


def calls(name, dask_scheduler=None):
    """The calls plugin ``name`` recorded (run on the scheduler)."""
    return list(dask_scheduler.plugins[name].calls)


def tag(name, dask_scheduler=None):
    return dask_scheduler.plugins[name].tag


def names(dask_scheduler=None):
    return sorted(dask_scheduler.plugins)


def add_recorder(name, dask_scheduler=None):
    """``Scheduler.add_plugin`` from a ``run_on_scheduler`` function (no
    ``start``, as in Python)."""
    dask_scheduler.add_plugin(Recorder("added"), name=name)


def remove(name, dask_scheduler=None):
    dask_scheduler.remove_plugin(name)


def graphs(name, dask_scheduler=None):
    return list(dask_scheduler.plugins[name].graphs)

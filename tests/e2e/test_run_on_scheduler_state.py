"""The scheduler's state as ``run_on_scheduler`` functions see it:
``dask_scheduler.tasks``, ``.workers``, ``.clients``, ``.task_groups``,
``.task_prefixes``, ``.running``, ``.total_nthreads`` and ``.n_tasks``, as users read them to
count workers, list task states or find where a key lives.

The Python scheduler hands these functions its live objects. The Rust
scheduler's functions run in a Python process beside it and read a copy of
the state: one copy per turn of that process's event loop, so a plain
function sees one unchanging state, as on Python's event loop, and a
coroutine sees a fresh copy after each ``await``. All but the read-only
refusals pass against both schedulers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .cluster import WorkerSpec
from .helpers import StampMetadata, inc, sleep_until_file

TIMEOUT = 120

CLUSTER_WORKERS = [
    WorkerSpec(nthreads=2, name="alpha", resources="FOO=1"),
    WorkerSpec(nthreads=1, name="beta"),
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_on_scheduler(client, check, *args):
    """Until ``check(*args, dask_scheduler)``, run on the scheduler, is true."""
    deadline = time.monotonic() + TIMEOUT
    while not client.run_on_scheduler(check, *args):
        assert time.monotonic() < deadline, f"{check.__name__}{args} stayed false"
        time.sleep(0.02)


def boom(x):
    raise ValueError(f"boom {x}")


def describe(keys, dask_scheduler):
    """What a user's debugging function reads, in plain Python values."""
    from distributed.core import Status
    from distributed.scheduler import MemoryState

    s = dask_scheduler
    views_agree = (
        len(s.tasks.items()) == len(s.tasks.values()) == len(s.tasks)
        and all(s.tasks[k] is ts and ts.key == k for k, ts in s.tasks.items())
        and [ts.key for ts in s.tasks.values()] == list(s.tasks)
        and set(s.tasks.keys()) == set(s.tasks) and all(k in s.tasks for k in keys)
    )
    out = {"len_tasks": len(s.tasks), "views_agree": views_agree,
           "total_nthreads": s.total_nthreads,
           "running": sorted(ws.address for ws in s.running),
           "clients": sorted(s.clients),
           "same_copy": s.tasks is s.tasks and s.workers is s.workers}
    out["workers"] = {
        addr: {
            "name": ws.name, "nthreads": ws.nthreads, "address": ws.address,
            "running": ws.status == Status.running,
            "memory": isinstance(ws.memory, MemoryState), "resources": ws.resources,
            "has_what": sorted(str(ts.key) for ts in ws.has_what if ts.key in keys_of(keys)),
            "bandwidth": ws.bandwidth,
        }
        for addr, ws in s.workers.items()
    }
    out["tasks"] = {}
    for key in keys:
        ts = s.tasks[key]
        out["tasks"][str(key)] = {
            "key": ts.key, "state": ts.state, "repr": repr(ts),
            "dependencies": sorted(str(d.key) for d in ts.dependencies),
            "dependents": sorted(str(d.key) for d in ts.dependents),
            "who_has": sorted(ws.address for ws in ts.who_has or ()),
            "holders_know_it": all(ts in ws.has_what for ws in ts.who_has or ()),
            "who_wants": sorted(cs.client_key for cs in ts.who_wants or ()),
            "nbytes_known": ts.nbytes > 0, "priority_is_tuple": isinstance(ts.priority, tuple),
            "group": ts.group.name, "group_key": ts.group_key, "prefix": ts.prefix.name,
            "group_memory": ts.group.states["memory"],
            "group_dependencies": sorted(g.name for g in ts.group.dependencies),
            "group_listed": s.task_groups[ts.group.name] is ts.group,
            "exception_text": ts.exception_text,
            "blame": ts.exception_blame.key if ts.exception_blame is not None else None,
            "resource_restrictions": ts.resource_restrictions,
            "worker_restrictions": sorted(ts.worker_restrictions or ()),
            "type": ts.type, "group_types": sorted(ts.group.types),
            "erred_on": None if ts.erred_on is None else sorted(ts.erred_on),
        }
    return out


def keys_of(keys):
    return set(keys)


def test_a_function_reads_tasks_workers_and_clients(client, cluster):
    a, b, bad, after = unique("a"), (unique("b"), 0), unique("bad"), unique("after")
    x = client.submit(inc, 1, key=a, resources={"FOO": 1})
    y = client.submit(inc, x, key=b)
    e = client.submit(boom, 1, key=bad)
    f = client.submit(inc, e, key=after)
    assert y.result(timeout=TIMEOUT) == 3
    for fut in (e, f):
        with pytest.raises(ValueError):
            fut.result(timeout=TIMEOUT)
    got = client.run_on_scheduler(describe, [a, b, bad, after])

    info = client.scheduler_info()["workers"]
    assert got["total_nthreads"] == 3
    assert got["running"] == sorted(info)
    assert client.id in got["clients"]
    assert got["len_tasks"] >= 4
    assert got["same_copy"] and got["views_agree"]
    by_name = {w["name"]: w for w in got["workers"].values()}
    assert set(by_name) == {"alpha", "beta"}
    assert by_name["alpha"]["nthreads"] == 2 and by_name["alpha"]["resources"] == {"FOO": 1}
    assert all(w["running"] and w["memory"] for w in got["workers"].values())
    assert all(addr == w["address"] for addr, w in got["workers"].items())
    # a worker's bandwidth is the configured one (Python never updates it)
    import dask.config
    from dask.utils import parse_bytes

    bandwidth = parse_bytes(dask.config.get("distributed.scheduler.bandwidth"))
    assert all(w["bandwidth"] == bandwidth for w in got["workers"].values()), got["workers"]

    ta, tb = got["tasks"][a], got["tasks"][str(b)]
    assert ta["state"] == tb["state"] == "memory"
    assert tb["key"] == b  # a tuple key stays a tuple
    assert tb["repr"] == f"<TaskState {b!r} memory>"
    assert tb["dependencies"] == [a] and ta["dependents"] == [str(b)]
    assert ta["resource_restrictions"] == {"FOO": 1}
    # the task ran where its resource is, and each holder lists it
    alpha = next(addr for addr, w in got["workers"].items() if w["name"] == "alpha")
    assert ta["who_has"] == [alpha] and ta["holders_know_it"]
    assert a in got["workers"][alpha]["has_what"]
    assert tb["holders_know_it"] and tb["who_has"]
    assert ta["who_wants"] == tb["who_wants"] == [client.id]
    assert ta["nbytes_known"] and ta["priority_is_tuple"]
    assert (tb["group"], tb["group_key"], tb["prefix"]) == (b[0], b[0], b[0].rsplit("-", 1)[0])
    assert ta["group_memory"] == 1
    assert tb["group_dependencies"] == [ta["group"]] and ta["group_dependencies"] == []
    assert ta["group_listed"] and tb["group_listed"]
    # the result's type name, and its group's
    assert ta["type"] == tb["type"] == "int"
    assert ta["group_types"] == tb["group_types"] == ["int"]

    failed, blamed = got["tasks"][bad], got["tasks"][after]
    assert failed["state"] == blamed["state"] == "erred"
    assert "boom 1" in failed["exception_text"]
    assert failed["blame"] == bad and blamed["blame"] == bad
    assert failed["type"] is None and failed["group_types"] == []
    # where it raised; nothing holds a result of it. Its dependent inherited
    # the failure while waiting: no erred_on, as in Python
    assert len(failed["erred_on"]) == 1 and failed["erred_on"][0] in got["workers"]
    assert failed["who_has"] == [] and blamed["erred_on"] is None


def workers_then_their_tasks(key, dask_scheduler):
    # reading workers first, then a worker's tasks, then the tasks: one
    # consistent picture, as in Python
    holders = [ws for ws in dask_scheduler.workers.values() if ws.has_what]
    ts = dask_scheduler.tasks[key]
    return (
        [ws.address for ws in ts.who_has],
        [ws.address for ws in holders],
        all(any(t is ts for t in ws.has_what) for ws in ts.who_has),
        all(t is dask_scheduler.tasks[t.key] for ws in holders for t in ws.has_what),
    )


def test_workers_tasks_and_the_tasks_they_hold_are_the_same_objects(client):
    key = unique("held")
    fut = client.submit(inc, 41, key=key)
    assert fut.result(timeout=TIMEOUT) == 42
    who_has, holders, listed, same = client.run_on_scheduler(workers_then_their_tasks, key)
    assert who_has == list(client.who_has([fut])[key])
    assert set(who_has) <= set(holders)
    assert listed and same


# the keys a ``watch_until_done`` is watching, in the runner's process
watching: set = set()


async def watch_until_done(key, dask_scheduler):
    """A coroutine sees the state move on between ``await``s."""
    seen = [dask_scheduler.tasks[key].state]
    watching.add(key)
    for _ in range(int(TIMEOUT / 0.02)):
        if dask_scheduler.tasks[key].state == "memory":
            break
        await asyncio.sleep(0.02)
    seen.append(dask_scheduler.tasks[key].state)
    return seen


def is_watched(key):
    return key in watching


def test_a_coroutine_sees_the_state_change_between_awaits(client):
    from distributed import Event

    gate = Event(unique("gate"))

    def wait_for(name):
        Event(name).wait(timeout=TIMEOUT)
        return 1

    key = unique("gated")
    fut = client.submit(wait_for, gate.name, key=key)
    def state_of(k, dask_scheduler):
        ts = dask_scheduler.tasks.get(k)
        return ts.state if ts is not None else None

    deadline = time.monotonic() + TIMEOUT
    while client.run_on_scheduler(state_of, key) != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with ThreadPoolExecutor(1) as pool:
        # the task runs until the gate opens, after the watch has begun
        watched = pool.submit(client.run_on_scheduler, watch_until_done, key)
        while not client.run_on_scheduler(is_watched, key):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gate.set()
        seen = watched.result(timeout=TIMEOUT)
    assert seen == ["processing", "memory"], seen
    assert fut.result(timeout=TIMEOUT) == 1


def count_running_workers(dask_scheduler):
    return len(dask_scheduler.workers), len(dask_scheduler.running)


def test_workers_alone_are_quick_to_read_with_many_tasks(client):
    # reading the workers does not copy the tasks (what this checks is
    # that the answer is right with many tasks held; the time is in the
    # README, not asserted)
    futs = client.map(inc, range(2000), key=[unique("many") for _ in range(2000)])
    client.gather(futs)
    assert client.run_on_scheduler(count_running_workers) == (2, 2)
    del futs


def set_a_task_state(key, dask_scheduler):
    dask_scheduler.tasks[key].state = "released"


def replace_the_tasks(dask_scheduler):
    dask_scheduler.tasks = {}


def read_a_worker_scheduler(key, dask_scheduler):
    return next(iter(dask_scheduler.tasks[key].who_has)).scheduler


@pytest.mark.rust_only
def test_the_copies_are_read_only_and_name_what_they_lack(client):
    # Python's objects are the scheduler's own: setting them changes the
    # scheduler (and can break it). Here a copy would silently not.
    key = unique("ro")
    fut = client.submit(inc, 1, key=key)
    assert fut.result(timeout=TIMEOUT) == 2
    with pytest.raises(NotImplementedError, match=r"cannot set TaskState\.state.*read-only"):
        client.run_on_scheduler(set_a_task_state, key)
    with pytest.raises(NotImplementedError, match=r"cannot set Scheduler\.tasks"):
        client.run_on_scheduler(replace_the_tasks)
    with pytest.raises(NotImplementedError, match=r"WorkerState\.scheduler is not available"):
        client.run_on_scheduler(read_a_worker_scheduler, key)
    with pytest.raises(AttributeError, match="no_such_field"):
        client.run_on_scheduler(lambda k, dask_scheduler: dask_scheduler.tasks[k].no_such_field,
                                key)
    # nothing changed
    assert client.run_on_scheduler(
        lambda k, dask_scheduler: dask_scheduler.tasks[k].state, key) == "memory"
    assert fut.result(timeout=TIMEOUT) == 2


def group_summary(name, dask_scheduler):
    group = dask_scheduler.task_groups[name]
    prefix = dask_scheduler.task_prefixes[group.prefix.name]
    return (len(group), group.states["memory"], group.states["forgotten"], group.done,
            prefix is group.prefix, prefix.states["memory"], prefix.states["forgotten"],
            prefix.state_counts["memory"], prefix.duration_average)


def test_a_group_and_its_prefix_count_their_forgotten_tasks(client):
    name = unique("grouped")
    futures = [client.submit(inc, i, key=(name, i)) for i in range(3)]
    assert client.gather(futures) == [1, 2, 3]
    released = futures.pop()
    key = released.key
    del released

    def forgotten(k, dask_scheduler):
        return k not in dask_scheduler.tasks

    wait_on_scheduler(client, forgotten, key)
    *counts, duration = client.run_on_scheduler(group_summary, name)
    # the group, then its prefix: in memory, forgotten, and (the prefix)
    # times its tasks entered memory
    assert counts == [3, 2, 1, True, True, 2, 1, 3]
    assert duration > 0


def types_of(name, keys, dask_scheduler):
    group = dask_scheduler.task_groups[name]
    return ([dask_scheduler.tasks[k].type for k in keys], sorted(group.types),
            sorted(group.prefix.types))


def test_tasks_their_group_and_prefix_name_their_results_types(client):
    # Python's `TaskState.type` is the result's `typename`; a group and its
    # prefix gather the types of their tasks' results
    name = unique("typed")
    futures = [client.submit(inc, 1, key=(name, 0)), client.submit(str, 1, key=(name, 1)),
               client.submit(dict, a=1, key=(name, 2))]
    assert client.gather(futures) == [2, "1", {"a": 1}]
    keys = [f.key for f in futures]
    assert client.run_on_scheduler(types_of, name, keys) == (
        ["int", "str", "dict"], ["dict", "int", "str"], ["dict", "int", "str"])
    # a forgotten task's type stays counted by its live group, as in Python
    forgotten = futures.pop().key
    wait_on_scheduler(client, lambda k, dask_scheduler: k not in dask_scheduler.tasks,
                      forgotten)
    assert client.run_on_scheduler(types_of, name, keys[:2]) == (
        ["int", "str"], ["dict", "int", "str"], ["dict", "int", "str"])


def run_ids(keys, dask_scheduler):
    return [dask_scheduler.tasks[k].run_id for k in keys]


def test_a_task_has_a_run_id_once_sent_to_a_worker(client):
    ran = client.submit(inc, 1, key=unique("ran"))
    assert ran.result(timeout=TIMEOUT) == 2
    stuck = client.submit(inc, 1, key=unique("stuck"), workers=["tcp://127.0.0.1:9"])

    def no_worker(k, dask_scheduler):
        ts = dask_scheduler.tasks.get(k)
        return ts is not None and ts.state == "no-worker"

    wait_on_scheduler(client, no_worker, stuck.key)
    got = client.run_on_scheduler(run_ids, [ran.key, stuck.key])
    assert isinstance(got[0], int) and got[1] is None, got


def group_totals(name, dask_scheduler):
    group = dask_scheduler.task_groups[name]
    prefix = group.prefix
    return {"nbytes_total": group.nbytes_total,
            "task_nbytes": sum(ts.nbytes for ts in dask_scheduler.tasks.values()
                               if ts.group is group),
            "duration": group.duration, "compute": group.all_durations["compute"],
            "start": group.start, "stop": group.stop,
            "prefix_nbytes_total": prefix.nbytes_total, "prefix_duration": prefix.duration,
            "prefix_compute": prefix.all_durations["compute"]}


def test_a_group_and_its_prefix_total_their_bytes_and_durations(client):
    # Python's TaskGroup.nbytes_total (each task's last result size, kept
    # after the task is forgotten), duration and all_durations (the seconds
    # its workers reported), start and stop (the span of its computes); a
    # prefix sums its live groups' bytes and durations
    word = "totals" + uuid.uuid4().hex[:8]
    name = f"{word}-{uuid.uuid4().hex[:8]}"
    t0 = time.time()
    futures = [client.submit(bytes, 1000 * (i + 1), key=(name, i)) for i in range(3)]
    assert [len(b) for b in client.gather(futures)] == [1000, 2000, 3000]
    got = client.run_on_scheduler(group_totals, name)
    assert got["nbytes_total"] == got["task_nbytes"] >= 6000, got
    assert 0 < got["compute"] <= got["duration"], got
    assert t0 - 5 < got["start"] <= got["stop"] < time.time() + 5, got
    assert got["prefix_nbytes_total"] == got["nbytes_total"], got
    assert got["prefix_duration"] == got["duration"], got
    assert got["prefix_compute"] == got["compute"], got
    forgotten = futures.pop().key
    wait_on_scheduler(client, lambda k, dask_scheduler: k not in dask_scheduler.tasks,
                      forgotten)
    after = client.run_on_scheduler(group_totals, name)
    assert after["nbytes_total"] == got["nbytes_total"] > after["task_nbytes"], after


async def retire_by_name(name, dask_scheduler):
    """What an autoscaling plugin does: retire a worker from the scheduler."""
    retired = await dask_scheduler.retire_workers(names=[name], close_workers=True)
    return {addr: info["name"] for addr, info in retired.items()}


def test_a_coroutine_retires_a_worker_through_the_scheduler_object(make_cluster):
    c = make_cluster([WorkerSpec(name="stays"), WorkerSpec(name="goes")])
    client = c.client()
    addrs = c.workers_by_name()
    kept = client.submit(inc, 1, key=unique("kept"), workers=[addrs["goes"]])
    assert kept.result(timeout=TIMEOUT) == 2
    assert client.run_on_scheduler(retire_by_name, "goes") == {addrs["goes"]: "goes"}
    assert list(client.scheduler_info()["workers"]) == [addrs["stays"]]
    # the retired worker's data moved to the one that stays
    assert client.who_has([kept])[kept.key] == (addrs["stays"],)
    assert kept.result(timeout=TIMEOUT) == 2


def prefix_summary(name, dask_scheduler):
    prefix = dask_scheduler.task_prefixes[name]
    return [len(prefix), prefix.states["memory"], prefix.states["forgotten"],
            prefix.state_counts["memory"], sorted(g.name for g in prefix.groups)]


def test_a_prefix_counts_its_live_groups_only(client):
    # In Python, a group whose tasks were all forgotten is removed, and its
    # prefix's len and state counts drop what the group counted; the
    # prefix's state_counts (times its tasks entered each state) stay.
    word = "livegroups" + uuid.uuid4().hex[:8]
    gone, kept = f"{word}-{uuid.uuid4().hex[:8]}", f"{word}-{uuid.uuid4().hex[:8]}"
    futures = {g: [client.submit(inc, i, key=(g, i)) for i in range(2)] for g in (gone, kept)}
    assert client.gather(futures[gone] + futures[kept]) == [1, 2, 1, 2]
    assert client.run_on_scheduler(prefix_summary, word) == [4, 4, 0, 4, sorted([gone, kept])]
    del futures[gone]

    def group_removed(name, dask_scheduler):
        return name not in dask_scheduler.task_groups

    wait_on_scheduler(client, group_removed, gone)
    assert client.run_on_scheduler(prefix_summary, word) == [2, 2, 0, 4, [kept]]


def long_task_view(key, dask_scheduler):
    """What a function reads of a task that is still running: how long its
    worker's last heartbeat said it had run, and what its prefix and
    worker make of that."""
    ts = dask_scheduler.tasks.get(key)
    if ts is None or ts.processing_on is None:
        return None
    ws = ts.processing_on
    prefix = ts.prefix
    return {"running_for": ws.executing.get(ts), "longest": prefix.max_exec_time,
            "average": prefix.duration_average, "occupancy": ws.occupancy,
            "others_on_worker": len(ws.processing) - 1,
            "prefix_count": dict(ws.task_prefix_count), "prefix": prefix.name,
            "time_delay": ws.time_delay}


def n_tasks(dask_scheduler):
    return dask_scheduler.n_tasks


def test_heartbeats_say_how_long_a_running_task_has_run(client, tmp_path):
    # A worker's heartbeat lists the tasks it is executing and for how long.
    # The scheduler keeps them (WorkerState.executing) and, while no task of
    # the prefix has finished, estimates the prefix's tasks at twice the
    # longest of those times (TaskPrefix.max_exec_time).
    word = "longrun" + uuid.uuid4().hex[:8]
    key = f"{word}-{uuid.uuid4().hex[:8]}"
    stop = tmp_path / "stop"
    sent_before = client.run_on_scheduler(n_tasks)
    fut = client.submit(sleep_until_file, str(stop), 60.0, "done", key=key, pure=False)
    deadline = time.monotonic() + TIMEOUT
    while True:
        view = client.run_on_scheduler(long_task_view, key)
        if view and view["running_for"] and view["longest"] > 0.3:
            break
        assert not fut.done(), fut
        assert time.monotonic() < deadline, view
        time.sleep(0.05)
    assert view["running_for"] <= view["longest"]
    assert view["average"] == -1
    assert view["others_on_worker"] == 0
    assert view["occupancy"] == pytest.approx(2 * view["longest"])
    # its worker counts its processing tasks by prefix (the occupancy is
    # derived from these)
    assert view["prefix_count"] == {word: 1}, view
    # the scheduler's clock minus the worker's when its heartbeat came: on
    # one host, the time the message took, well under a second
    assert isinstance(view["time_delay"], float) and view["time_delay"] != 0, view
    assert abs(view["time_delay"]) < 1, view
    assert client.run_on_scheduler(n_tasks) == sent_before + 1
    stop.write_text("")
    assert fut.result(timeout=TIMEOUT) == "done"

    def measured(name, dask_scheduler):
        prefix = dask_scheduler.task_prefixes[name]
        return prefix.duration_average, prefix.max_exec_time

    average, longest = list(client.run_on_scheduler(measured, word))
    assert average >= view["longest"] and longest >= view["longest"]


def scheduler_bandwidth(dask_scheduler):
    return dask_scheduler.bandwidth


def worker_bandwidth(dask_worker):
    return dask_worker.bandwidth


def payload(n):
    return b"x" * n


def test_the_bandwidth_follows_what_the_workers_measured(client):
    # A worker measures its transfers of more than 1 MB and reports the
    # moving average in each heartbeat; the scheduler's bandwidth, which
    # divides transfer sizes in placement and stealing, moves a 1/n-th of
    # the way to each report.
    before = client.run_on_scheduler(scheduler_bandwidth)
    reported_before = client.run(worker_bandwidth)
    x = client.submit(payload, 20_000_000, key=unique("payload"), workers=["alpha"])
    y = client.submit(len, x, key=unique("size"), workers=["beta"])
    assert y.result(timeout=TIMEOUT) == 20_000_000
    reported = client.run(worker_bandwidth)
    assert reported != reported_before, "the transfer was measured"

    def bandwidth_moved(old, dask_scheduler):
        return dask_scheduler.bandwidth != old

    wait_on_scheduler(client, bandwidth_moved, before)
    now = client.run_on_scheduler(scheduler_bandwidth)
    # a moving average of the scheduler's value and the reports
    seen = [before, *reported_before.values(), *reported.values()]
    assert min(seen) - 1 <= now <= max(seen) + 1, (now, seen)

    # the same per pair of workers (the receiver's address first) and per
    # type of the data moved, as the dashboard's bandwidth tables show them
    addrs = {info["name"]: a for a, info in client.scheduler_info()["workers"].items()}
    pair = (addrs["beta"], addrs["alpha"])

    def pair_measured(pair, dask_scheduler):
        return pair in dask_scheduler.bandwidth_workers

    wait_on_scheduler(client, pair_measured, pair)

    def tables(dask_scheduler):
        return dict(dask_scheduler.bandwidth_workers), dict(dask_scheduler.bandwidth_types)

    by_pair, by_type = client.run_on_scheduler(tables)
    assert by_pair[pair] > 0, by_pair
    assert set(by_pair) <= {pair, pair[::-1]}, by_pair
    assert by_type.get("bytes", 0) > 0, by_type


def run_specs(keys, dask_scheduler):
    from dask._task_spec import GraphNode

    out = []
    for k in keys:
        rs = dask_scheduler.tasks[k].run_spec
        out.append(None if rs is None else (isinstance(rs, GraphNode), rs.key,
                                            sorted(map(str, rs.dependencies))))
    return out


def test_a_task_s_run_spec_is_its_graph_node(client):
    # Python's TaskState.run_spec: the task as submitted (a GraphNode); a
    # scattered key has none
    x = client.submit(inc, 1, key=unique("spec"))
    y = client.submit(inc, x, key=unique("spec-after"))
    [data] = client.scatter([41])
    assert y.result(timeout=TIMEOUT) == 3
    got = client.run_on_scheduler(run_specs, [x.key, y.key, data.key])
    assert got == [(True, x.key, []), (True, y.key, [x.key]), None], got


def metadata_of(keys, dask_scheduler):
    return [dask_scheduler.tasks[k].metadata for k in keys]


def test_a_task_s_metadata_is_what_its_worker_reported(make_cluster):
    # Python's TaskState.metadata: None until a worker reports some (here a
    # worker plugin stamps every task it computes)
    cluster = make_cluster([WorkerSpec(name="md")])
    client = cluster.client()
    plain = client.submit(inc, 1, key=unique("md-plain"))
    assert plain.result(timeout=TIMEOUT) == 2
    client.register_plugin(StampMetadata(), name="stamp-metadata")
    stamped = client.submit(inc, 2, key=unique("md-stamped"))
    assert stamped.result(timeout=TIMEOUT) == 3
    got = client.run_on_scheduler(metadata_of, [plain.key, stamped.key])
    assert got == [None, {"stamped": stamped.key}], got


def failures_of(keys, dask_scheduler):
    from distributed.protocol import deserialize
    from distributed.protocol.serialize import Serialized

    def plain(x):
        # the worker sends its exception pickled (inside a Serialized),
        # and the scheduler keeps it so
        import pickle

        if isinstance(x, Serialized):
            x = deserialize(x.header, x.frames)
        return pickle.loads(x) if isinstance(x, bytes) else x

    out = []
    for k in keys:
        ts = dask_scheduler.tasks[k]
        exc, tb = plain(ts.exception), plain(ts.traceback)
        out.append((repr(exc) if exc is not None else None, tb is not None))
    return out


def test_a_failed_task_keeps_the_exception_its_worker_sent(client):
    # Python's TaskState.exception and .traceback: what the worker sent
    # (pickled), on the task that raised only
    bad = client.submit(boom, 7, key=unique("raises"))
    after = client.submit(inc, bad, key=unique("raises-after"))
    fine = client.submit(inc, 1, key=unique("fine"))
    assert fine.result(timeout=TIMEOUT) == 2
    with pytest.raises(ValueError):
        after.result(timeout=TIMEOUT)
    got = client.run_on_scheduler(failures_of, [bad.key, after.key, fine.key])
    assert got == [("ValueError('boom 7')", True), (None, False), (None, False)], got


def identities(dask_scheduler):
    return {a: ws.identity() for a, ws in dask_scheduler.workers.items()}


def test_a_worker_s_identity_is_its_entry_in_the_scheduler_s(client):
    # WorkerState.identity(), which scheduler_info() lists: the id is the
    # worker's name
    from_function = client.run_on_scheduler(identities)
    listed = client.scheduler_info()["workers"]
    assert set(from_function) == set(listed)
    for address, ident in from_function.items():
        assert ident["id"] == ident["name"] == listed[address]["name"]
        for field in ("type", "id", "host", "name", "nthreads", "memory_limit", "status",
                      "nanny", "resources", "services", "local_directory"):
            assert ident[field] == listed[address][field], field


def input_sizes(keys, dask_scheduler):
    x, y = (dask_scheduler.tasks[k] for k in keys)
    return y.get_nbytes_deps(), x.get_nbytes()


def test_a_task_sums_its_inputs_sizes(client):
    x = client.submit(payload, 100_000, key=unique("input"))
    y = client.submit(len, x, key=unique("sized"))
    assert y.result(timeout=TIMEOUT) == 100_000
    deps, size = client.run_on_scheduler(input_sizes, [x.key, y.key])
    assert deps == size >= 100_000

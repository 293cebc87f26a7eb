"""``Client.dump_cluster_state`` through the Rust scheduler: the dump that
Dask users attach to bug reports. Dask's own reader
(``distributed.cluster_dump.DumpArtefact``) loads it; the scheduler's tasks,
workers and clients have Python's field names, and every worker's own state
is included. Every test also passes against the Python scheduler
(``DASK_SCHEDULER_IMPL=python``).
"""

import pytest
from distributed import get_task_metadata, wait
from distributed.cluster_dump import DumpArtefact

from .cluster import wait_until
from .helpers import (
    StampMetadata,
    div,
    inc,
    touch_then_sleep_until_file,
    unique,
    wait_released,
)


def test_a_local_dump_has_scheduler_tasks_workers_and_versions(client, tmp_path):
    done = client.submit(inc, 1, key=unique("dumpdone"))
    assert done.result(timeout=30) == 2
    failed = client.submit(div, 1, 0, key=unique("dumpfailed"))
    wait(failed, timeout=30)
    assert failed.status == "error"
    started, stop = tmp_path / "started", tmp_path / "stop"
    running = client.submit(touch_then_sleep_until_file, str(started), str(stop),
                            key=unique("dumprunning"))
    wait_until(started.exists, 60, "the task to start")
    try:
        client.dump_cluster_state(str(tmp_path / "dump"), format="yaml")
    finally:
        stop.touch()
    dump = DumpArtefact.from_url(str(tmp_path / "dump.yaml"))

    sched = dump["scheduler"]
    assert sched["type"] == "Scheduler"
    assert sched["address"] == client.scheduler.address
    assert sched["n_workers"] == len(client.scheduler_info()["workers"])
    tasks = sched["tasks"]
    assert tasks[done.key]["state"] == "memory"
    assert tasks[done.key]["nbytes"] > 0
    holder = client.who_has(done)[done.key][0]
    assert len(tasks[done.key]["who_has"]) == 1 and holder in tasks[done.key]["who_has"][0]
    assert tasks[running.key]["state"] == "processing"
    assert "WorkerState" in tasks[running.key]["processing_on"]
    assert "run_spec" not in tasks[done.key], "excluded by default"
    # Python writes the repr of the serialized exception and traceback it
    # keeps (the texts are beside them)
    assert tasks[done.key]["exception"] is None and tasks[done.key]["traceback"] is None
    assert "Serialized object" in tasks[failed.key]["exception"]
    assert "Serialized object" in tasks[failed.key]["traceback"]
    assert "ZeroDivisionError" in tasks[failed.key]["exception_text"]
    assert done.key in [t["key"] for t in dump.scheduler_tasks_in_state("memory")]

    # the workers the scheduler knows all answered with their own state
    assert set(sched["workers"]) == set(client.scheduler_info()["workers"])
    assert dump.missing_workers() == []
    for ws in sched["workers"].values():
        # the clock difference of its last heartbeat, the configured
        # bandwidth, what it executes and its processing tasks by prefix
        assert isinstance(ws["time_delay"], float) and abs(ws["time_delay"]) < 5, ws
        assert ws["bandwidth"] == 100_000_000, ws
        assert isinstance(ws["executing"], dict), ws
    counts = [ws["task_prefix_count"] for ws in sched["workers"].values()]
    assert sorted(counts, key=len) == [{}] * (len(counts) - 1) + [{"dumprunning": 1}], counts
    assert all(isinstance(w, dict) and "tasks" in w for w in dump["workers"].values())
    assert running.key in [t["key"] for t in dump.worker_tasks_in_state("executing")]

    my_client = [c for c in sched["clients"] if c == client.id]
    assert my_client and any(done.key in r for r in sched["clients"][client.id]["wants_what"])
    assert sched["memory"]["managed"] >= 0
    assert set(dump["versions"]) == {"scheduler", "workers"}

    # Dask's splitter of a dump into YAML files takes it too
    dump.to_yamls(tmp_path / "yamls")
    assert (tmp_path / "yamls" / "scheduler" / "tasks.yaml").exists()
    client.cancel([done, running, failed])


def test_exclude_leaves_fields_out(client, tmp_path):
    fut = client.submit(inc, 10, key=unique("dumpexcl"))
    fut.result(timeout=30)
    client.dump_cluster_state(str(tmp_path / "d"), exclude=["who_has", "annotations"])
    dump = DumpArtefact.from_url(str(tmp_path / "d.msgpack.gz"))
    task = dump["scheduler"]["tasks"][fut.key]
    assert task["state"] == "memory"
    assert "who_has" not in task and "annotations" not in task
    client.cancel(fut)


def test_a_dump_to_a_url_is_written_by_the_scheduler(client, tmp_path):
    fut = client.submit(inc, 20, key=unique("dumpurl"))
    fut.result(timeout=30)
    # a "://" in the name: the scheduler writes it (fsspec), not the client
    url = f"file://{tmp_path}/remote"
    client.dump_cluster_state(url)
    dump = DumpArtefact.from_url(str(tmp_path / "remote.msgpack.gz"))
    assert dump["scheduler"]["tasks"][fut.key]["state"] == "memory"
    assert dump.missing_workers() == []
    client.cancel(fut)


def test_story_by_default(client, tmp_path):
    """As in Python, the transition log is kept by default: ``client.story``
    gets the scheduler's ``Transition`` tuples, and the dump its
    ``transition_log``."""
    fut = client.submit(inc, 1, key=unique("told"))
    assert fut.result(timeout=30) == 2
    story = client.story(fut.key)
    sched = [s for s in story if s[0] == "scheduler"]
    moves = [(s[2], s[3]) for s in sched if s[1] == fut.key]
    for move in [("released", "waiting"), ("waiting", "processing"), ("processing", "memory")]:
        assert move in moves, (move, sched)
    for _, _, _, _, recs, stimulus, when in sched:
        assert isinstance(recs, dict) and isinstance(stimulus, str) and isinstance(when, float)
    assert any(s[0] != "scheduler" for s in story), "the worker's story comes too"
    client.dump_cluster_state(str(tmp_path / "dump"), format="msgpack")
    log = DumpArtefact.from_url(str(tmp_path / "dump.msgpack.gz"))["scheduler"]["transition_log"]
    assert any(t[0] == fut.key and t[2] == "memory" for t in log), log


def test_story_keeps_naming_keys_through_many_graphs(make_cluster, tmp_path):
    """A released key's story still names it, from submission to forgotten,
    after thousands of tasks came and went; in the cluster dump's log every
    key's records follow on from each other. (This scheduler's records name
    tasks by ids, which new tasks reuse once the old ones are forgotten: the
    graphs below, 1,100 tasks released and then ones that fit the freed
    ids, make it reuse the first key's id.)"""
    from .cluster import WorkerSpec

    c = make_cluster([WorkerSpec(nthreads=2)],
                     env={"DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": "100000"})
    client = c.client()
    first = client.submit(inc, 1, key=unique("first"))
    assert first.result(timeout=30) == 2
    key = first.key
    del first
    wait_released(client, [key])
    futs = client.map(inc, range(1100), key=[unique("many") for _ in range(1100)])
    assert sum(client.gather(futs)) == sum(range(1, 1101))
    keys = [f.key for f in futs]
    del futs
    wait_released(client, keys)
    held = []
    for n in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1, 1):
        futs = client.map(inc, range(n), key=[unique("fit") for _ in range(n)])
        assert sum(client.gather(futs)) == sum(range(1, n + 1))
        held += futs

    story = [s for s in client.story(key) if s[0] == "scheduler"]
    assert {s[1] for s in story} == {key}, story
    moves = [(s[2], s[3]) for s in story]
    assert moves[0] == ("released", "waiting") and moves[-1][1] == "forgotten", moves

    client.dump_cluster_state(str(tmp_path / "dump"), format="msgpack")
    log = DumpArtefact.from_url(str(tmp_path / "dump.msgpack.gz"))["scheduler"]["transition_log"]
    steps = {}
    for k, start, finish, *_ in log:
        steps.setdefault(k, []).append((start, finish))
    assert len(steps) == 1 + 1100 + 1024, len(steps)
    for k, moves in steps.items():
        assert moves[0][0] == "released", (k, moves)
        assert all(a[1] == b[0] for a, b in zip(moves, moves[1:])), (k, moves)
    for f in held:
        assert steps[f.key][-1][1] == "memory", (f.key, steps[f.key])


@pytest.mark.rust_only
def test_story_with_the_log_off_says_so_and_ignore_gives_the_workers_stories(make_cluster):
    """``distributed.scheduler.transition-log: false`` (this scheduler's own
    switch) keeps no log: the error names get_story and the setting."""
    from .cluster import WorkerSpec

    c = make_cluster([WorkerSpec(nthreads=1)],
                     env={"DASK_DISTRIBUTED__SCHEDULER__TRANSITION_LOG": "False"})
    client = c.client()
    fut = client.submit(inc, 30, key=unique("storied"))
    fut.result(timeout=30)
    with pytest.raises(NotImplementedError, match="get_story") as err:
        client.story(fut.key)
    assert "distributed.scheduler.transition-log" in str(err.value)
    stories = client.story(fut.key, on_error="ignore")
    workers = set(client.scheduler_info()["workers"])
    assert stories and all(s[0] in workers for s in stories)
    assert any(fut.key in s for s in stories)
    client.cancel(fut)


def test_get_task_metadata_reports_final_states_and_worker_metadata(client):
    client.register_plugin(StampMetadata(), name="stamp-metadata")
    with client.as_current(), get_task_metadata() as tasks:
        ok = client.submit(inc, 1, key=unique("mdok"))
        bad = client.submit(div, 1, 0, key=unique("mdbad"))
        wait([ok, bad], timeout=30)
    assert tasks.state == {ok.key: "memory", bad.key: "erred"}
    assert tasks.metadata[ok.key] == {"stamped": ok.key}
    assert not tasks.metadata[bad.key]
    # outside a block nothing is collected, and a block no one opened is an error
    with pytest.raises(ValueError, match="exactly one"):
        client.sync(client.scheduler.stop_task_metadata, name="never-opened")
    client.cancel([ok, bad])


def test_dump_state_rpc_is_the_scheduler_part_of_a_dump(client):
    """``dump_state``, the RPC every Python server answers with its own state
    (``Server._to_dict``): here the scheduler's tasks, workers and clients;
    ``exclude`` leaves fields out at every level."""
    f = client.submit(inc, 1, key=unique("dumpstate"))
    assert f.result(timeout=30) == 2
    state = client.sync(client.scheduler.dump_state)
    assert state["type"] == "Scheduler"
    assert state["address"] == client.scheduler.address
    assert state["tasks"][f.key]["state"] == "memory"
    assert set(state["workers"]) == set(client.scheduler_info()["workers"])
    assert client.id in state["clients"]
    lean = client.sync(client.scheduler.dump_state, exclude=["tasks", "state"])
    assert "tasks" not in lean and "workers" in lean
    assert all("state" not in w for w in lean["workers"].values() if isinstance(w, dict))


def test_get_logs_rpc_is_logs(client):
    """Python's scheduler answers ``get_logs`` (every server's name for it)
    and ``logs`` (``Client.get_scheduler_logs``) with one handler."""
    logs = client.sync(client.scheduler.get_logs, n=5)
    assert 0 < len(logs) <= 5
    assert all(level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") for level, _ in logs)
    # the same ring, newest first (lines logged in between may come first)
    later = [text for _, text in client.get_scheduler_logs(n=50)]
    assert [text for _, text in logs] == later[later.index(logs[0][1]):][:len(logs)]

"""``Client.run_on_scheduler`` with functions that do not take the scheduler
object, such as XGBoost's: ``xgboost.dask.train`` starts its collective
tracker with ``client.run_on_scheduler(_start_tracker, ...)``, a thread that
listens on the scheduler's host until every worker has connected. The Rust
scheduler runs these functions in one long-lived Python process on its host,
so what one call starts (a thread, a listening socket) is still there for the
next call and for the workers.

A function that takes ``dask_scheduler`` gets a stand-in for the scheduler
object: it has ``address`` and ``id`` and keeps what functions set on it,
which is all raft-dask (cuML, cuGraph) uses it for, and it names any other
scheduler attribute it lacks.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import numpy as np
import pytest

from .cluster import wait_until
from .helpers import inc, unique

TIMEOUT = 120


# --------------------------------------------------------------------------
# functions run on the scheduler's host (module level: pickled by reference,
# as a user's module or a library's functions are)

_STATE: dict = {}


def add(a, b=0):
    return {"sum": a + b, "pid": os.getpid()}


def remember(name, value):
    _STATE[name] = value
    return sorted(_STATE)


def recall(name):
    return _STATE.get(name)


def fail(x):
    return 1 / x


def start_echo_server():
    """Like XGBoost's tracker: listen on the host, serve from a daemon thread,
    return where to connect."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"tracker:" + conn.recv(64))

    threading.Thread(target=serve, daemon=True).start()
    _STATE["server"] = srv
    return srv.getsockname()[1]


def talk_to(port, text):
    """Runs on a worker: connect to what the scheduler-side call started."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(text.encode())
        return s.recv(128).decode()


async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


async def set_later(name, value, delay):
    await asyncio.sleep(delay)
    _STATE[name] = value


async def wait_for_file(path):
    while not os.path.exists(path):
        await asyncio.sleep(0.02)
    return "waited"


def nccl_root(session, dask_scheduler):
    """raft-dask's ``_func_set_scheduler_as_nccl_root``: the scheduler object
    as the place to keep a session's NCCL unique id."""
    if not hasattr(dask_scheduler, "_raft_comm_state"):
        dask_scheduler._raft_comm_state = {}
    state = dask_scheduler._raft_comm_state.setdefault(session, {})
    if "nccl_uid" not in state:
        state["nccl_uid"] = os.urandom(16)
    return state["nccl_uid"]


def destroy_session(session, dask_scheduler):
    """raft-dask's ``_func_destroy_scheduler_session``."""
    if session in dask_scheduler._raft_comm_state:
        del dask_scheduler._raft_comm_state[session]
        return 0
    return 1


def identity_of(dask_scheduler):
    return dask_scheduler.address, dask_scheduler.id


def count_stream_handlers(dask_scheduler):
    return len(dask_scheduler.stream_handlers)


def allow_more_failures(dask_scheduler):
    dask_scheduler.allowed_failures = 10


def exit_process():
    os._exit(3)


# --------------------------------------------------------------------------


def test_a_function_runs_with_its_arguments_and_returns_its_result(client):
    got = client.run_on_scheduler(add, 2, b=40)
    assert got["sum"] == 42
    # it ran in another process on this host, not in the client
    assert got["pid"] != os.getpid()
    # the common idiom for where the dashboard is
    assert client.run_on_scheduler(socket.gethostname) == socket.gethostname()
    # numpy arrays come back through distributed's serialization
    arr = client.run_on_scheduler(np.arange, 5)
    assert isinstance(arr, np.ndarray) and arr.tolist() == [0, 1, 2, 3, 4]


def test_what_one_call_keeps_is_there_for_the_next(client):
    name = unique("kept")
    assert name in client.run_on_scheduler(remember, name, [1, 2])
    assert client.run_on_scheduler(recall, name) == [1, 2]


def test_a_server_started_on_the_scheduler_serves_the_workers(client):
    port = client.run_on_scheduler(start_echo_server)
    got = client.submit(talk_to, port, "hello", key=unique("talk")).result(timeout=TIMEOUT)
    assert got == "tracker:hello"


def test_the_function_s_exception_reaches_the_client(client):
    with pytest.raises(ZeroDivisionError) as info:
        client.run_on_scheduler(fail, 0)
    # with the traceback of where it was raised
    assert any(frame.name == "fail" for frame in __import__("traceback").extract_tb(info.tb))
    assert client.run_on_scheduler(fail, 4) == 0.25


def test_coroutine_functions_are_awaited_or_started(client):
    assert client.run_on_scheduler(async_add, 1, 2) == 3
    name = unique("later")
    assert client.run_on_scheduler(set_later, name, "done", 0.2, wait=False) is None
    deadline = time.monotonic() + TIMEOUT
    while client.run_on_scheduler(recall, name) != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_waiting_coroutine_does_not_hold_up_other_calls(client, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    stop = tmp_path / "stop"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.run_on_scheduler, wait_for_file, str(stop))
        try:
            assert client.run_on_scheduler(add, 7)["sum"] == 7
            assert not slow.done()
        finally:
            stop.touch()
        assert slow.result(timeout=TIMEOUT) == "waited"


def test_not_waiting_for_a_plain_function_is_refused_as_python_does(client):
    with pytest.raises(AssertionError, match="Combination not supported"):
        client.run_on_scheduler(add, 1, wait=False)
    assert client.run_on_scheduler(add, 1)["sum"] == 1


@pytest.mark.rust_only
def test_a_function_that_ends_the_process_fails_only_its_call(client):
    # The Python scheduler would exit with it; here the process that runs
    # these functions is restarted, and the scheduler and its state stay.
    kept = client.submit(inc, 1, key=unique("kept"))
    assert kept.result(timeout=TIMEOUT) == 2
    with pytest.raises(RuntimeError, match="run_on_scheduler.*exited with status 3"):
        client.run_on_scheduler(exit_process)
    assert client.run_on_scheduler(add, 5)["sum"] == 5
    assert kept.result(timeout=TIMEOUT) == 2
    assert client.submit(inc, kept, key=unique("next")).result(timeout=TIMEOUT) == 3


def test_state_kept_on_the_scheduler_object_as_raft_dask_keeps_it(client):
    session = unique("session")
    uid = client.run_on_scheduler(nccl_root, session)
    assert isinstance(uid, bytes) and len(uid) == 16
    assert client.run_on_scheduler(nccl_root, session) == uid
    assert client.run_on_scheduler(nccl_root, unique("other")) != uid
    assert client.run_on_scheduler(destroy_session, session) == 0
    assert client.run_on_scheduler(destroy_session, session) == 1
    assert client.run_on_scheduler(nccl_root, session) != uid


def test_the_scheduler_object_has_the_scheduler_s_address_and_id(client):
    address, sid = client.run_on_scheduler(identity_of)
    assert address == client.scheduler.address
    assert sid == client.scheduler_info()["id"]
    # dask_worker gets the scheduler too, as in Python
    assert client.run_on_scheduler(lambda dask_worker: dask_worker.address) == address


def identity_and_event(topic, dask_scheduler):
    dask_scheduler.log_event(topic, {"from": "run_on_scheduler"})
    return dask_scheduler.identity()


async def identity_from_a_coroutine(dask_scheduler):
    return dask_scheduler.identity(n_workers=0)


def test_the_scheduler_object_s_identity_and_log_event(client):
    """``identity()`` and ``log_event()``, which scheduler plugins and
    debugging functions call, from plain and coroutine functions."""
    topic = unique("topic")
    info = client.run_on_scheduler(identity_and_event, topic)
    assert info["type"] == "Scheduler"
    assert info["address"] == client.scheduler.address
    assert set(info["workers"]) == set(client.scheduler_info()["workers"])
    assert [msg for _, msg in client.get_events(topic)] == [{"from": "run_on_scheduler"}]
    lean = client.run_on_scheduler(identity_from_a_coroutine)
    assert lean["id"] == info["id"]


def story_of(key, dask_scheduler):
    return [(t.key, t.start, t.finish, type(t).__name__) for t in dask_scheduler.story(key)]


def test_the_scheduler_object_s_story(client):
    """``dask_scheduler.story(key)``: the scheduler's transition log records
    of a key, as ``Transition`` tuples, tuple keys included."""
    key = (unique("storied"), 0)
    fut = client.submit(inc, 1, key=key)
    assert fut.result(timeout=30) == 2
    moves = client.run_on_scheduler(story_of, key)
    assert all(k == key and name == "Transition" for k, _, _, name in moves), moves
    steps = [(a, b) for _, a, b, _ in moves]
    assert steps[0] == ("released", "waiting") and steps[-1] == ("processing", "memory"), steps


def the_scheduler_s_answers(keys, dask_scheduler):
    """The scheduler's methods behind its RPCs, as a debugging function or
    an autoscaling plugin calls them."""
    dask_scheduler.set_metadata([keys[0], "tag"], {"by": "run_on_scheduler"})
    return {
        "who_has": dask_scheduler.get_who_has(keys),
        "has_what": dask_scheduler.get_has_what(),
        "ncores": dask_scheduler.get_ncores(),
        "ncores_running": dask_scheduler.get_ncores_running(),
        "processing": dask_scheduler.get_processing(),
        "nbytes": dask_scheduler.get_nbytes(keys, summary=False),
        "status": dask_scheduler.get_task_status(keys),
        "metadata": dask_scheduler.get_metadata([keys[0], "tag"]),
        "default": dask_scheduler.get_metadata(["no-such-key"], default="none"),
        "target": dask_scheduler.adaptive_target(),
        "to_close": dask_scheduler.workers_to_close(),
        "prefixes": dask_scheduler.get_task_prefix_states(),
    }


async def the_scheduler_s_coroutines(dask_scheduler):
    identities = await dask_scheduler.broadcast(msg={"op": "identity"})
    stacks = await dask_scheduler.get_call_stack()
    logs = await dask_scheduler.get_worker_logs(n=1)
    try:
        await dask_scheduler.restart()  # Python's needs a stimulus_id
    except TypeError as e:
        refused = str(e)
    return {a: i["type"] for a, i in identities.items()}, stacks, sorted(logs), refused


def test_the_scheduler_s_methods_answer_as_its_rpcs(client):
    keys = [unique("held"), unique("held")]
    futures = [client.submit(inc, i, key=k) for i, k in enumerate(keys)]
    client.gather(futures)
    got = client.run_on_scheduler(the_scheduler_s_answers, keys)
    who_has = client.who_has(futures)
    assert got["who_has"] == {k: list(who_has[k]) for k in keys}
    assert all(isinstance(v, list) for v in got["who_has"].values())
    held = {w: set(ks) for w, ks in got["has_what"].items()}
    assert all(k in held[w] for k in keys for w in got["who_has"][k])
    assert got["ncores"] == client.ncores() == got["ncores_running"]
    assert got["processing"] == {w: [] for w in client.ncores()}
    assert set(got["nbytes"]) == set(keys) and all(n > 0 for n in got["nbytes"].values())
    assert got["status"] == {k: "memory" for k in keys}
    assert got["metadata"] == {"by": "run_on_scheduler"}
    assert client.get_metadata([keys[0], "tag"]) == {"by": "run_on_scheduler"}
    assert got["default"] == "none"
    assert isinstance(got["target"], int) and isinstance(got["to_close"], list)
    assert got["prefixes"]["held"]["memory"] >= 2
    workers = set(client.scheduler_info()["workers"])
    identities, stacks, logs, refused = client.run_on_scheduler(the_scheduler_s_coroutines)
    assert identities == {w: "Worker" for w in workers}
    assert stacks == {}  # nothing runs
    assert logs == sorted(workers)
    assert "stimulus_id" in refused


def process_attributes(key, dask_scheduler):
    log = dask_scheduler.transition_log
    return {
        "loop_time": dask_scheduler.loop.time(),
        "dashboard": dask_scheduler.services["dashboard"].port,
        "started": dask_scheduler.time_started,
        "logged": [(t.key, t.start, t.finish) for t in log if t.key == key],
        "unrunnable": {ts.key: since for ts, since in dask_scheduler.unrunnable.items()},
    }


def test_the_scheduler_s_loop_services_start_log_and_unrunnable_tasks(client):
    """What dask-gateway's preload reads (tests/e2e/test_dask_gateway.py):
    the event loop, the dashboard's port, when the scheduler started, its
    transition log and the tasks no worker can run."""
    key = unique("stranded")
    stranded = client.submit(inc, 1, key=key, workers=["tcp://127.0.0.1:9"], allow_other_workers=False)
    info = client.scheduler_info()
    wait_until(lambda: client.run_on_scheduler(process_attributes, key)["unrunnable"], TIMEOUT,
               "the task in no-worker")
    got = client.run_on_scheduler(process_attributes, key)
    assert got["loop_time"] > 0
    assert got["dashboard"] == info["services"]["dashboard"]
    assert got["started"] == pytest.approx(info["started"])
    assert ("released", "waiting") in [(a, b) for _, a, b in got["logged"]]
    assert got["logged"][-1][2] == "no-worker"
    assert list(got["unrunnable"]) == [key]
    assert abs(got["unrunnable"][key] - time.monotonic()) < TIMEOUT
    del stranded


@pytest.mark.rust_only
def test_other_scheduler_attributes_are_refused_naming_them(client):
    # The Python scheduler answers these from its own state; here there is
    # no such object, and a value read or set would be wrong or have no effect.
    with pytest.raises(NotImplementedError, match=r"Scheduler\.stream_handlers is not available"):
        client.run_on_scheduler(count_stream_handlers)
    with pytest.raises(NotImplementedError, match=r"Scheduler\.allowed_failures is not available"):
        client.run_on_scheduler(allow_more_failures)
    # a name no scheduler has is missing, as on the real object
    with pytest.raises(AttributeError, match="no_such_thing"):
        client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.no_such_thing)
    assert client.submit(inc, 1, key=unique("after")).result(timeout=TIMEOUT) == 2


def test_xgboost_trains_on_the_cluster(client):
    import dask.array as da
    import xgboost as xgb
    import xgboost.dask  # noqa: F401 - a submodule, imported on its own

    rng = da.random.default_rng(0)
    X = rng.random((2000, 5), chunks=(250, 5))
    y = (X[:, 0] * 3 + X[:, 1]).astype("float64")
    dtrain = xgb.dask.DaskDMatrix(client, X, y)
    out = xgb.dask.train(
        client,
        {"tree_method": "hist", "nthread": 1, "max_depth": 3},
        dtrain,
        num_boost_round=8,
        evals=[(dtrain, "train")],
    )
    rmse = out["history"]["train"]["rmse"]
    assert len(rmse) == 8
    assert rmse[-1] < rmse[0] / 2
    pred = xgb.dask.predict(client, out["booster"], X).compute()
    assert pred.shape == (2000,)

"""RPC handlers that Python code adds to the scheduler (``scheduler.handlers``)
and extensions it keeps there (``scheduler.extensions``), as optuna's
``DaskStorage`` does: a ``run_on_scheduler`` function installs an extension
whose methods become handlers, and clients call them as
``client.scheduler.<name>(...)``. The Rust scheduler runs that code in the
Python process beside it and forwards the calls of those names there.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from distributed.protocol import to_serialize

from .helpers import inc, unique

TIMEOUT = 60


class KeyValueExtension:
    """A small extension in optuna's manner: methods as handlers named with
    a prefix, some taking ``comm`` first, one a coroutine."""

    def __init__(self, scheduler, prefix):
        self.scheduler = scheduler
        self.store = {}
        self.calls = []
        scheduler.handlers.update(
            {
                f"{prefix}_put": self.put,
                f"{prefix}_get": self.get,
                f"{prefix}_slow_get": self.slow_get,
                f"{prefix}_fail": self.fail,
                f"{prefix}_peer": self.peer,
            }
        )
        scheduler.extensions[prefix] = self

    def put(self, comm, key, value):
        self.calls.append(("put", key))
        self.store[key] = value
        return len(self.store)

    def get(self, key, default=None):  # no comm: called with the message alone
        self.calls.append(("get", key))
        return self.store.get(key, default)

    async def slow_get(self, comm, key, delay=0.05):
        await asyncio.sleep(delay)
        return {"key": key, "value": self.store.get(key)}

    def fail(self, comm, why):
        raise ValueError(f"refused: {why}")

    def peer(self, comm):
        return comm.peer_address


def install(prefix, dask_scheduler):
    """optuna's ``_register_with_scheduler``: install the extension once."""
    if prefix not in dask_scheduler.extensions:
        KeyValueExtension(dask_scheduler, prefix)
    ext = dask_scheduler.extensions[prefix]
    return sorted(n for n in dask_scheduler.handlers if n.startswith(prefix)), len(ext.store)


def calls_of(prefix, dask_scheduler):
    return dask_scheduler.extensions[prefix].calls


def remove_handler(name, dask_scheduler):
    del dask_scheduler.handlers[name]
    return name in dask_scheduler.handlers


def call(client, name, **kwargs):
    return client.sync(getattr(client.scheduler, name), **kwargs)


def test_handlers_added_by_a_function_are_called_by_clients(client):
    p = unique("kv").replace("-", "_")
    names, size = client.run_on_scheduler(install, p)
    assert names == sorted(f"{p}_{m}" for m in ("put", "get", "slow_get", "fail", "peer"))
    assert size == 0
    assert call(client, f"{p}_put", key="a", value={"x": [1, 2], "y": b"bytes"}) == 1
    assert call(client, f"{p}_put", key="b", value=3.5) == 2
    assert call(client, f"{p}_get", key="a") == {"x": (1, 2), "y": b"bytes"}
    assert call(client, f"{p}_get", key="missing", default="none") == "none"
    assert call(client, f"{p}_slow_get", key="b") == {"key": "b", "value": 3.5}
    # the extension is kept: a second install finds it, with its state
    assert client.run_on_scheduler(install, p)[1] == 2
    assert client.run_on_scheduler(calls_of, p) == [("put", "a"), ("put", "b"), ("get", "a"), ("get", "missing")]
    # the scheduler goes on as before
    assert client.submit(inc, 1, key=unique("after")).result(timeout=TIMEOUT) == 2


def test_serialized_arguments_come_back_as_they_went(client):
    """The scheduler does not deserialize a message's objects (Python's
    ``Scheduler(deserialize=False)``): the handler keeps a ``Serialized``,
    and the client that reads it gets the object back."""
    p = unique("kv").replace("-", "_")
    client.run_on_scheduler(install, p)
    arr = np.arange(12.0).reshape(3, 4)
    call(client, f"{p}_put", key="arr", value=to_serialize(arr))
    got = call(client, f"{p}_get", key="arr")
    np.testing.assert_array_equal(got, arr)
    kind = client.run_on_scheduler(
        lambda dask_scheduler: type(dask_scheduler.extensions[p].store["arr"]).__name__
    )
    assert kind == "Serialized"


def test_a_handler_s_exception_reaches_the_client(client):
    p = unique("kv").replace("-", "_")
    client.run_on_scheduler(install, p)
    with pytest.raises(ValueError, match="refused: no"):
        call(client, f"{p}_fail", why="no")
    assert call(client, f"{p}_put", key="k", value=1) == 1


def test_a_handler_gets_the_client_s_address_as_its_comm_s_peer(client):
    p = unique("kv").replace("-", "_")
    client.run_on_scheduler(install, p)
    peer = call(client, f"{p}_peer")
    assert isinstance(peer, str) and peer.startswith("tcp://127.0.0.1:"), peer


def test_calls_from_many_clients_at_once(cluster, client):
    p = unique("kv").replace("-", "_")
    client.run_on_scheduler(install, p)
    others = [cluster.client() for _ in range(3)]
    try:

        async def many(c, i):
            await asyncio.gather(
                *(getattr(c.scheduler, f"{p}_put")(key=f"{i}-{j}", value=j) for j in range(20))
            )

        for i, c in enumerate(others):
            c.sync(many, c, i)
        assert call(client, f"{p}_get", key="2-19") == 19
        assert len(client.run_on_scheduler(calls_of, p)) == 61
    finally:
        for c in others:
            c.close()


@pytest.mark.rust_only
def test_a_removed_handler_is_refused_naming_it(client):
    # Python's scheduler logs "No handler ... found" and replies None; here
    # the call fails with an error naming the operation.
    p = unique("kv").replace("-", "_")
    client.run_on_scheduler(install, p)
    assert client.run_on_scheduler(remove_handler, f"{p}_get") is False
    with pytest.raises(NotImplementedError, match=f"'{p}_get'"):
        call(client, f"{p}_get", key="a")
    assert call(client, f"{p}_put", key="a", value=1) == 1


def replace_builtin(dask_scheduler):
    dask_scheduler.handlers["who_has"] = lambda comm: {}


def read_stealing(dask_scheduler):
    return dask_scheduler.extensions["stealing"].balance()


def builtins_listed(dask_scheduler):
    return "who_has" in dask_scheduler.handlers, "stealing" in dask_scheduler.extensions


@pytest.mark.rust_only
def test_the_scheduler_s_own_handlers_and_extensions_are_refused_naming_them(client):
    assert client.run_on_scheduler(builtins_listed) == (True, True)
    with pytest.raises(NotImplementedError, match="cannot replace the scheduler's handler 'who_has'"):
        client.run_on_scheduler(replace_builtin)
    with pytest.raises(NotImplementedError, match=r"extensions\['stealing'\]\.balance"):
        client.run_on_scheduler(read_stealing)
    assert client.who_has() is not None


def handler_and_extension_names(dask_scheduler):
    return set(dask_scheduler.handlers), set(dask_scheduler.extensions)


@pytest.mark.rust_only
def test_the_scheduler_s_own_names_are_python_s(client):
    """The handlers and extensions the stand-in lists as the scheduler's own
    (which Python code cannot replace) are a real ``Scheduler``'s of the
    pinned distributed, plus this scheduler's own RPCs."""
    from distributed import Scheduler

    async def python_names():
        async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as s:
            return set(s.handlers), set(s.extensions)

    handlers, extensions = asyncio.run(python_names())
    # (leaving out what the other tests of this module added)
    ours = [
        {n for n in names if not n.startswith("kv_")}
        for names in client.run_on_scheduler(handler_and_extension_names)
    ]
    assert ours[0] - handlers == {
        "close", "stand_in_snapshot", "stand_in_error", "stand_in_transition_log"
    }
    assert handlers <= ours[0]
    assert ours[1] == extensions


def exit_process():
    import os

    os._exit(3)


@pytest.mark.rust_only
def test_handlers_end_with_the_process_that_held_them(client):
    # If the Python process beside the scheduler dies, what it held is gone
    # (as it would be with Python's scheduler process); a call then fails
    # naming the operation instead of hanging.
    p = unique("kv").replace("-", "_")
    client.run_on_scheduler(install, p)
    assert call(client, f"{p}_put", key="a", value=1) == 1
    with pytest.raises(RuntimeError, match="exited with status 3"):
        client.run_on_scheduler(exit_process)
    with pytest.raises(NotImplementedError, match=f"{p}_get"):
        call(client, f"{p}_get", key="a")
    # and the name is forgotten: the next call is refused by the scheduler itself
    with pytest.raises(NotImplementedError, match=f"does not implement the operation '{p}_get'"):
        call(client, f"{p}_get", key="a")
    # a fresh install works again
    client.run_on_scheduler(install, p)
    assert call(client, f"{p}_put", key="a", value=2) == 1


def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def test_optuna_dask_storage_runs_a_study_on_the_cluster(cluster, client):
    """The real user: optuna's ``DaskStorage`` keeps an optuna storage in
    an extension on the scheduler and reaches it through the extension's
    handlers, from the client and from the trials running on the workers."""
    import optuna
    from distributed import wait
    from optuna.trial import TrialState
    from optuna_integration import DaskStorage

    name = unique("study")
    storage = DaskStorage(client=client)
    study = optuna.create_study(storage=storage, study_name=name)
    futures = [client.submit(study.optimize, objective, n_trials=4, pure=False) for _ in range(3)]
    wait(futures, timeout=TIMEOUT)
    for f in futures:
        f.result()
    trials = study.trials
    assert len(trials) == 12
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert study.best_value == min(t.value for t in trials)
    assert study.best_value == pytest.approx((study.best_params["x"] - 2) ** 2)
    # the study lives on the scheduler: another client's storage of the same
    # name finds it
    other = cluster.client()
    try:
        again = optuna.load_study(study_name=name, storage=DaskStorage(name=storage.name, client=other))
        assert len(again.trials) == 12
    finally:
        other.close()

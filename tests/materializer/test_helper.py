"""Drive the materializer helper (crates/server/src/materializer/helper.py)
directly over its stdin/stdout protocol with real ``update-graph`` payloads.

Payloads are built the way ``distributed.Client._graph_to_futures`` builds
them, encoded with ``distributed.protocol.dumps`` (the real wire encoder) and
then taken apart the way the Rust scheduler does: the ``expr_ser`` sub-header
and payload frames and the ``annotations`` ``__Pickled__`` sub-header are
forwarded verbatim.

Run: /work/venv/bin/python -m pytest tests/materializer -q
"""

from __future__ import annotations

import collections
import graphlib
import itertools
import operator
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import msgpack
import pytest

import dask
from dask._expr import FinalizeCompute, LLGExpr
from dask._task_spec import GraphNode, Task, TaskRef, parse_input
from dask.base import collections_to_expr
from dask.core import flatten
from distributed.client import _MapExpr
from distributed.protocol import Serialized, ToPickle, dumps, serialize, to_serialize
from distributed.protocol.serialize import deserialize

import graphfuncs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HELPER = REPO / "crates" / "server" / "src" / "materializer" / "helper.py"
PYTHON = os.environ.get("DASK_SCHEDULER_PYTHON", sys.executable)
TIMEOUT = 120.0

pytestmark = pytest.mark.timeout(300)

# The helper starts as the scheduler starts it (`materializer/process.rs`):
# Linux caps one argument at 128 KiB and the script is larger, so it travels
# in pieces that this bootstrap joins and runs as `__main__`.
BOOTSTRAP = (
    "import sys\n"
    "_helper_source = ''.join(sys.argv[1:])\n"
    "del sys.argv[1:]\n"
    "exec(compile(_helper_source, '<string>', 'exec'))\n"
)


def helper_argv(python):
    """``python -u -c BOOTSTRAP <pieces of helper.py>``, each piece at most
    16,384 characters (64 KiB even if every one took four bytes)."""
    source = HELPER.read_text()
    pieces = [source[i : i + 16384] for i in range(0, len(source), 16384)]
    return [python, "-u", "-c", BOOTSTRAP, *pieces]


# ---------------------------------------------------------------------------
# helper process driver
# ---------------------------------------------------------------------------


class Helper:
    """A helper subprocess speaking the length-prefixed msgpack protocol."""

    def __init__(self, python=PYTHON, env=None, cwd=None):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            helper_argv(python),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=cwd,
        )
        self._ids = itertools.count(1)
        self.hello = self.read()

    def _read_exact(self, n):
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            ready, _, _ = select.select([fd], [], [], TIMEOUT)
            if not ready:
                raise TimeoutError(f"helper did not answer; stderr:\n{self.log()}")
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError(f"helper closed stdout; stderr:\n{self.log()}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def read(self):
        (n,) = struct.unpack("<Q", self._read_exact(8))
        return msgpack.unpackb(
            self._read_exact(n), raw=False, use_list=False, strict_map_key=False
        )

    def send_raw(self, body: bytes):
        self.proc.stdin.write(struct.pack("<Q", len(body)) + body)
        self.proc.stdin.flush()

    def call(self, req: dict):
        req = dict(req)
        req.setdefault("id", next(self._ids))
        self.send_raw(msgpack.packb(req, use_bin_type=True))
        reply = self.read()
        assert reply["id"] == req["id"]
        return reply

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def helper_env(extra_path=()):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *map(str, extra_path)])
    return env


@pytest.fixture(scope="module")
def helper():
    h = Helper(env=helper_env())
    assert h.hello["status"] == "ok", h.hello
    yield h
    h.close()


# ---------------------------------------------------------------------------
# building requests exactly like the client + Rust scheduler do
# ---------------------------------------------------------------------------


def wire_update_graph(expr, keys, internal_priority=None, annotations=None):
    """update-graph as Client._graph_to_futures sends it, cut up like the
    Rust scheduler cuts it: returns a ``materialize`` request."""
    expr_ser = Serialized(*serialize(to_serialize(expr), on_error="raise"))
    msg = {
        "op": "update-graph",
        "expr_ser": expr_ser,
        "keys": set(keys),
        "internal_priority": internal_priority,
        "submitting_task": None,
        "fifo_timeout": 0,
        "actors": None,
        "code": ToPickle(()),
        "annotations": ToPickle(annotations if annotations is not None else {}),
        "span_metadata": ToPickle({"collections": []}),
    }
    frames = [bytes(f) for f in dumps(msg)]
    body = msgpack.unpackb(frames[0], raw=False, use_list=False, strict_map_key=False)

    def cut(placeholder, tag):
        i = placeholder[tag]
        header = msgpack.unpackb(frames[i], raw=False, strict_map_key=False)
        n = header["num-sub-frames"]
        return frames[i], frames[i + 1 : i + 1 + n]

    expr_header, expr_frames = cut(body["expr_ser"], "__Serialized__")
    ann_header, ann_frames = cut(body["annotations"], "__Pickled__")
    assert body["keys"]["__Set__"] is True
    return {
        "op": "materialize",
        "expr_header": expr_header,
        "expr_frames": expr_frames,
        "keys": list(body["keys"]["as-list"]),
        "internal_priority": body["internal_priority"],
        "annotations": {"header": ann_header, "frames": ann_frames},
    }


def client_annotations(**call_annotations):
    """Global annotations as _graph_to_futures merges them."""
    return {**dask.get_annotations(), **call_annotations}


def submit_request(func, *args, key=None, annotations=None):
    key = key or f"{func.__name__}-{uuid.uuid4().hex}"
    expr = LLGExpr(
        {key: Task(key, func, *(parse_input(a) for a in args))},
        _determ_token=uuid.uuid4().hex,
    )
    return key, wire_update_graph(
        expr, [key], internal_priority={key: 0}, annotations=annotations
    )


def compute_request(*collections, optimize_graph=True, annotations=None):
    """Client.compute: FinalizeCompute(collections_to_expr(...)).optimize()."""
    expr = collections_to_expr(list(collections), optimize_graph)
    expr = FinalizeCompute(expr).optimize()
    names = list(flatten(expr.__dask_keys__()))
    return names, expr, wire_update_graph(expr, names, annotations=annotations)


# ---------------------------------------------------------------------------
# checking replies
# ---------------------------------------------------------------------------


def resolve_deps(tasks):
    """The tasks (a reply's, or all chunks' in order) with "deps" holding
    every dependency as a key: those in the graph come as positions in the
    task list ("dep_pos"), the others (earlier graphs' keys) as keys."""
    keys = [t["key"] for t in tasks]
    for t in tasks:
        assert all(0 <= p < len(keys) for p in t["dep_pos"]), t["dep_pos"]
        # a key in the graph never goes as a key
        assert not set(t["deps"]) & set(keys), t["deps"]
    return [{**t, "deps": tuple(keys[p] for p in t["dep_pos"]) + tuple(t["deps"])} for t in tasks]


def unpickle_run_spec(task):
    """The task's GraphNode; `task` has its dependencies resolved to keys."""
    header = msgpack.unpackb(task["run_spec"])
    assert set(header) == {"pickled-obj", "num-sub-frames"}
    assert header["num-sub-frames"] == len(task["run_spec_frames"])
    node = pickle.loads(header["pickled-obj"], buffers=task["run_spec_frames"])
    assert isinstance(node, GraphNode)
    assert node.key == task["key"]
    assert set(node.dependencies) == set(task["deps"])
    assert bool(node.data_producer) == task["data_producer"]
    return node


def execute(tasks, wanted, known=None):
    """Run the graph locally from the returned run_specs, like workers would."""
    nodes = {t["key"]: unpickle_run_spec(t) for t in resolve_deps(tasks)}
    values = dict(known or {})
    order = graphlib.TopologicalSorter({k: set(n.dependencies) for k, n in nodes.items()})
    for key in order.static_order():
        if key in values:
            continue
        node = nodes[key]
        values[key] = node({d: values[d] for d in node.dependencies})
    return [values[k] for k in wanted]


def ok(reply):
    assert reply["status"] == "ok", reply.get("exception_text", reply)
    return reply


def by_key(reply):
    """The reply's tasks by key, dependencies resolved to keys."""
    tasks = {t["key"]: t for t in resolve_deps(reply["tasks"])}
    assert len(tasks) == len(reply["tasks"])
    return tasks


def check_order(tasks):
    """dask.order.order output: a permutation of range(n) in which every
    dependency comes first. (The exact numbering depends on str hashing, so it
    differs between processes, like between two Python schedulers.)"""
    orders = sorted(t["order"] for t in tasks.values())
    assert orders == list(range(len(tasks)))
    for t in tasks.values():
        for d in t["deps"]:
            if d in tasks:
                assert tasks[d]["order"] < t["order"]


def expected_graph(expr, keys):
    """What Scheduler.update_graph would compute in-process."""
    import dask.order
    from distributed.scheduler import _cull, _materialize_graph

    dsk, ann = _materialize_graph(expr, validate=False)
    if isinstance(expr, LLGExpr):
        dsk = _cull(dsk, set(keys))
    return dsk, dask.order.order(dsk), ann


# ---------------------------------------------------------------------------
# tests: control ops
# ---------------------------------------------------------------------------


def test_hello(helper):
    from distributed.versions import get_versions

    hello = helper.hello
    assert hello["op"] == "hello"
    assert hello["status"] == "ok"
    assert hello["pid"] == helper.proc.pid
    assert hello["python"]
    versions = hello["versions"]
    assert set(versions) == {"host", "packages"}
    assert versions["packages"]["distributed"] == get_versions()["packages"]["distributed"]
    assert versions["packages"]["dask"] == dask.__version__


def test_ping_and_versions(helper):
    assert helper.call({"op": "ping", "id": 41}) == {"status": "ok", "id": 41}
    reply = ok(helper.call({"op": "versions"}))
    assert reply["versions"]["packages"]["dask"] == dask.__version__
    assert "pytest" not in reply["versions"]["packages"]
    # extra packages, as Client.get_versions(packages=...) asks (a name that
    # is not a str is left out)
    reply = ok(helper.call({"op": "versions", "packages": ["pytest", "no-such-package-x", 3]}))
    packages = reply["versions"]["packages"]
    assert packages["pytest"] == pytest.__version__ and packages["no-such-package-x"] is None
    assert packages["dask"] == dask.__version__ and 3 not in packages


def _effective_level(setup, name):
    """Python's ``getEffectiveLevel`` of ``name`` from ``logging-setup``."""
    while name:
        level = setup["loggers"].get(name, {}).get("level", 0)
        if level:
            return level
        name = name.rpartition(".")[0]
    return setup["root"]["level"]


@pytest.mark.parametrize(
    "extra_env, yaml, want",
    [
        # distributed's old-style default: `distributed` at INFO
        ({}, None, 20),
        ({"DASK_LOGGING__DISTRIBUTED": "warning"}, None, 30),
        # The logger-specific key, as Dask's old-style logging config spells it.
        ({}, "logging:\n  distributed: info\n  distributed.scheduler: debug\n", 10),
    ],
)
def test_config_reports_scheduler_log_level(tmp_path, extra_env, yaml, want):
    env = {k: v for k, v in helper_env().items() if not k.startswith("DASK_LOGGING")}
    if yaml is not None:
        (tmp_path / "logging.yaml").write_text(yaml)
        env["DASK_CONFIG"] = str(tmp_path)
    h = Helper(env={**env, **extra_env})
    try:
        cfg = ok(h.call({"op": "config"}))["config"]
        assert _effective_level(cfg["logging-setup"], "distributed.scheduler") == want
        assert cfg["default-task-durations"]["split-taskshuffle"] == pytest.approx(1e-6)
    finally:
        h.close()


def test_unknown_op(helper):
    reply = helper.call({"op": "frobnicate", "id": 5})
    assert reply["status"] == "error"
    assert "unknown op 'frobnicate'" in reply["exception_text"]
    assert isinstance(pickle.loads(reply["exception"]), ValueError)
    assert helper.call({"op": "ping"})["status"] == "ok"


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1garbage",  # not msgpack
        msgpack.packb([1, 2, 3]),  # not a map
        msgpack.packb({"op": "materialize"}),  # fields missing
        msgpack.packb({"op": "materialize", "expr_header": b"", "keys": 5}),
        msgpack.packb({"op": "materialize", "expr_header": b"x", "keys": [{"a": 1}]}),
        msgpack.packb({"op": "ping", "id": {"weird": [1]}}),
    ],
)
def test_malformed_requests_keep_helper_alive(helper, body):
    helper.send_raw(body)
    reply = helper.read()
    if reply["status"] == "ok":  # the weird-id ping is still a ping
        assert reply["id"] == {"weird": (1,)}
    else:
        assert reply["exception_text"]
        assert isinstance(pickle.loads(reply["exception"]), BaseException)
    assert helper.call({"op": "ping"})["status"] == "ok"


def test_garbage_expr_is_deserialization_error(helper):
    for header, frames in [
        (b"\x93\x01\x02", []),
        (msgpack.packb({"serializer": "pickle", "num-sub-frames": 1}), [b"no pickle"]),
        (msgpack.packb({"serializer": "nope", "num-sub-frames": 0}), []),
    ]:
        reply = helper.call(
            {"op": "materialize", "expr_header": header, "expr_frames": frames, "keys": ["x"]}
        )
        assert reply["status"] == "error"
        assert "Error during deserialization of the task graph" in reply["exception_text"]
        exc = pickle.loads(reply["exception"])
        assert isinstance(exc, RuntimeError)
        assert "different environments" in str(exc)
        assert exc.__cause__ is not None
        assert reply["traceback_text"]
    assert helper.call({"op": "ping"})["status"] == "ok"


def test_error_reply_pieces(helper):
    reply = helper.call(
        {"op": "materialize", "expr_header": b"\x01", "expr_frames": [], "keys": ["x"]}
    )
    assert reply["status"] == "error"
    # traceback is a pickled traceback (tblib), as error_message() produces
    tb = pickle.loads(reply["traceback"])
    assert tb is None or hasattr(tb, "tb_frame")
    # *_ser: Serialize(bytes) as the scheduler puts it on the wire
    ser = reply["exception_ser"]
    header = msgpack.unpackb(ser["header"], raw=False, use_list=False, strict_map_key=False)
    assert header["num-sub-frames"] == len(ser["frames"])
    assert deserialize(header, list(ser["frames"])) == reply["exception"]


def test_missing_module_in_graph(tmp_path):
    """A graph referencing a module the helper cannot import."""
    mod = tmp_path / "only_on_client_mod.py"
    mod.write_text("def f(x):\n    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import only_on_client_mod

        key, req = submit_request(only_on_client_mod.f, 1)
    finally:
        sys.path.remove(str(tmp_path))
    h = Helper(env=helper_env())
    try:
        reply = h.call(req)
        assert reply["status"] == "error"
        assert "Error during deserialization of the task graph" in reply["exception_text"]
        cause = pickle.loads(reply["exception"]).__cause__
        assert isinstance(cause, ModuleNotFoundError)
        assert "only_on_client_mod" in str(cause)
        assert h.call({"op": "ping"})["status"] == "ok"
    finally:
        h.close()


def test_upload_file_plugin_makes_a_module_importable(tmp_path):
    """``Client.upload_file``'s scheduler half: the helper writes the file
    where every helper of the scheduler imports from, so a graph calling the
    uploaded module unpickles (it did not before)."""
    from distributed.diagnostics.plugin import SchedulerUploadFile

    name = f"uploaded_{uuid.uuid4().hex[:8]}"
    src = tmp_path / f"{name}.py"
    src.write_text("def f(x):\n    return x + 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
        key, req = submit_request(module.f, 1)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
    env = helper_env()
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    h = Helper(env=env)
    try:
        assert h.call(req)["status"] == "error", "the module is not importable yet"
        plugin = pickle.dumps(SchedulerUploadFile(str(src)))
        reply = h.call({"op": "scheduler_plugin", "plugin": plugin})
        assert reply["status"] == "ok", reply.get("exception_text")
        assert reply["nbytes"] == len(src.read_bytes())
        uploads = tmp_path / "tmp" / f"dask-scheduler-{os.getpid()}-uploads"
        assert (uploads / f"{name}.py").read_bytes() == src.read_bytes()
        assert ok(h.call(req))["ntasks"] == 1
    finally:
        h.close()


def test_only_upload_file_plugins_are_taken_by_a_helper(helper):
    """Other scheduler plugins go to the function runner; one routed to a
    pool helper by mistake is an error naming what it is."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    for plugin, error in (
        (pickle.dumps(SchedulerPlugin()), TypeError),
        (b"\x80\x04cno_such_module\nThing\n.", RuntimeError),
    ):
        reply = helper.call({"op": "scheduler_plugin", "plugin": plugin})
        assert reply["status"] == "error"
        assert isinstance(pickle.loads(reply["exception"]), error)
        assert "as Client.upload_file's SchedulerUploadFile" in reply["exception_text"]
    assert helper.call({"op": "ping"})["status"] == "ok"


def test_system_exit_during_unpickle_is_an_error(helper):
    key, req = submit_request(graphfuncs.inc, graphfuncs.RaiseOnUnpickle())
    reply = helper.call(req)
    assert reply["status"] == "error"
    assert helper.call({"op": "ping"})["status"] == "ok"


# ---------------------------------------------------------------------------
# tests: real graphs
# ---------------------------------------------------------------------------


def test_submit(helper):
    key, req = submit_request(graphfuncs.inc, 41)
    reply = ok(helper.call(req))
    assert [t["key"] for t in reply["tasks"]] == [key]
    (task,) = reply["tasks"]
    assert task["deps"] == ()
    assert task["order"] == 0  # internal_priority
    assert task["annotations"] == {}
    assert execute(reply["tasks"], [key]) == [42]


def test_submit_with_future_dependency_and_culling(helper):
    """submit(add, future, 1): the dependency is a key the graph lacks; an
    extra unrequested task in the LLGExpr is culled like _cull does."""
    dep = "inc-existing-future"
    key = f"add-{uuid.uuid4().hex}"
    unused = f"unused-{uuid.uuid4().hex}"
    expr = LLGExpr(
        {
            key: Task(key, graphfuncs.add, TaskRef(dep), 1),
            unused: Task(unused, graphfuncs.inc, 1),
        },
        _determ_token=uuid.uuid4().hex,
    )
    reply = ok(helper.call(wire_update_graph(expr, [key], internal_priority={key: 0})))
    tasks = by_key(reply)
    assert set(tasks) == {key}
    assert tasks[key]["deps"] == (dep,)
    # a key the graph lacks goes as a key, not a position
    assert reply["tasks"][0]["deps"] == (dep,)
    assert reply["tasks"][0]["dep_pos"] == ()
    assert execute(reply["tasks"], [key], known={dep: 10}) == [11]


def test_tuple_int_float_keys_round_trip(helper):
    keys = [("x", 1), ("x", ("nested", 2)), 17, 2.5, "plain"]
    dsk = {}
    for i, k in enumerate(keys):
        dsk[k] = Task(k, graphfuncs.inc, i) if i == 0 else Task(
            k, graphfuncs.inc, TaskRef(keys[i - 1])
        )
    expr = LLGExpr(dsk, _determ_token=uuid.uuid4().hex)
    reply = ok(helper.call(wire_update_graph(expr, [keys[-1]])))
    tasks = by_key(reply)
    assert set(tasks) == set(keys)
    for k in keys:
        assert type(tasks[k]["key"]) is type(k)
    assert tasks[17]["deps"] == (("x", ("nested", 2)),)
    assert tasks[2.5]["deps"] == (17,)
    # dependencies in the graph go as positions in the reply's task list
    raw = reply["tasks"]
    for t in raw:
        assert t["deps"] == ()
        j = keys.index(t["key"])
        assert [raw[p]["key"] for p in t["dep_pos"]] == ([keys[j - 1]] if j else [])
    # no internal_priority -> dask.order: a chain is numbered in order
    assert [tasks[k]["order"] for k in keys] == list(range(len(keys)))
    assert execute(reply["tasks"], [keys[-1]]) == [5]


def test_map(helper):
    expr = _MapExpr(
        graphfuncs.inc, [list(range(6))], key="inc", pure=True, annotations={}, kwargs={}
    )
    keys = list(expr.keys)
    internal_priority = dict(zip(keys, range(len(keys))))
    reply = ok(helper.call(wire_update_graph(expr, keys, internal_priority=internal_priority)))
    tasks = by_key(reply)
    assert set(tasks) == set(keys)
    for k in keys:
        assert tasks[k]["order"] == internal_priority[k]
        assert tasks[k]["deps"] == ()
    assert execute(reply["tasks"], keys) == [i + 1 for i in range(6)]


def check_collection(helper, collection, **kw):
    names, expr, req = compute_request(collection, **kw)
    reply = ok(helper.call(req))
    tasks = by_key(reply)
    dsk, _, _ = expected_graph(expr, names)
    assert set(tasks) == set(dsk)
    for k, node in dsk.items():
        assert set(tasks[k]["deps"]) == set(node.dependencies)
    check_order(tasks)
    (expected,) = dask.compute(collection, scheduler="sync")
    (result,) = execute(reply["tasks"], names)
    return result, expected, tasks


def test_delayed_tree(helper):
    from dask import delayed

    leaves = [delayed(graphfuncs.inc)(i) for i in range(8)]
    while len(leaves) > 1:
        leaves = [delayed(graphfuncs.add)(a, b) for a, b in zip(leaves[::2], leaves[1::2])]
    result, expected, tasks = check_collection(helper, leaves[0])
    assert result == expected == sum(range(1, 9))
    assert len(tasks) >= 15


def test_delayed_on_future(helper):
    """A Future inside a delayed graph (e.g. a scattered value) unpickles in
    the helper without a client and becomes a dependency the graph lacks."""
    from dask import delayed
    from distributed.client import Future

    fut = Future("scattered-abc")
    x = delayed(graphfuncs.add)(fut, 1)
    names, expr, req = compute_request(x)
    reply = ok(helper.call(req))
    tasks = by_key(reply)
    assert "scattered-abc" not in tasks
    assert any("scattered-abc" in t["deps"] for t in tasks.values())
    assert execute(reply["tasks"], names, known={"scattered-abc": 10}) == [11]


def test_minimal_request_without_optional_fields(helper):
    key = f"inc-{uuid.uuid4().hex}"
    req = wire_update_graph(
        LLGExpr({key: Task(key, graphfuncs.inc, 1)}, _determ_token=uuid.uuid4().hex), [key]
    )
    del req["annotations"], req["internal_priority"]
    (task,) = ok(helper.call(req))["tasks"]
    assert task["order"] == 0
    assert task["annotations"] == {}


def test_bad_annotations_are_an_error(helper):
    key, req = submit_request(graphfuncs.inc, 1)
    req["annotations"] = {"header": msgpack.packb({"pickled-obj": b"junk", "num-sub-frames": 0})}
    reply = helper.call(req)
    assert reply["status"] == "error"
    assert "annotations" in reply["exception_text"]
    assert helper.call({"op": "ping"})["status"] == "ok"


def test_array_sum(helper):
    import dask.array as da

    result, expected, tasks = check_collection(helper, da.ones((100, 100), chunks=10).sum())
    assert result == expected == 10000
    assert any(t["data_producer"] for t in tasks.values()) or len(tasks) > 100


def test_dataframe_groupby_sum(helper):
    import dask.dataframe as dd
    import pandas as pd

    df = pd.DataFrame({"a": [i % 4 for i in range(40)], "b": range(40)})
    ddf = dd.from_pandas(df, npartitions=4).groupby("a").b.sum()
    result, expected, tasks = check_collection(helper, ddf)
    pd.testing.assert_series_equal(result, expected)
    pd.testing.assert_series_equal(result, df.groupby("a").b.sum())
    # from_pandas partitions travel as out-of-band buffers
    assert any(t["run_spec_frames"] for t in tasks.values())


def test_bag_foldby(helper):
    import dask.bag as db

    b = db.from_sequence(range(20), npartitions=4).foldby(
        lambda x: x % 3,  # a lambda: pickled by value (cloudpickle)
        operator.add,
        0,
        operator.add,
        0,
    )
    result, expected, _ = check_collection(helper, b)
    assert sorted(result) == sorted(expected)


# ---------------------------------------------------------------------------
# tests: annotations
# ---------------------------------------------------------------------------


def test_global_annotations_on_every_task(helper):
    import dask.array as da

    x = da.ones((20, 20), chunks=10).sum()
    with dask.annotate(resources={"GPU": 1}, priority=5):  # active at compute time
        annotations = client_annotations(retries=2)
    names, expr, req = compute_request(x, annotations=annotations)
    reply = ok(helper.call(req))
    assert reply["tasks"]
    for t in reply["tasks"]:
        assert t["annotations"] == {"resources": {"GPU": 1}, "priority": 5, "retries": 2}


def test_submit_call_annotations(helper):
    annotations = client_annotations(
        priority=10, workers=["tcp://10.0.0.1:1234"], retries=2, allow_other_workers=True
    )
    key, req = submit_request(graphfuncs.inc, 1, annotations=annotations)
    (task,) = ok(helper.call(req))["tasks"]
    assert task["annotations"] == {
        "priority": 10,
        "workers": ("tcp://10.0.0.1:1234",),
        "retries": 2,
        "allow_other_workers": True,
    }


def test_annotation_normalisation(helper):
    annotations = {
        "workers": "tcp://10.0.0.1:1234",  # single string -> list
        "per_key": lambda key: f"for-{key}",  # callable -> called with the key
        "junk": object(),  # not msgpack-encodable -> dropped
        "nested": {"a": [1, 2.5, None, True], "b": {1, 2}},
        "big": 1 << 70,  # does not fit msgpack -> dropped
    }
    key, req = submit_request(graphfuncs.inc, 1, key="k-norm", annotations=annotations)
    (task,) = ok(helper.call(req))["tasks"]
    assert task["annotations"] == {
        "workers": ("tcp://10.0.0.1:1234",),
        "per_key": "for-k-norm",
        "nested": {"a": (1, 2.5, None, True), "b": (1, 2)},
    }
    assert "dropping annotation 'junk'" in helper.log()


def test_layer_annotations_without_optimization(helper):
    import dask.array as da

    with dask.annotate(resources={"GPU": 1}, priority=7):
        x = da.ones(10, chunks=5) + 1
    y = x.sum()
    names, expr, req = compute_request(
        y, optimize_graph=False, annotations={"priority": 1, "retries": 3}
    )
    reply = ok(helper.call(req))
    _, _, ann = expected_graph(expr, names)
    annotated = set(ann["resources"])
    assert annotated
    for t in reply["tasks"]:
        if t["key"] in annotated:
            # layer annotations override global ones
            assert t["annotations"] == {"resources": {"GPU": 1}, "priority": 7, "retries": 3}
        else:
            assert t["annotations"] == {"priority": 1, "retries": 3}
    assert execute(reply["tasks"], names) == [20.0]


def test_layer_annotations_lost_by_fusion(helper):
    """PROTOCOL.md 8.6: blockwise fusion drops layer annotations (dask
    behaviour the Python scheduler shows too)."""
    import dask.array as da

    with dask.annotate(resources={"GPU": 1}):
        x = da.ones(10, chunks=5) + 1
    names, expr, req = compute_request(x.sum())
    reply = ok(helper.call(req))
    _, _, ann = expected_graph(expr, names)
    for t in reply["tasks"]:
        expected = {
            name: per_key[t["key"]] for name, per_key in ann.items() if t["key"] in per_key
        }
        assert t["annotations"] == expected


# ---------------------------------------------------------------------------
# tests: startup failures
# ---------------------------------------------------------------------------


def test_hello_error_without_dask(tmp_path):
    # -S: no site-packages, -E: ignore PYTHONPATH -> dask is not importable
    wrapper = tmp_path / "python-without-dask"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S -E "$@"\n')
    wrapper.chmod(0o755)
    h = Helper(python=str(wrapper))
    try:
        hello = h.hello
        assert hello["op"] == "hello"
        assert hello["status"] == "error"
        assert "dask" in hello["message"]
        assert "No module named" in hello["message"]
        assert h.proc.wait(30) == 1
    finally:
        h.close()


def test_cwd_module_does_not_shadow(tmp_path):
    (tmp_path / "msgpack.py").write_text("raise ImportError('shadowed!')\n")
    h = Helper(env=helper_env(), cwd=tmp_path)
    try:
        assert h.hello["status"] == "ok", h.hello
    finally:
        h.close()


def test_eof_exits_cleanly():
    h = Helper(env=helper_env())
    h.proc.stdin.close()
    assert h.proc.wait(30) == 0
    h.close()


def test_stray_prints_do_not_corrupt_protocol(helper):
    """print() during unpickling goes to stderr, not the protocol stream."""
    marker = f"PRINTED-{uuid.uuid4().hex}"
    key, req = submit_request(graphfuncs.total, graphfuncs.PrintOnUnpickle(marker))
    reply = ok(helper.call(req))
    assert reply["tasks"][0]["key"] == key
    assert helper.call({"op": "ping"})["status"] == "ok"
    assert marker in helper.log()


def test_ids_are_echoed(helper):
    for rid in (0, 7, 2**40, "abc", None):
        reply = helper.call({"op": "ping", "id": rid})
        assert reply["id"] == rid


# ---------------------------------------------------------------------------
# tests: streamed replies and the per-task pickling fast path
# ---------------------------------------------------------------------------


def call_streaming(h, req):
    """Send a request and read partial frames until the final reply."""
    req = dict(req)
    req.setdefault("id", next(h._ids))
    h.send_raw(msgpack.packb(req, use_bin_type=True))
    partials = []
    while True:
        frame = h.read()
        if frame.get("partial") is True:
            assert next(iter(frame)) == "partial", "'partial' must come first"
            partials.append(frame)
            continue
        assert frame["id"] == req["id"]
        return partials, frame


def test_streamed_array_reply_matches_unstreamed(helper):
    import dask.array as da

    names, _, req = compute_request(da.ones((100, 100), chunks=10).sum())
    whole = ok(helper.call(req))
    partials, final = call_streaming(helper, {**req, "stream": True, "chunk_tasks": 16})
    ok(final)
    assert len(partials) >= 5
    assert all(len(p["tasks"]) == 16 for p in partials)
    assert len(final["tasks"]) < 16
    streamed = [t for p in partials for t in p["tasks"]] + list(final["tasks"])
    assert final["ntasks"] == whole["ntasks"] == len(streamed) == len(whole["tasks"])
    # Same process, same graph: the same tasks, in the same order, same bytes.
    assert list(streamed) == list(whole["tasks"])
    assert execute(streamed, names) == [10000]


def test_small_graph_is_not_chunked(helper):
    key, req = submit_request(operator.add, 1, 2)
    partials, final = call_streaming(helper, {**req, "stream": True})
    assert partials == []
    assert ok(final)["ntasks"] == 1
    assert final["tasks"][0]["key"] == key


def test_bad_chunk_size_is_an_error(helper):
    _, req = submit_request(operator.add, 1, 2)
    reply = helper.call({**req, "stream": True, "chunk_tasks": 0})
    assert reply["status"] == "error"
    assert "chunk_tasks" in reply["exception_text"]


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 200000])
@pytest.mark.parametrize("nframes", [0, 1, 127, 128, 255, 256, 65536])
def test_pickled_header_is_msgpack_packb(size, nframes):
    mod = load_helper_module()
    pik = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert mod._pickled_header(pik, nframes) == msgpack.packb(
        {"pickled-obj": pik, "num-sub-frames": nframes}, use_bin_type=True
    )


def load_helper_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dask_scheduler_helper", HELPER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod._import_environment() is None
    return mod


def to_pickle_wire(node):
    """What distributed puts on the wire for ``ToPickle(node)``: the
    ``__Pickled__`` sub-header bytes and the out-of-band frames."""
    frames = [bytes(f) for f in dumps({"x": ToPickle(node)})]
    body = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
    i = body["x"]["__Pickled__"]
    header = msgpack.unpackb(frames[i], raw=False)
    return header, frames[i + 1 : i + 1 + header["num-sub-frames"]]


def assert_wire_is_to_pickle(node, header, frames):
    """The helper's ``(header, frames)`` for ``node`` are what ``ToPickle``
    puts on the wire."""
    want_header, want_frames = to_pickle_wire(node)
    got = msgpack.unpackb(header, raw=False)
    assert set(got) == {"pickled-obj", "num-sub-frames"}
    assert got["num-sub-frames"] == len(frames) == len(want_frames), node.key
    # distributed's sub-header is the same map (it may add compression).
    assert got["pickled-obj"] == want_header["pickled-obj"], node.key
    assert [bytes(f) for f in frames] == [bytes(f) for f in want_frames], node.key


def unpickle_wire(header, frames):
    """The node a worker gets from the helper's ``(header, frames)``.

    Unpickling a class pickled by value in the process that pickled it
    updates the original class (cloudpickle tracks classes by id), which
    changes how it pickles afterwards: compare all bytes first."""
    got = msgpack.unpackb(header, raw=False)
    return pickle.loads(got["pickled-obj"], buffers=frames)


class _MainModuleCallable:
    """A callable class that pretends to live in ``__main__`` (pickle by
    reference fails; distributed falls back to cloudpickle)."""

    def __call__(self, x):
        return x + 1


_MainModuleCallable.__module__ = "__main__"


def test_node_pickler_matches_to_pickle():
    import numpy as np

    mod = load_helper_module()
    pickle_node = mod._node_pickler()
    nodes = [
        Task("plain", operator.add, 1, 2),
        Task("with-dep", graphfuncs.inc, TaskRef("plain")),
        # A big numpy argument: pickled out of band (frames).
        Task("buffers", np.sum, np.arange(100_000, dtype="f8")),
        # Not picklable by reference: cloudpickle.
        Task("lambda", lambda x: x * 2, 21),
        Task("main", _MainModuleCallable(), 41),
    ]
    mine = [pickle_node(node) for node in nodes]
    for node, wire in zip(nodes, mine):
        assert_wire_is_to_pickle(node, *wire)
    for node, wire in zip(nodes, mine):
        assert unpickle_wire(*wire).key == node.key
    assert pickle_node(nodes[2])[1], "the numpy buffer travels out of band"


def _main_scale(x):
    return x * FACTOR


FACTOR = 3
_main_scale.__module__ = "__main__"


class _MainModuleValue:
    """Instances of a class that lives in ``__main__``: the class goes by
    value too."""

    def __init__(self, v):
        self.v = v


_MainModuleValue.__module__ = "__main__"


class _DaskSerializedOnly:
    """Plain pickle refuses it; distributed's serializer registry knows it
    (so distributed's ``_DaskPickler`` step pickles it)."""

    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        raise TypeError("only dask_serialize knows this object")


def _serialize_dask_only(obj):
    return {"v": obj.v}, []


def _deserialize_dask_only(header, frames):
    return _DaskSerializedOnly(header["v"])


def test_node_pickler_takes_distributed_s_serializer_step(monkeypatch):
    """Plain pickle fails, distributed's own pickler succeeds through a
    registered serializer: the bytes are distributed's, the helper's cached
    answers for unregistered types notwithstanding."""
    from distributed.protocol import pickle as dpickle
    from distributed.protocol.serialize import dask_deserialize, dask_serialize

    dask_serialize.register(_DaskSerializedOnly)(_serialize_dask_only)
    dask_deserialize.register(_DaskSerializedOnly)(_deserialize_dask_only)
    mod = load_helper_module()
    pickle_node = mod._node_pickler()
    nodes = [Task(("ser", i), graphfuncs.inc, _DaskSerializedOnly(i)) for i in range(3)]
    with monkeypatch.context() as m:
        # the helper's own steps must get there, without distributed's
        # `dumps` as the last resort
        def no_fallback(*args, **kwargs):
            raise AssertionError("fell back to distributed's dumps")

        m.setattr(dpickle, "dumps", no_fallback)
        mine = [pickle_node(node) for node in nodes + nodes]
    for node, wire in zip(nodes + nodes, mine):
        assert_wire_is_to_pickle(node, *wire)
    back = unpickle_wire(*mine[2])
    assert isinstance(back.args[0], _DaskSerializedOnly) and back.args[0].v == 2


def _main_closure(offset):
    """A closure that claims ``__main__`` (pickle cannot find it by name)."""

    def closure(x):
        return x + offset

    closure.__module__ = "__main__"
    return closure


def test_node_pickler_reuses_reductions_and_keeps_the_bytes(monkeypatch):
    """Many tasks of one graph share a ``__main__`` function (``client.map``
    from a script): the pickler works out its reduction once per graph, and
    every task's bytes stay exactly distributed's, whether the reduction was
    just computed or remembered."""
    import cloudpickle

    mod = load_helper_module()
    pickle_node = mod._node_pickler()
    reduced = []
    real_reduce = cloudpickle.Pickler._function_reduce

    def counting_reduce(self, obj):
        reduced.append(obj)
        return real_reduce(self, obj)

    monkeypatch.setattr(cloudpickle.Pickler, "_function_reduce", counting_reduce)
    closure = _main_closure(10)
    nodes = []
    for i in range(3):
        nodes += [
            Task(("scale", i), _main_scale, i),
            Task(("closure", i), closure, TaskRef(("scale", i))),
            Task(("value", i), _main_scale, _MainModuleValue(i)),
            Task(("plain", i), operator.add, i, 1),
        ]
    mine = [pickle_node(node) for node in nodes + nodes]
    # 24 tasks pickled, each function's reduction worked out once (the
    # user's, the class's method, and cloudpickle's own reconstructors)
    times = collections.Counter(id(f) for f in reduced)
    assert times[id(_main_scale)] == 1
    assert times[id(closure)] == 1
    assert set(times.values()) == {1}, [f.__qualname__ for f in reduced]
    for node, wire in zip(nodes + nodes, mine):
        assert_wire_is_to_pickle(node, *wire)
    # and they run: the function comes back by value, with its globals
    back = unpickle_wire(*mine[0])
    assert back.func is not _main_scale
    assert back.func(2) == 6
    assert unpickle_wire(*mine[2]).args[0].v == 0


def _found_in_main(x):
    return x - 1


_found_in_main.__module__ = "__main__"


class _PickleSteps:
    """Counts the helper's plain-pickle attempts (the task keys) and its
    uses of distributed's ``_DaskPickler``; install before ``_node_pickler``
    is called, ``undo`` before comparing with distributed's bytes."""

    def __init__(self, monkeypatch):
        from distributed.protocol import pickle as dpickle

        self.plain, self.dask = [], 0
        self.monkeypatch = monkeypatch
        self.real_dumps, self.real_dask_pickler = pickle.dumps, dpickle._DaskPickler
        steps = self

        def counting_dumps(obj, *args, **kwargs):
            steps.plain.append(obj.key)
            return steps.real_dumps(obj, *args, **kwargs)

        class CountingDaskPickler(dpickle._DaskPickler):
            def __init__(self, *args, **kwargs):
                steps.dask += 1
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(pickle, "dumps", counting_dumps)
        monkeypatch.setattr(dpickle, "_DaskPickler", CountingDaskPickler)

    def undo(self):
        from distributed.protocol import pickle as dpickle

        self.monkeypatch.setattr(pickle, "dumps", self.real_dumps)
        self.monkeypatch.setattr(dpickle, "_DaskPickler", self.real_dask_pickler)


def test_node_pickler_tries_plain_pickle_once_per_main_function(monkeypatch):
    """Plain pickle fails on every task calling a ``__main__`` function this
    process cannot find by name, and so does distributed's ``_DaskPickler``
    step after it; after the first failure the helper pickles those tasks
    the way distributed does after both steps failed, with the same bytes.
    A ``__main__`` function that can be found by name is tried every time."""
    mod = load_helper_module()
    monkeypatch.setattr(sys.modules["__main__"], "_found_in_main", _found_in_main, raising=False)
    steps = _PickleSteps(monkeypatch)
    pickle_node = mod._node_pickler()
    closure = _main_closure(10)
    nodes = []
    for i in range(3):
        nodes += [
            Task(("scale", i), _main_scale, i),
            Task(("closure", i), closure, i),
            Task(("found", i), _found_in_main, i),
            Task(("plain", i), operator.add, i, 1),
        ]
    mine = [pickle_node(node) for node in nodes]
    steps.undo()
    skipped = [("scale", 1), ("scale", 2), ("closure", 1), ("closure", 2)]
    assert steps.plain == [n.key for n in nodes if n.key not in skipped]
    assert steps.dask == 2, "only after the first failure of each function"
    for node, wire in zip(nodes, mine):
        assert_wire_is_to_pickle(node, *wire)
    assert unpickle_wire(*mine[4]).func(2) == 6


def _serialize_task(task):
    return {"key": repr(task.key)}, []


def _deserialize_task(header, frames):
    return header


def test_node_pickler_keeps_the_serializer_step_when_tasks_have_one(monkeypatch):
    """With a dask serializer registered for ``Task``, distributed's
    ``_DaskPickler`` succeeds where plain pickle fails: the helper still
    skips the plain attempt after the first failure, but not that step."""
    from distributed.protocol.serialize import dask_deserialize, dask_serialize

    mod = load_helper_module()
    dask_serialize.register(Task)(_serialize_task)
    dask_deserialize.register(Task)(_deserialize_task)
    try:
        steps = _PickleSteps(monkeypatch)
        pickle_node = mod._node_pickler()
        nodes = [Task(("scale", i), _main_scale, i) for i in range(3)]
        mine = [pickle_node(node) for node in nodes]
        steps.undo()
        assert steps.plain == [("scale", 0)]
        assert steps.dask == 3
        for node, wire in zip(nodes, mine):
            assert_wire_is_to_pickle(node, *wire)
    finally:
        dask_serialize._lookup.pop(Task, None)
        dask_deserialize._lookup.pop(Task, None)


def test_order_computed_in_a_forked_child_is_dask_order(helper):
    import dask.array as da

    names, _, req = compute_request(da.ones((100, 100), chunks=10).sum())
    whole = ok(helper.call(req))
    partials, final = call_streaming(
        helper, {**req, "stream": True, "chunk_tasks": 16, "fork_order_min_tasks": 1}
    )
    ok(final)
    streamed = [t for p in partials for t in p["tasks"]] + list(final["tasks"])
    # The tasks go out before the order is known; it comes with the reply.
    assert all(t["order"] is None for t in streamed)
    assert len(final["orders"]) == len(streamed)
    assert list(final["orders"]) == [t["order"] for t in whole["tasks"]]
    assert [t["key"] for t in streamed] == [t["key"] for t in whole["tasks"]]
    # No child is left behind.
    assert helper.call({"op": "ping"})["status"] == "ok"
    children = Path(f"/proc/{helper.proc.pid}/task/{helper.proc.pid}/children")
    if children.exists():
        assert children.read_text().strip() == ""


def test_reply_carries_the_seconds_spent_materializing_and_ordering(helper):
    """For the scheduler's ``update-graph`` event (Python's
    ``materialization_duration_seconds`` and ``ordering_duration_seconds``),
    with the order computed here and in a forked child."""
    import dask.array as da

    _, _, req = compute_request(da.ones((100, 100), chunks=10).sum())
    for extra in ({}, {"stream": True, "chunk_tasks": 16, "fork_order_min_tasks": 1}):
        _, final = call_streaming(helper, {**req, **extra})
        timings = ok(final)["timings"]
        assert sorted(timings) == ["materialization", "ordering"], extra
        assert all(isinstance(v, float) and 0 < v < 60 for v in timings.values()), (extra, timings)


def test_config_reports_comm_security(tmp_path):
    """The ``distributed.comm`` settings the scheduler's TLS set-up reads,
    and the dashboard's HTTPS files."""
    env = {k: v for k, v in helper_env().items() if not k.startswith("DASK_DISTRIBUTED__COMM")}
    (tmp_path / "comm.yaml").write_text(
        "distributed:\n  comm:\n    require-encryption: true\n    tls:\n"
        "      ca-file: /etc/dask/ca.pem\n      min-version: 1.3\n"
        "      scheduler:\n        cert: /etc/dask/s.pem\n"
    )
    env["DASK_CONFIG"] = str(tmp_path)
    h = Helper(env={
        **env,
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": "/etc/dask/s.key",
        "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__TLS__CERT": "/etc/dask/web.pem",
    })
    try:
        config = ok(h.call({"op": "config"}))["config"]
        assert config["dashboard-tls-cert"] == "/etc/dask/web.pem"
        assert config["dashboard-tls-key"] is None
        comm = config["comm"]
        assert comm == {
            "ca-file": "/etc/dask/ca.pem",
            "cert": "/etc/dask/s.pem",
            "key": "/etc/dask/s.key",
            "min-version": 1.3,
            "max-version": None,
            "ciphers": None,
            "require-encryption": True,
            "default-scheme": "tcp",
        }
    finally:
        h.close()


@pytest.mark.parametrize(
    "extra_env, log_length, amm_start",
    [
        # the log is on by default, with Python's length
        ({}, 1000, True),
        ({"DASK_DISTRIBUTED__SCHEDULER__TRANSITION_LOG": "False"}, 0, True),
        ({"DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": "50",
          "DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START": "False"}, 50, False),
    ],
)
def test_config_reports_transition_log_and_amm(extra_env, log_length, amm_start):
    env = {k: v for k, v in helper_env().items() if not k.startswith("DASK_DISTRIBUTED")}
    h = Helper(env={**env, **extra_env})
    try:
        config = ok(h.call({"op": "config"}))["config"]
        assert config["transition-log-length"] == log_length
        assert config["amm-start"] is amm_start
        assert config["amm-interval"] == pytest.approx(2.0)
        assert config["amm-measure"] == "optimistic"
        assert list(config["amm-policies"]) == ["distributed.active_memory_manager.ReduceReplicas"]
    finally:
        h.close()


# ---------------------------------------------------------------------------
# the forked dask.order child only where memory allows
# ---------------------------------------------------------------------------

MiB = 1 << 20


def _fake_tree(tmp_path, cgroup, files, meminfo_kb=None):
    """A fake ``/proc`` and ``/`` for ``_memory_headroom``: ``cgroup`` is
    /proc/self/cgroup, ``files`` maps paths under the root to contents."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    if meminfo_kb is not None:
        (proc / "meminfo").write_text(
            f"MemTotal:       99999999 kB\nMemAvailable:   {meminfo_kb} kB\n"
        )
    root = tmp_path / "root"
    for path, text in files.items():
        f = root / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return str(root), str(proc)


def test_memory_headroom_is_the_tightest_cgroup_v2_limit_or_the_host(tmp_path):
    mod = load_helper_module()
    ctr = "sys/fs/cgroup/kubepods/pod1/ctr"
    pod = "sys/fs/cgroup/kubepods/pod1"
    files = {
        # the container: 1 GiB, 600 MiB used of which 100 MiB inactive cache
        f"{ctr}/memory.max": f"{1024 * MiB}\n",
        f"{ctr}/memory.current": f"{600 * MiB}\n",
        f"{ctr}/memory.stat": f"anon 1\ninactive_file {100 * MiB}\nactive_file 5\n",
        # the pod: no limit
        f"{pod}/memory.max": "max\n",
        f"{pod}/memory.current": f"{700 * MiB}\n",
    }
    root, proc = _fake_tree(tmp_path, "0::/kubepods/pod1/ctr\n", files, meminfo_kb=8 << 20)
    assert mod._memory_headroom(root, proc) == 524 * MiB
    # a tighter limit further up counts; so does a host with less available
    (tmp_path / "root" / pod / "memory.max").write_text(f"{900 * MiB}\n")
    assert mod._memory_headroom(root, proc) == 200 * MiB
    (tmp_path / "proc" / "meminfo").write_text(f"MemAvailable: {100 * 1024} kB\n")
    assert mod._memory_headroom(root, proc) == 100 * MiB


def test_memory_headroom_reads_cgroup_v1_and_ignores_no_limit(tmp_path):
    mod = load_helper_module()
    d = "sys/fs/cgroup/memory/docker/abc"
    files = {
        f"{d}/memory.limit_in_bytes": f"{512 * MiB}\n",
        f"{d}/memory.usage_in_bytes": f"{300 * MiB}\n",
        f"{d}/memory.stat": f"cache 9\ntotal_inactive_file {44 * MiB}\n",
    }
    cgroup = "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n"
    root, proc = _fake_tree(tmp_path, cgroup, files, meminfo_kb=4 << 20)
    assert mod._memory_headroom(root, proc) == 256 * MiB
    # v1's "no limit" is a huge number: the host's figure decides
    (tmp_path / "root" / d / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert mod._memory_headroom(root, proc) == 4 << 30
    # nothing readable: unknown
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mod._memory_headroom(str(empty), str(empty)) is None


def test_fork_fits_only_with_twice_the_graphs_memory_available():
    mod = load_helper_module()
    assert mod._fork_fits(None, 10**12)
    assert mod._fork_fits(200 * MiB, 100 * MiB)
    assert not mod._fork_fits(200 * MiB - 1, 100 * MiB)
    assert mod._fork_fits(0, -5)


def test_no_forked_order_when_memory_is_short(monkeypatch, caplog):
    import logging

    import dask.array as da

    mod = load_helper_module()
    dsk = dict(da.ones((40, 40), chunks=10).sum().__dask_graph__())
    monkeypatch.setattr(mod, "_rss_ready", 0)
    monkeypatch.setattr(mod, "_rss_bytes", lambda proc="/proc": 300 * MiB)
    monkeypatch.setattr(mod, "_memory_headroom", lambda root="/", proc="/proc": 599 * MiB)
    with caplog.at_level(logging.INFO, logger="dask_scheduler.materializer"):
        assert mod._ForkedOrder.start(dsk) is None
    assert "ordering the graph in the helper itself" in caplog.text
    assert "599 MiB available, the graph holds 300 MiB" in caplog.text


def test_config_describes_the_logging_dask_set_up(tmp_path):
    """``logging-setup``: Python's logging as distributed's import set it up
    from Dask's config (here the dictConfig form), for the scheduler to
    route its lines through; the helper's own stderr handler left out, and
    ``ext://sys.stdout`` told from stderr although the helper's fd 1 is."""
    log = tmp_path / "s.log"
    (tmp_path / "logging.yaml").write_text(f"""\
logging:
  version: 1
  disable_existing_loggers: false
  formatters:
    brace: {{format: "{{name}}: {{message}} 100%", style: "{{"}}
  handlers:
    out: {{class: logging.StreamHandler, stream: "ext://sys.stdout", formatter: brace}}
    file: {{class: logging.FileHandler, filename: "{log}", level: WARNING}}
    mem: {{class: logging.handlers.MemoryHandler, capacity: 10}}
  loggers:
    distributed.scheduler: {{level: DEBUG, handlers: [file], propagate: false}}
  root: {{level: INFO, handlers: [out, mem]}}
""")
    env = {k: v for k, v in helper_env().items() if not k.startswith("DASK_LOGGING")}
    h = Helper(env={**env, "DASK_CONFIG": str(tmp_path)})
    try:
        setup = ok(h.call({"op": "config"}))["config"]["logging-setup"]
    finally:
        h.close()
    handlers = setup["handlers"]
    root = setup["root"]
    assert root["level"] == 20 and len(root["handlers"]) == 2, setup
    out, mem = (handlers[i] for i in root["handlers"])
    assert (out["kind"], out["format"]) == ("stdout", "%(name)s: %(message)s 100%%")
    assert mem["kind"] == "unsupported" and "MemoryHandler" in mem["why"]
    sched = setup["loggers"]["distributed.scheduler"]
    assert (sched["level"], sched["propagate"]) == (10, False)
    (file,) = (handlers[i] for i in sched["handlers"])
    assert (file["kind"], file["path"], file["level"]) == ("file", str(log), 30)
    assert file["watched"] is False
    # no formatter: Python's default prints the message alone
    assert file["format"] == "%(message)s"
    last = handlers[setup["last-resort"]]
    assert (last["kind"], last["level"]) == ("stderr", 30)

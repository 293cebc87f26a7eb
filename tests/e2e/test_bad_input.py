"""Bad input on a scheduler connection costs at most that connection.

Each case runs while a real client is in the middle of a computation, which
must complete with the right answer; afterwards the scheduler must still
accept new clients and RPCs.
"""

import contextlib
import random
import re
import struct
import time

import pytest
from distributed import Client

from .cluster import IMPL, wait_until
from .helpers import inc, slow_inc
from .rawwire import HANDSHAKE, Closed, RawConn, dumps, pack_frames

# ---- the bad inputs: each opens a connection, misbehaves, returns the connection


def garbage(address):
    conn = RawConn(address)
    rng = random.Random(1234)
    conn.send_bytes(b"GET / HTTP/1.1\r\nHost: dask\r\n\r\n" + rng.randbytes(4096))
    return conn


def truncated_frame(address):
    conn = RawConn(address)
    conn.handshake()
    whole = dumps({"op": "identity", "reply": True})
    conn.send_bytes(whole[: len(whole) // 2])
    conn.close()  # hang up in the middle of the message
    return conn


def absurd_frame_length(address):
    conn = RawConn(address)
    conn.handshake()
    conn.send_bytes(struct.pack("<QQQ", 2**62, 1, 2**62) + b"\x80" * 64)
    return conn


def absurd_frame_count(address):
    conn = RawConn(address)
    conn.handshake()
    conn.send_bytes(struct.pack("<QQ", 2**40, 2**40) + b"\x00" * 64)
    return conn


def invalid_msgpack(address):
    conn = RawConn(address)
    conn.handshake()
    conn.send_bytes(pack_frames([b"\xc1\xc1\xc1\xc1"]))  # 0xc1 is never valid msgpack
    return conn


def op_of_wrong_type(address):
    conn = RawConn(address)
    conn.handshake()
    conn.send({"op": 123, "reply": True})
    return conn


def message_not_a_map(address):
    conn = RawConn(address)
    conn.handshake()
    conn.send([1, "two", 3.0])
    return conn


def bad_handshake(address):
    conn = RawConn(address)
    conn.send({"hello": "world"})  # no compression / pickle-protocol
    conn.send({"op": "identity", "reply": True})
    return conn


CASES = [garbage, truncated_frame, absurd_frame_length, absurd_frame_count, invalid_msgpack,
         op_of_wrong_type, message_not_a_map, bad_handshake]
# cases after which the scheduler must answer with an error or hang up (Rust)
MUST_REJECT = [garbage, absurd_frame_length, absurd_frame_count, invalid_msgpack,
               op_of_wrong_type, message_not_a_map]


# ---- helpers


@contextlib.contextmanager
def busy(client, n=2000):
    """A real computation in flight around the block; checked afterwards."""
    futures = client.map(slow_inc, range(n), delay=0.002, pure=False)
    yield
    assert sum(client.gather(futures)) == n * (n + 1) // 2


def assert_scheduler_healthy(cluster):
    assert cluster.scheduler.alive(), cluster.scheduler.describe()
    with RawConn(cluster.address) as conn:
        conn.handshake()
        ident = conn.rpc({"op": "identity", "reply": True})
        assert ident["type"] == "Scheduler"
    with Client(cluster.address, timeout=30, set_as_default=False) as c:
        assert c.submit(inc, 1, pure=False).result(timeout=30) == 2


def assert_rejected(conn, timeout=10.0):
    """The scheduler answers with an error reply or closes the connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = conn.recv(max(0.1, deadline - time.monotonic()))
        except Closed:
            return
        except TimeoutError:
            pytest.fail("the scheduler neither answered nor closed the connection")
        if not (isinstance(reply, dict) and "pickle-protocol" in reply):
            break  # (skip the scheduler's handshake where we sent none)
    assert isinstance(reply, dict) and reply.get("status") in ("error", "uncaught-error"), reply


def error_text(reply) -> str:
    return " ".join(str(reply.get(k, "")) for k in ("exception", "exception_text", "message", "text"))


LOG_PROBLEM = re.compile(r"\b(WARN|WARNING|ERROR)\b", re.IGNORECASE)


# ---- tests


@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__)
def test_bad_input_costs_at_most_that_connection(cluster, client, case):
    with busy(client):
        conn = case(cluster.address)
        time.sleep(0.5)
        conn.close()
    assert_scheduler_healthy(cluster)


@pytest.mark.rust_only  # the Python scheduler tolerates some of these silently
@pytest.mark.parametrize("case", MUST_REJECT, ids=lambda f: f.__name__)
def test_bad_input_is_rejected_and_logged(cluster, client, case):
    log_before = len(cluster.scheduler.log_text())
    with busy(client, n=500):
        conn = case(cluster.address)
        try:
            assert_rejected(conn)
        finally:
            conn.close()
    wait_until(lambda: LOG_PROBLEM.search(cluster.scheduler.log_text()[log_before:]), 5,
               "a warning or error line in the scheduler log")
    assert_scheduler_healthy(cluster)


def test_unknown_op_does_not_break_the_connection(cluster, client):
    with busy(client):
        with RawConn(cluster.address) as conn:
            conn.handshake()
            conn.rpc({"op": "no-such-op", "reply": True})  # Python: None, Rust: error map
            try:
                ident = conn.rpc({"op": "identity", "reply": True})
            except Closed:
                pass  # closing after an error reply is fine too
            else:
                assert ident["type"] == "Scheduler"
    assert_scheduler_healthy(cluster)


@pytest.mark.rust_only  # Python answers unknown RPC ops with None
def test_unknown_op_gets_error_reply(cluster, client):
    with RawConn(cluster.address) as conn:
        conn.handshake()
        reply = conn.rpc({"op": "no-such-op", "reply": True})
        assert isinstance(reply, dict), reply
        assert reply.get("status") in ("uncaught-error", "error"), reply
        assert "no-such-op" in error_text(reply), reply


def test_handshake_is_sent_on_accept(cluster):
    """Sanity check of the raw helper against a real server."""
    with RawConn(cluster.address) as conn:
        theirs = conn.handshake()
        assert theirs["compression"] is None
        assert theirs["pickle-protocol"] in (4, 5)
        assert conn.rpc({"op": "identity", "reply": True})["address"] == cluster.address
    assert HANDSHAKE["pickle-protocol"] == 5


# ---- every RPC with arguments of the wrong types

# the handlers' parameter names, read from Python's own Scheduler (with its
# extensions) in a child process, so that handlers added upstream are fuzzed too
SIGNATURES = r"""
import asyncio, inspect, json, sys
from distributed import Scheduler

async def main():
    s = Scheduler(dashboard=False)
    out = {}
    for op, handler in s.handlers.items():
        try:
            params = inspect.signature(handler).parameters
        except (TypeError, ValueError):
            params = {}
        out[op] = [p for p in params if p not in ("self", "comm", "stream")]
    json.dump(out, sys.stdout)

asyncio.run(main())
"""
# ops that end the scheduler or its workers, or turn the connection into a stream
NOT_FUZZED = {"terminate", "close", "restart", "restart_workers", "retire_workers",
              "register-client", "register-worker", "connection_stream", "feed",
              "subscribe_worker_status", "benchmark_hardware"}
# ops that wait, by design, for something that may never happen (a task or a variable
# to be set, a queue item, a lease, a client's flush): silence is no hang there
MAY_WAIT = {"event_wait", "queue_get", "queue_put", "variable_get", "variable_set",
            "semaphore_acquire", "multi_lock_acquire", "publish_delete", "publish_put",
            "shuffle_barrier"}
JUNK = [None, 0, -1, 2**63 - 1, -2**63, 1.5, float("nan"), True, "", "x", b"\x00\xff", [],
        [1, "a", None], {}, {"a": 1}, {1: [2]}, [[["deep"]]], {"k": {"k": {"k": []}}},
        "tcp://127.0.0.1:1", ["tcp://127.0.0.1:1"], {"tcp://127.0.0.1:1": 1}, "x" * 10000]


def test_every_rpc_survives_wrong_typed_arguments(cluster, client):
    """Each of Python's scheduler RPCs, without arguments and six times with
    random arguments of the wrong types, while a computation runs: each call
    is answered (a value or an error) or costs its connection, never hangs;
    afterwards the computation's result is right and the scheduler healthy."""
    import json
    import subprocess

    from .cluster import PYTHON, child_env

    signatures = json.loads(subprocess.run([PYTHON, "-c", SIGNATURES], capture_output=True,
                                           text=True, timeout=120, env=child_env(),
                                           check=True).stdout)
    assert {"gather", "scatter", "variable_set", "semaphore_acquire"} <= set(signatures)
    rng = random.Random(20261206)
    hangs = []
    with busy(client):
        for op, params in sorted(signatures.items()):
            if op in NOT_FUZZED:
                continue
            trials = [{}] + [{p: rng.choice(JUNK) for p in params if rng.random() < 0.8}
                             for _ in range(6)]
            for args in trials:
                with RawConn(cluster.address) as conn:
                    conn.handshake()
                    conn.send({"op": op, "reply": True, **args})
                    try:
                        conn.recv(2.0 if op in MAY_WAIT else 15.0)
                    except Closed:
                        pass
                    except TimeoutError:
                        if op not in MAY_WAIT:
                            hangs.append((op, repr(args)[:200]))
    assert not hangs, hangs
    assert_scheduler_healthy(cluster)


# the ops of the client and worker streams (Python's stream handlers, shared
# by both kinds of stream) and the fields they read
STREAM_OPS = {
    "add-keys": ["worker", "keys"], "cancel-keys": ["keys", "client", "force"],
    "client-desires-keys": ["keys", "client"], "client-releases-keys": ["keys", "client"],
    "heartbeat-client": ["client"], "keep-alive": [], "log-event": ["topic", "msg"],
    "long-running": ["key", "worker", "compute_duration"],
    "release-worker-data": ["key", "worker"], "reschedule": ["key", "worker"],
    "request-refresh-who-has": ["keys"], "steal-response": ["key", "state", "worker"],
    "subscribe-topic": ["topic", "client"], "unsubscribe-topic": ["topic", "client"],
    "task-erred": ["key", "worker", "exception", "traceback"],
    "task-finished": ["key", "worker", "nbytes", "type", "typename", "metadata"],
    "update-data": ["who_has", "nbytes", "client"], "update-graph": ["graph_header", "keys"],
    "variable_delete": ["name", "client"], "worker-status-change": ["status", "worker"],
    "queue-future-release": ["key", "name"], "no-such-op": ["x"],
}


def fuzz_stream(address, first, rng, batches=150):
    """Open a stream with ``first``, send ``batches`` batches of stream ops
    with wrong-typed fields. This scheduler logs and skips each bad op;
    Python's closes the stream at the first, which ends the sending here."""
    with RawConn(address) as conn:
        conn.handshake()
        conn.send(first)
        conn.recv(10.0)  # stream-start or the registration reply
        ops = sorted(STREAM_OPS)
        for _ in range(batches):
            batch = []
            for _ in range(rng.randint(1, 4)):
                op = rng.choice(ops)
                batch.append({"op": op, **{f: rng.choice(JUNK) for f in STREAM_OPS[op]
                                           if rng.random() < 0.8}})
            try:
                conn.send(batch)
            except OSError:
                return
        conn.closed_by_peer(timeout=1.0)  # let the scheduler read it all


def test_streams_survive_wrong_typed_ops(cluster, client):
    """A client stream and a worker stream fed ops with fields of the wrong
    types, while a computation runs: the scheduler logs and ignores them
    (closing at most that stream), and the computation's result is right."""
    rng = random.Random(7)
    log_before = len(cluster.scheduler.log_text())
    with busy(client):
        fuzz_stream(cluster.address, {"op": "register-client", "client": "Client-fuzz",
                                      "versions": {}, "reply": False}, rng)
        # a registration as a real worker sends it (shared/protocol traces)
        metrics = {"task_counts": {}, "bandwidth": {"total": 100000000, "workers": {}, "types": {}},
                   "digests_total_since_heartbeat": {}, "managed_bytes": 0,
                   "spilled_bytes": {"memory": 0, "disk": 0},
                   "transfer": {"incoming_bytes": 0, "incoming_count": 0,
                                "incoming_count_total": 0, "outgoing_bytes": 0,
                                "outgoing_count": 0, "outgoing_count_total": 0},
                   "event_loop_interval": 0.02, "cpu": 0.0, "memory": 62234624,
                   "time": time.time(), "host_net_io": {"read_bps": 0.0, "write_bps": 0.0},
                   "host_disk_io": {"read_bps": 0.0, "write_bps": 0.0}, "num_fds": 8}
        fuzz_stream(cluster.address, {
            "op": "register-worker", "address": "tcp://127.0.0.1:9", "nthreads": 1,
            "name": "fuzz-worker", "memory_limit": 0, "resources": {}, "status": "running",
            "server_id": "fuzz", "now": time.time(), "metrics": metrics, "pid": 1, "services": {},
            "local_directory": "/tmp", "versions": {}, "nanny": None, "extra": {},
            "stimulus_id": "fuzz", "host_info": {}, "resolve_address": False,
            "reply": False}, rng)
    wait_until(lambda: "tcp://127.0.0.1:9" not in client.scheduler_info()["workers"], 15,
               "the fuzzing worker to be removed")
    if IMPL == "rust":  # this one skips bad ops one by one, and says so
        log = cluster.scheduler.log_text()[log_before:]
        assert log.count("Ignoring message from worker") > 50, log[-3000:]
        assert log.count("Ignoring message from client") > 50, log[-3000:]
    assert_scheduler_healthy(cluster)

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

from .cluster import wait_until
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

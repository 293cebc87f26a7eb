"""A tiny, synchronous implementation of the Dask TCP wire format, for poking
the scheduler with hand-made (and deliberately broken) messages.

One message on the wire (all integers u64 little-endian):

    n1 | nframes | len[0] .. len[nframes-1] | frame[0] .. frame[nframes-1]

``n1`` is a read hint (prelude + the first k frames); frame 0 is msgpack.
Both ends send a handshake message first:
``{"compression": None, "python": [3, 11, 7], "pickle-protocol": 5}``.
See shared/protocol/PROTOCOL.md, section 1.
"""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlparse

import msgpack

HANDSHAKE = {"compression": None, "python": [3, 11, 7], "pickle-protocol": 5}


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


def pack_frames(frames: list[bytes], n1: int | None = None) -> bytes:
    """Frames -> bytes on the wire. ``n1`` defaults to "everything in one read"."""
    prelude = struct.pack("<Q", len(frames)) + b"".join(struct.pack("<Q", len(f)) for f in frames)
    body = prelude + b"".join(frames)
    if n1 is None:
        n1 = len(body)
    return struct.pack("<Q", n1) + body


def dumps(obj) -> bytes:
    """One msgpack-only message (no out-of-band frames) on the wire."""
    return pack_frames([msgpack.packb(obj, use_bin_type=True)])


def loads(frame: bytes):
    return msgpack.unpackb(frame, raw=False, strict_map_key=False, use_list=False)


class RawConn:
    """A raw TCP connection to a Dask server."""

    def __init__(self, address: str, timeout: float = 10.0):
        url = urlparse(address)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        self.timeout = timeout

    # -- sending
    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj) -> None:
        self.send_bytes(dumps(obj))

    # -- receiving
    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete message within {self.timeout}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise Closed(str(exc)) from exc
            if not chunk:
                raise Closed("EOF")
            buf += chunk
        return bytes(buf)

    def recv_frames(self, timeout: float | None = None) -> list[bytes]:
        deadline = time.monotonic() + (timeout or self.timeout)
        self._recv_exactly(8, deadline)  # n1: only a hint
        (nframes,) = struct.unpack("<Q", self._recv_exactly(8, deadline))
        if nframes > 10_000:
            raise ValueError(f"implausible frame count {nframes}")
        lengths = struct.unpack(f"<{nframes}Q", self._recv_exactly(8 * nframes, deadline))
        return [self._recv_exactly(n, deadline) for n in lengths]

    def recv(self, timeout: float | None = None):
        """The next message, frame 0 decoded from msgpack."""
        return loads(self.recv_frames(timeout)[0])

    def handshake(self) -> dict:
        """Send ours, read theirs."""
        self.send(HANDSHAKE)
        theirs = self.recv()
        assert isinstance(theirs, dict) and "pickle-protocol" in theirs, theirs
        return theirs

    def rpc(self, msg: dict, timeout: float | None = None):
        self.send(msg)
        return self.recv(timeout)

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True if the peer closes the connection within ``timeout`` (whatever
        it sends before that is read and dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(1 << 16):
                    return True
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

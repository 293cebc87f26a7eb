"""Graph materializer helper for the Rust ``dask-scheduler``.

The scheduler embeds this file and runs it as ``python -u -c <this file>``.
It turns the ``expr_ser`` of an ``update-graph`` message into tasks, doing in
Python exactly what ``distributed.Scheduler.update_graph`` does before it
touches scheduler state: deserialize the expression, ``_materialize_graph``,
``_cull`` for ``LLGExpr``, ``dask.order.order``, and per-task annotations as
``Scheduler._apply_annotations`` computes them.

Protocol (one request at a time, the reply is written before the next read):
every message is an 8-byte little-endian length followed by that many bytes of
msgpack.  The original fd 1 carries the protocol only: fd 1 / ``sys.stdout``
are redirected to stderr so that prints from user code cannot corrupt it, and
fd 0 is replaced by ``/dev/null`` after the protocol stream has been taken.
stderr carries log lines (``LEVEL name: message``).

On start the helper writes ``{"op": "hello", "status": "ok", "versions",
"python", "pid"}`` or ``{"op": "hello", "status": "error", "message"}`` (and
exits 1).  EOF on stdin exits 0.  See ``mod.rs`` for the request schema.
"""

import os
import struct
import sys

_LEN = struct.Struct("<Q")


def _take_stdio():
    """Keep the protocol pipes for ourselves; point fds 0/1 elsewhere."""
    proto_out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    proto_in = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115
    return proto_in, proto_out


def _pack_plain(obj):
    """Tiny msgpack encoder (str/int/None/bool/dict) for when msgpack itself
    cannot be imported, so that the error hello is still well-formed."""
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, str):
        raw = obj.encode("utf-8", "replace")
        return b"\xdb" + struct.pack(">I", len(raw)) + raw
    if isinstance(obj, dict):
        out = [b"\xdf", struct.pack(">I", len(obj))]
        for k, v in obj.items():
            out.append(_pack_plain(str(k)))
            out.append(_pack_plain(v))
        return b"".join(out)
    return _pack_plain(repr(obj))


def _write(out, body):
    out.write(_LEN.pack(len(body)))
    out.write(body)
    out.flush()


def _read(inp):
    """Read one framed message; None on EOF."""
    head = inp.read(8)
    if len(head) < 8:
        return None
    (n,) = _LEN.unpack(head)
    body = inp.read(n)
    if len(body) < n:
        return None
    return body


def _import_environment():
    """Import what the helper needs. Returns an error message or None."""
    global msgpack, dask, distributed, log
    names = ("dask", "distributed", "msgpack", "dask.order", "distributed.scheduler")
    for name in names:
        try:
            __import__(name)
        except BaseException as e:  # noqa: BLE001 - report anything
            return (
                f"cannot import {name!r} with python {sys.executable!r}: "
                f"{type(e).__name__}: {e}"
            )
    import logging

    import dask
    import distributed
    import msgpack

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("dask_scheduler.materializer")
    return None


# --------------------------------------------------------------------------
# graph materialization
# --------------------------------------------------------------------------

_DESERIALIZATION_ERROR = """\
Error during deserialization of the task graph. This frequently
occurs if the Scheduler and Client have different environments.
For more information, see
https://docs.dask.org/en/stable/deployment-considerations.html#consistent-software-environments
"""


def _materialize_graph(expr):
    try:
        from distributed.scheduler import _materialize_graph as impl
    except ImportError:  # pragma: no cover - older/newer distributed
        impl = None
    if impl is not None:
        return impl(expr=expr, validate=False)
    from collections import defaultdict

    from dask._task_spec import convert_legacy_graph

    dsk = expr.__dask_graph__()
    by_type = defaultdict(dict)
    for name, value in expr.__dask_annotations__().items():
        by_type[name].update(value)
    return convert_legacy_graph(dsk), by_type


def _cull(dsk, keys):
    try:
        from distributed.scheduler import _cull as impl
    except ImportError:  # pragma: no cover
        impl = None
    if impl is not None:
        return impl(dsk, keys)
    work, seen, out = set(keys), set(), {}
    while work:
        k = work.pop()
        if k in seen or k not in dsk:
            continue
        seen.add(k)
        out[k] = v = dsk[k]
        work.update(v.dependencies)
    return out


def _deserialize_expr(header_bytes, frames):
    from distributed.protocol.compression import decompress
    from distributed.protocol.serialize import (
        merge_and_deserialize,
        msgpack_decode_default,
    )

    if isinstance(header_bytes, dict):
        header = header_bytes
    else:
        header = msgpack.loads(
            header_bytes,
            object_hook=msgpack_decode_default,
            use_list=False,
            raw=False,
            strict_map_key=False,
        )
    if not isinstance(header, dict):
        raise TypeError(f"expr_header is not a map but {type(header).__name__}")
    frames = list(frames or ())
    if "compression" in header:
        frames = decompress(header, frames)
    return merge_and_deserialize(header, frames)


def _unpickle_annotations(ann):
    if ann is None:
        return {}
    from distributed.protocol import pickle as dpickle
    from distributed.protocol.compression import decompress

    if not isinstance(ann, dict) or "header" not in ann:
        raise TypeError("annotations must be nil or a map {'header': bin, 'frames': [bin]}")
    header = ann["header"]
    if not isinstance(header, dict):
        header = msgpack.loads(header, raw=False, strict_map_key=False)
    frames = list(ann.get("frames") or ())
    if "compression" in header:
        frames = decompress(header, frames)
    obj = dpickle.loads(header["pickled-obj"], buffers=frames)
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise TypeError(f"global annotations must be a dict, not {type(obj).__name__}")
    return obj


_DROP = object()


def _clean(value, path):
    """Make an annotation value msgpack-safe, or return _DROP (with a warning)."""
    import numbers

    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 64):
            return value
    elif isinstance(value, float):
        return value
    elif isinstance(value, numbers.Integral):  # numpy integers
        return _clean(int(value), path)
    elif isinstance(value, numbers.Real):  # numpy floats
        return float(value)
    elif type(value).__name__ == "bool_":  # numpy.bool_
        return bool(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(value)
            except TypeError:
                items = list(value)
        out = []
        for i, v in enumerate(items):
            c = _clean(v, f"{path}[{i}]")
            if c is not _DROP:
                out.append(c)
        return out
    elif isinstance(value, dict):
        out = {}
        for k, v in value.items():
            ck = _clean(k, f"{path} key {k!r}")
            if ck is _DROP or isinstance(ck, (list, dict)):
                if ck is not _DROP:
                    log.warning("dropping annotation %s key %r: not a scalar", path, k)
                continue
            c = _clean(v, f"{path}[{k!r}]")
            if c is not _DROP:
                out[ck] = c
        return out
    log.warning(
        "dropping annotation %s = %r: %s is not msgpack-encodable",
        path,
        value,
        type(value).__name__,
    )
    return _DROP


def _clean_annotations(ann, key):
    out = {}
    for name, value in ann.items():
        if not isinstance(name, str):
            log.warning("dropping annotation with non-str name %r", name)
            continue
        if name in ("workers", "restrictions") and isinstance(value, str):
            value = [value]
        c = _clean(value, f"{name!r} of task {key!r}")
        if c is not _DROP:
            out[name] = c
    return out


def _pickle_node(node):
    """Exactly what ``ToPickle(node)`` puts on the wire: sub-header + buffers."""
    from distributed.protocol import pickle as dpickle
    from distributed.utils import ensure_memoryview

    buffers = []
    pik = dpickle.dumps(node, protocol=5, buffer_callback=buffers.append)
    frames = [bytes(ensure_memoryview(b)) for b in buffers]
    header = msgpack.packb(
        {"pickled-obj": pik, "num-sub-frames": len(frames)}, use_bin_type=True
    )
    return header, frames


_P2P_ERROR = (
    "This graph uses Dask's P2P shuffle/rechunk, which needs the Python scheduler's "
    "shuffle extension; the Rust dask-scheduler does not implement it. Use the task-based "
    "algorithms instead: dask.config.set({'dataframe.shuffle.method': 'tasks', "
    "'array.rechunk.method': 'tasks'}) or pass shuffle_method='tasks'."
)


def _reject_p2p(dsk):
    """Fail clearly (instead of hanging on missing scheduler RPCs) on P2P graphs."""
    for key, node in dsk.items():
        name = key[0] if isinstance(key, tuple) and key else key
        if isinstance(name, str) and name.startswith(
            ("shuffle-transfer-", "shuffle-barrier-", "rechunk-transfer-", "hash-join-transfer-")
        ):
            raise NotImplementedError(_P2P_ERROR)
        func = getattr(node, "func", None)
        if getattr(func, "__module__", "").startswith("distributed.shuffle"):
            raise NotImplementedError(_P2P_ERROR)


def op_materialize(req):
    from dask._expr import LLGExpr

    for field in ("expr_header", "keys"):
        if field not in req:
            raise ValueError(f"materialize request lacks {field!r}")
    keys = req["keys"]
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"'keys' must be an array, not {type(keys).__name__}")
    keyset = set(keys)

    try:
        expr = _deserialize_expr(req["expr_header"], req.get("expr_frames"))
    except Exception as e:
        raise RuntimeError(_DESERIALIZATION_ERROR) from e
    try:
        global_annotations = _unpickle_annotations(req.get("annotations"))
    except Exception as e:
        raise RuntimeError(
            "Error during deserialization of the graph annotations"
        ) from e

    dsk, annotations_by_type = _materialize_graph(expr)
    if isinstance(expr, LLGExpr):
        dsk = _cull(dsk, keyset)
    del expr
    _reject_p2p(dsk)

    internal_priority = req.get("internal_priority")
    if not internal_priority:
        import dask.order

        internal_priority = dask.order.order(dsk)

    tasks = []
    for key, node in dsk.items():
        ann = {}
        for name, value in global_annotations.items():
            if callable(value):
                value = value(key)
            ann[name] = value
        for name, by_key in annotations_by_type.items():
            value = by_key.get(key)
            if value is not None:
                ann[name] = value
        run_spec, run_spec_frames = _pickle_node(node)
        tasks.append(
            {
                "key": key,
                "deps": list(node.dependencies),
                "run_spec": run_spec,
                "run_spec_frames": run_spec_frames,
                "order": internal_priority.get(key),
                "annotations": _clean_annotations(ann, key) if ann else {},
                "data_producer": bool(getattr(node, "data_producer", False)),
            }
        )
    return {"status": "ok", "tasks": tasks}


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def _serialized_bytes(b):
    """``Serialize(b)`` as the scheduler would put it on the wire:
    {"header": sub-header bytes, "frames": [payload]}."""
    from distributed.protocol.serialize import (
        Serialize,
        msgpack_encode_default,
        serialize_and_split,
    )
    from distributed.utils import ensure_memoryview

    header, frames = serialize_and_split(Serialize(b), on_error="raise")
    header["compression"] = tuple(None for _ in frames)
    header["num-sub-frames"] = len(frames)
    frames = [bytes(ensure_memoryview(f)) for f in frames]
    raw = msgpack.dumps(header, default=msgpack_encode_default, use_bin_type=True)
    return {"header": raw, "frames": frames}


def _scheduler_log_level(logging_config):
    """The level Dask's logging config gives ``distributed.scheduler``: the
    old-style map ``{"distributed.scheduler": "debug", "distributed": "info"}``
    (``DASK_LOGGING__DISTRIBUTED`` sets ``distributed``). ``None`` when it
    names none (or uses the ``version: 1`` dictConfig form)."""
    if not isinstance(logging_config, dict) or "version" in logging_config:
        return None
    dist = logging_config.get("distributed")
    for level in (
        logging_config.get("distributed.scheduler"),
        dist.get("scheduler") if isinstance(dist, dict) else None,
        dist if not isinstance(dist, dict) else None,
    ):
        if isinstance(level, (str, int)) and not isinstance(level, bool):
            return str(level)
    return None


def op_config(req):
    """The scheduler settings of Dask's config as this environment resolves them
    (YAML files, ``DASK_*`` environment variables), parsed into plain numbers."""
    import dask.config
    from dask.utils import parse_bytes, parse_timedelta

    get = dask.config.get
    ttl = get("distributed.scheduler.worker-ttl", None)
    idle = get("distributed.scheduler.idle-timeout", None)
    return {
        "status": "ok",
        "config": {
            "worker-saturation": float(get("distributed.scheduler.worker-saturation")),
            "allowed-failures": int(get("distributed.scheduler.allowed-failures")),
            "unknown-task-duration": float(
                parse_timedelta(get("distributed.scheduler.unknown-task-duration"))
            ),
            "worker-ttl": float(parse_timedelta(ttl)) if ttl else None,
            "idle-timeout": float(parse_timedelta(idle)) if idle else None,
            "bandwidth": float(parse_bytes(get("distributed.scheduler.bandwidth"))),
            "work-stealing": bool(get("distributed.scheduler.work-stealing")),
            "log-level": _scheduler_log_level(get("logging", None)),
            "default-task-durations": {
                str(k): float(parse_timedelta(v))
                for k, v in (get("distributed.scheduler.default-task-durations") or {}).items()
            },
        },
    }


def error_reply(e):
    """Build an error reply for ``e``; must be called inside ``except``."""
    import pickle
    import traceback

    try:
        from distributed.core import error_message

        err = error_message(e)
        exc = err["exception"].data
        tb = err["traceback"].data if err["traceback"] is not None else None
        exc_text = err["exception_text"]
        tb_text = err["traceback_text"]
    except BaseException:  # noqa: BLE001
        try:
            exc = pickle.dumps(e)
            pickle.loads(exc)
        except BaseException:  # noqa: BLE001
            exc = pickle.dumps(RuntimeError(repr(e)))
        tb = None
        exc_text = repr(e)
        tb_text = "".join(traceback.format_tb(e.__traceback__))
    reply = {
        "status": "error",
        "exception": exc,
        "traceback": tb,
        "exception_text": exc_text,
        "traceback_text": tb_text,
    }
    try:
        reply["exception_ser"] = _serialized_bytes(exc)
        reply["traceback_ser"] = _serialized_bytes(tb) if tb is not None else None
    except BaseException:  # noqa: BLE001
        log.warning("could not serialize exception for the wire", exc_info=True)
    return reply


# --------------------------------------------------------------------------
# main loop
# --------------------------------------------------------------------------


def main():
    import signal

    # The scheduler owns our lifetime; Ctrl-C in a terminal must not kill us
    # with a KeyboardInterrupt traceback half-way through a reply.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    # `python -c` puts the current directory first on sys.path; a stray
    # module there must not shadow dask/distributed (the Python scheduler,
    # started from its console script, does not see the cwd either).
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]

    proto_in, proto_out = _take_stdio()

    problem = _import_environment()
    if problem is not None:
        sys.stderr.write(problem + "\n")
        _write(
            proto_out,
            _pack_plain(
                {
                    "op": "hello",
                    "status": "error",
                    "message": problem,
                    "python": sys.executable,
                    "pid": os.getpid(),
                }
            ),
        )
        sys.exit(1)

    from distributed.versions import get_versions

    versions = get_versions()
    hello = {
        "op": "hello",
        "status": "ok",
        "versions": versions,
        "python": sys.executable,
        "pid": os.getpid(),
    }
    _write(proto_out, msgpack.packb(hello, use_bin_type=True))
    log.info(
        "materializer helper ready (pid %d, dask %s, distributed %s)",
        os.getpid(),
        dask.__version__,
        distributed.__version__,
    )

    while True:
        body = _read(proto_in)
        if body is None:
            return 0
        rid = None
        try:
            req = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=False)
            if not isinstance(req, dict):
                raise TypeError(f"request must be a msgpack map, not {type(req).__name__}")
            rid = req.get("id")
            op = req.get("op")
            if op == "materialize":
                reply = op_materialize(req)
            elif op == "versions":
                reply = {"status": "ok", "versions": versions}
            elif op == "config":
                reply = op_config(req)
            elif op == "ping":
                reply = {"status": "ok"}
            else:
                raise ValueError(
                    f"unknown op {op!r} (expected 'materialize', 'versions', 'config' or 'ping')"
                )
        except BaseException as e:  # noqa: BLE001 - SystemExit from user code too
            log.info("request %r failed: %s: %s", rid, type(e).__name__, e)
            reply = error_reply(e)
        reply["id"] = rid
        try:
            out = msgpack.packb(reply, use_bin_type=True)
        except BaseException as e:  # noqa: BLE001
            try:
                raise RuntimeError(f"reply is not msgpack-encodable: {e}") from e
            except RuntimeError as e2:
                reply = error_reply(e2)
            reply["id"] = rid
            out = msgpack.packb(reply, use_bin_type=True)
        try:
            _write(proto_out, out)
        except (BrokenPipeError, OSError):
            return 0


if __name__ == "__main__":
    sys.exit(main())

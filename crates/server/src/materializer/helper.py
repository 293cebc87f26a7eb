"""Graph materializer helper for the Rust ``dask-scheduler``.

The scheduler embeds this file and runs it with ``python -u -c``, in pieces
that a short bootstrap joins (one argument may not exceed 128 KiB).
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
from collections.abc import ItemsView, Mapping, MutableMapping, ValuesView

_LEN = struct.Struct("<Q")


def _take_stdio():
    """Keep the protocol pipes for ourselves; point fds 0/1 elsewhere."""
    proto_out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    proto_in = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # a stdout of its own (on fd 1, now stderr), so that a logging handler
    # Dask's config opens on ``ext://sys.stdout`` is told from stderr
    sys.stdout = open(  # noqa: SIM115
        1, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace",
        closefd=False,
    )
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


# ids of the handlers the helper adds for its own log lines (`_describe_logging`
# leaves them out)
_HELPER_LOG_HANDLERS = set()
# the root logger's level before the helper's `basicConfig` changed it
_HELPER_ROOT_LEVEL = None


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

    before = list(logging.getLogger().handlers)
    root_level = logging.getLogger().level
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # the helper's own output, not part of the logging Dask's config set up
    added = [h for h in logging.getLogger().handlers if not any(h is b for b in before)]
    _HELPER_LOG_HANDLERS.update(id(h) for h in added)
    if added:
        # basicConfig raised the root logger to INFO along with its handler
        global _HELPER_ROOT_LEVEL
        _HELPER_ROOT_LEVEL = root_level
    log = logging.getLogger("dask_scheduler.materializer")
    # The scheduler passes DEBUG when its own log shows materializer debug
    # lines (per-phase timings of each graph).
    if os.environ.get("DASK_SCHEDULER_MATERIALIZER_LOG_LEVEL", "").upper() == "DEBUG":
        log.setLevel(logging.DEBUG)
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


def _msgpack_bin_head(n):
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _msgpack_uint(n):
    if n < 0x80:
        return n.to_bytes(1, "big")
    if n < 0x100:
        return b"\xcc" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xcd" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xce" + n.to_bytes(4, "big")
    return b"\xcf" + n.to_bytes(8, "big")


def _pickled_header(pik, nframes):
    """``msgpack.packb({"pickled-obj": pik, "num-sub-frames": nframes},
    use_bin_type=True)``, byte for byte, without a Packer per task."""
    return b"".join(
        (
            b"\x82\xabpickled-obj",
            _msgpack_bin_head(len(pik)),
            pik,
            b"\xaenum-sub-frames",
            _msgpack_uint(nframes),
        )
    )


def _node_pickler():
    """A function ``node -> (header, frames)`` producing exactly what
    ``ToPickle(node)`` puts on the wire (the ``__Pickled__`` sub-header and its
    buffers), i.e. ``distributed.protocol.pickle.dumps(node, protocol=5,
    buffer_callback=...)``.

    Its common path (plain ``pickle.dumps`` succeeds and distributed would
    keep that result) is inlined with the per-call lookups hoisted out.

    Where distributed would use cloudpickle (``__main__`` in the pickle, a
    module registered for pickling by value: a function defined in a script
    or a notebook, the usual ``client.map`` argument), the node goes through
    ``cloudpickle.dumps``'s own steps with a ``cloudpickle.Pickler`` that
    remembers, for this graph, how it reduced each function and class: the
    tasks of one graph share a handful of them, and working out the
    reduction (is it importable? its code, globals, closure) is most of
    cloudpickle's cost per task. The steps around it are distributed's
    (plain pickle, then its ``_DaskPickler`` if that fails, then cloudpickle
    unless it keeps a large numpy or pandas pickle), so the bytes are the
    same as distributed's in all cases; should the caching pickler fail,
    distributed's ``dumps`` runs itself.

    A function defined in a client's ``__main__`` is not in this process's
    ``__main__``, so plain pickle fails on it here and the second step runs
    too (it fails early, at the function); that step's pickler remembers the
    types distributed has no serializer for. Plain pickle fails on every
    ``Task`` calling such a function (a ``Task`` pickles its function by
    reference, as a global looked up by name), so once it has failed on one,
    the tasks calling the same function skip the attempt; and unless a dask
    serializer is registered for ``Task`` or for functions, the second step
    fails on them for the same reason, so they go straight to cloudpickle,
    as distributed's ``dumps`` does after both steps failed."""
    import inspect
    import io
    import pickle
    import sys
    import types

    import cloudpickle
    from dask._task_spec import Task
    from distributed.protocol import pickle as dpickle
    from distributed.utils import ensure_memoryview

    dumps = pickle.dumps
    getmodule = inspect.getmodule
    by_value = cloudpickle.list_registry_pickle_by_value()
    always_pickle = getattr(dpickle, "_always_use_pickle_for", None)
    function_type = types.FunctionType
    # id(obj) -> (obj, its reduction); obj is kept so that its id cannot be
    # reused by another object while this graph is pickled
    reduced = {}

    class CachingPickler(cloudpickle.Pickler):
        """``cloudpickle.Pickler`` with each function's and class's reduction
        computed once per graph (see above)."""

        def reducer_override(self, obj):
            # what cloudpickle's own override handles: classes and functions
            t = type(obj)
            try:
                is_class = issubclass(t, type)
            except TypeError:
                is_class = False
            if not is_class and t is not function_type:
                return NotImplemented
            hit = reduced.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            rv = super().reducer_override(obj)
            reduced[id(obj)] = (obj, rv)
            return rv

    def cloudpickle_dumps(node, buffer_callback):
        # ``cloudpickle.dumps(node, protocol=5, buffer_callback=...)``
        with io.BytesIO() as f:
            CachingPickler(f, protocol=5, buffer_callback=buffer_callback).dump(node)
            return f.getvalue()

    dask_pickler = getattr(dpickle, "_DaskPickler", None)
    if dask_pickler is not None:
        from distributed.protocol.serialize import dask_deserialize, dask_serialize

        # types without a dask (de)serializer, for this graph
        unregistered = set()

        def has_dask_serializer(t):
            """Would ``_DaskPickler``'s override find both halves of a dask
            serializer for type ``t`` (else it answers ``NotImplemented``)?"""
            try:
                dask_serialize.dispatch(t)
                dask_deserialize.dispatch(t)
            except TypeError:
                return False
            return True

        class CachingDaskPickler(dask_pickler):
            """distributed's ``_DaskPickler``, remembering the types its
            serializer dispatch has no entry for: its override returns
            ``NotImplemented`` for those whatever the object, so the answer
            is given without the dispatch's walk over the type's MRO for
            every object pickled."""

            def reducer_override(self, obj):
                t = type(obj)
                try:
                    if t in unregistered:
                        return NotImplemented
                except TypeError:  # an unhashable type
                    return super().reducer_override(obj)
                if not has_dask_serializer(t):
                    unregistered.add(t)
                    return NotImplemented
                return super().reducer_override(obj)

        dask_pickler = CachingDaskPickler

    def wants_cloudpickle(node, pik):
        """distributed's test on a pickle: does it name ``__main__``, or is
        the node's module registered for pickling by value?"""
        return b"__main__" in pik or (
            by_value and getattr(getmodule(node), "__name__", None) in by_value
        )

    def distributed_dumps(node, pik, buffers):
        """``distributed.protocol.pickle.dumps`` from the point where a plain
        ``pickle.dumps`` gave ``pik`` (``None``: it failed), step by step,
        with the caching pickler for cloudpickle."""
        try:
            if pik is None:
                buffers.clear()
                with io.BytesIO() as f:
                    dask_pickler(f, protocol=5, buffer_callback=buffers.append).dump(node)
                    pik = f.getvalue()
            if wants_cloudpickle(node, pik):
                if len(pik) < 1000 or not always_pickle(node):
                    buffers.clear()
                    pik = cloudpickle_dumps(node, buffers.append)
        except Exception:
            pik = after_both_steps_failed(node, buffers)
        return pik

    def after_both_steps_failed(node, buffers):
        """distributed's ``dumps`` once plain pickle and its ``_DaskPickler``
        have failed: cloudpickle, whatever is in the pickle."""
        buffers.clear()
        try:
            return cloudpickle_dumps(node, buffers.append)
        except Exception:
            # distributed's own last attempt: its error and its log line
            buffers.clear()
            return dpickle.dumps(node, protocol=5, buffer_callback=buffers.append)

    # id(func) -> func: ``__main__`` functions this process cannot find by
    # name, on which plain pickle has failed (kept alive, as in ``reduced``)
    not_by_reference = {}
    missing = object()

    def found_by_name(func):
        """Would ``pickle`` find ``func`` by its module and qualified name
        (``pickle._getattribute``, then the identity check)?"""
        obj = sys.modules.get("__main__", missing)
        for part in func.__qualname__.split("."):
            if part == "<locals>" or obj is missing:
                return False
            obj = getattr(obj, part, missing)
        return obj is func

    def plain_pickle_fails(node):
        """Plain pickle is known to fail on ``node``: a ``Task`` calling a
        function on which it failed before (see the docstring above)."""
        if type(node) is not Task:
            return False
        func = node.func
        return not_by_reference.get(id(func)) is func

    # the answer of ``serializer_step_fails_too``, once asked
    no_serializer_for_tasks = None

    def serializer_step_fails_too():
        """distributed's ``_DaskPickler`` fails wherever plain pickle fails on
        a ``Task``'s function, unless a dask serializer is registered for
        ``Task`` or for functions: its override answers ``NotImplemented``
        for both types (a dispatch raising ``TypeError``), so it pickles the
        task as plain pickle does and fails at the same function."""
        nonlocal no_serializer_for_tasks
        if always_pickle is None or dask_pickler is None:
            return False
        if no_serializer_for_tasks is None:
            no_serializer_for_tasks = not has_dask_serializer(Task) and not has_dask_serializer(
                function_type
            )
        return no_serializer_for_tasks

    def note_plain_failure(node):
        if type(node) is not Task:
            return
        func = node.func
        if (
            type(func) is function_type
            and func.__module__ == "__main__"
            and not found_by_name(func)
        ):
            not_by_reference[id(func)] = func

    def pickled(node, buffers):
        """The pickle distributed's ``dumps`` makes of ``node`` (its buffers
        appended to ``buffers``)."""
        if plain_pickle_fails(node):
            if serializer_step_fails_too():
                # both of distributed's pickle steps would fail: its next one
                return after_both_steps_failed(node, buffers)
            pik = None
        else:
            try:
                pik = dumps(node, protocol=5, buffer_callback=buffers.append)
            except Exception:
                pik = None
                note_plain_failure(node)
        if pik is None or wants_cloudpickle(node, pik):
            if always_pickle is not None and dask_pickler is not None:
                pik = distributed_dumps(node, pik, buffers)
            else:
                buffers.clear()
                pik = dpickle.dumps(node, protocol=5, buffer_callback=buffers.append)
        return pik

    def pickle_node(node):
        buffers = []
        pik = pickled(node, buffers)
        frames = [bytes(ensure_memoryview(b)) for b in buffers] if buffers else []
        return _pickled_header(pik, len(frames)), frames

    return pickle_node


def _p2p_specs(dsk):
    """``{shuffle id: pickled ShuffleSpec}`` of the P2P shuffles and rechunks
    in ``dsk`` (their barrier tasks carry the spec), which the scheduler needs
    when a worker starts such a shuffle (``shuffle_get_or_create``)."""
    specs = {}
    for key, node in dsk.items():
        spec = getattr(node, "spec", None)
        if spec is None or not (isinstance(key, str) and key.startswith("shuffle-barrier-")):
            continue
        from distributed.protocol.pickle import dumps

        specs[key[len("shuffle-barrier-"):]] = dumps(spec)
    return specs


# Streamed replies: a chunk is sent once it holds this many tasks or this many
# bytes of run_spec (whichever comes first).
CHUNK_TASKS = 5000
CHUNK_BYTES = 8 << 20


def op_materialize(req, emit=None):
    """Materialize a graph. With ``req["stream"]`` and an ``emit`` callback,
    every full chunk of tasks is sent as a ``{"partial": True, "tasks":
    [...]}`` frame through ``emit`` while the rest is still being pickled;
    the returned reply carries the remaining tasks and the total count
    (``ntasks``)."""
    import gc
    import time

    # Materializing, ordering and pickling allocate millions of objects and
    # free none: the cyclic collector would run over and over for nothing
    # (up to half of the materialization time on big graphs).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _materialize(req, emit, time.perf_counter)
    finally:
        if gc_was_enabled:
            gc.enable()


def _materialize(req, emit, clock):
    from dask._expr import LLGExpr

    for field in ("expr_header", "keys"):
        if field not in req:
            raise ValueError(f"materialize request lacks {field!r}")
    keys = req["keys"]
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"'keys' must be an array, not {type(keys).__name__}")
    keyset = set(keys)
    stream = emit is not None and bool(req.get("stream"))
    chunk_tasks = req.get("chunk_tasks")
    if chunk_tasks is None:
        chunk_tasks = CHUNK_TASKS
    if isinstance(chunk_tasks, bool) or not isinstance(chunk_tasks, int) or chunk_tasks < 1:
        raise ValueError(f"'chunk_tasks' must be a positive integer, not {chunk_tasks!r}")

    t0 = clock()
    # a module uploaded with Client.upload_file may be what the graph calls
    _refresh_uploads()
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

    t1 = clock()
    dsk, annotations_by_type = _materialize_graph(expr)
    if isinstance(expr, LLGExpr):
        dsk = _cull(dsk, keyset)
    del expr
    p2p_specs = _p2p_specs(dsk)

    t2 = clock()
    internal_priority = req.get("internal_priority")
    orderer = None
    if not internal_priority:
        fork_min = req.get("fork_order_min_tasks")
        if not isinstance(fork_min, int) or isinstance(fork_min, bool):
            fork_min = FORK_ORDER_MIN_TASKS
        if stream and len(dsk) >= fork_min:
            orderer = _ForkedOrder.start(dsk)
        if orderer is None:
            import dask.order

            internal_priority = dask.order.order(dsk)
    if orderer is not None:
        # Orders come at the end, in the reply ("orders"); the tasks go out
        # without them.
        internal_priority = {}

    t3 = clock()
    pickle_node = _node_pickler()
    # A dependency in this graph goes as its position in the tasks sent (the
    # scheduler then needs no key lookup for it); others (keys of earlier
    # graphs) as keys.
    position = {key: i for i, key in enumerate(dsk)}
    tasks = []
    chunk_bytes = 0
    sent = 0
    t_emit = 0.0
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
        run_spec, run_spec_frames = pickle_node(node)
        deps = node.dependencies
        if not deps:
            # a root task: no lists to build
            dep_pos = outside = ()
        else:
            try:
                dep_pos = [position[d] for d in deps]
                outside = ()
            except KeyError:
                dep_pos = [position[d] for d in deps if d in position]
                outside = [d for d in deps if d not in position]
        tasks.append(
            {
                "key": key,
                "deps": outside,
                "dep_pos": dep_pos,
                "run_spec": run_spec,
                "run_spec_frames": run_spec_frames,
                "order": internal_priority.get(key),
                "annotations": _clean_annotations(ann, key) if ann else {},
                "data_producer": bool(getattr(node, "data_producer", False)),
            }
        )
        if stream:
            chunk_bytes += len(run_spec)
            for f in run_spec_frames:
                chunk_bytes += len(f)
            if len(tasks) >= chunk_tasks or chunk_bytes >= CHUNK_BYTES:
                te = clock()
                emit({"partial": True, "tasks": tasks})
                t_emit += clock() - te
                sent += len(tasks)
                tasks = []
                chunk_bytes = 0
    t4 = clock()
    # The last (or only) partial chunk travels in the reply itself.
    reply = {"status": "ok", "tasks": tasks, "ntasks": sent + len(tasks)}
    if p2p_specs:
        reply["p2p_specs"] = p2p_specs
    if orderer is not None:
        reply["orders"] = orderer.result(dsk, patience=max(30.0, 3 * (t4 - t2)))
    t5 = clock()
    ordering = t3 - t2 if orderer is None else orderer.elapsed
    # For the scheduler's ``update-graph`` event (Python's metrics).
    reply["timings"] = {"materialization": t2 - t0, "ordering": ordering}
    log.debug(
        "materialized %d tasks: unpickle %.3fs, materialize %.3fs, order %.3fs%s, "
        "pickle %.3fs, send %.3fs, waiting for the order %.3fs",
        len(dsk),
        t1 - t0,
        t2 - t1,
        ordering,
        "" if orderer is None else f" (forked: {orderer.how})",
        t4 - t3 - t_emit,
        t_emit,
        t5 - t4,
    )
    return reply


# Graphs at least this big get their ``dask.order`` computed in a forked child
# while this process pickles the tasks (the two are the bulk of the work and
# independent), when memory allows (``_fork_fits``). Set
# DASK_SCHEDULER_MATERIALIZER_FORK_ORDER=0 to never fork. Below this size the
# fork saved no measurable wall time end to end (graphs of 23k and 43k tasks
# on 4 workers) while it raised the scheduler's peak memory by a quarter; at
# 214k tasks it took seconds off the intake.
FORK_ORDER_MIN_TASKS = 100000

# The forked child costs memory: both processes write to the pages holding the
# graph (reference counts), and each page written is copied. Measured on array
# reductions of 23k-214k tasks, the peak of the helper and its child together
# rose by about half of what the graph had added to the helper. The fork is
# made only while the memory still available is at least this many times
# what the graph has added, so that it never takes a scheduler's container to
# its limit to save time.
FORK_ORDER_MEMORY_FACTOR = 2

# This process's resident bytes once it was ready for work (``main``); what it
# holds beyond that while a graph is ordered is the graph's.
_rss_ready = None


def _rss_bytes(proc="/proc"):
    """Resident bytes of this process, or None where /proc cannot say."""
    try:
        with open(f"{proc}/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _read_int(path):
    """The integer in a one-line file, or None (missing, unreadable, "max")."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_fields(path):
    """A ``name value`` per line file (meminfo, memory.stat) as a dict of ints."""
    fields = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    try:
                        fields[parts[0].rstrip(":")] = int(parts[1])
                    except ValueError:
                        pass
    except OSError:
        pass
    return fields


def _cgroup_headrooms(root, proc):
    """Bytes left under each memory limit of this process's cgroups (v2: the
    cgroup and its ancestors; v1: the memory controller's cgroup). Usage
    leaves out the inactive file cache, which the kernel reclaims before it
    kills anything (the "working set" a kubelet evicts by)."""
    rooms = []
    try:
        with open(f"{proc}/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return rooms
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            # v2: a limit anywhere up the hierarchy applies
            rel = path.strip("/")
            while True:
                d = os.path.join(root, "sys/fs/cgroup", rel)
                limit = _read_int(os.path.join(d, "memory.max"))
                usage = _read_int(os.path.join(d, "memory.current"))
                if limit is not None and usage is not None:
                    inactive = _read_fields(os.path.join(d, "memory.stat")).get("inactive_file", 0)
                    rooms.append(limit - max(usage - inactive, 0))
                if not rel:
                    break
                rel = os.path.dirname(rel)
        elif "memory" in controllers.split(","):
            for rel in (path.strip("/"), ""):
                d = os.path.join(root, "sys/fs/cgroup/memory", rel)
                limit = _read_int(os.path.join(d, "memory.limit_in_bytes"))
                usage = _read_int(os.path.join(d, "memory.usage_in_bytes"))
                if limit is not None and usage is not None:
                    # "no limit" reads as a huge page-rounded number
                    if limit < 1 << 60:
                        stat = _read_fields(os.path.join(d, "memory.stat"))
                        inactive = stat.get("total_inactive_file", 0)
                        rooms.append(limit - max(usage - inactive, 0))
                    break
    return rooms


def _memory_headroom(root="/", proc="/proc"):
    """Bytes that can still be allocated before the host or one of this
    process's cgroups runs out (the smallest), or None where nothing says."""
    rooms = _cgroup_headrooms(root, proc)
    available = _read_fields(f"{proc}/meminfo").get("MemAvailable")
    if available is not None:
        rooms.append(available * 1024)
    return min(rooms) if rooms else None


def _fork_fits(headroom, graph_bytes):
    """Whether forking to order a graph that took ``graph_bytes`` leaves
    enough memory (see FORK_ORDER_MEMORY_FACTOR); an unknown headroom does
    not stop it."""
    if headroom is None:
        return True
    return headroom >= FORK_ORDER_MEMORY_FACTOR * max(graph_bytes, 0)


class _ForkedOrder:
    """``dask.order.order(dsk)`` computed in a forked copy of this process.

    The child writes the orders, as a msgpack array in ``dsk`` iteration order,
    to a pipe and exits with ``os._exit``. Anything unusual (no ``os.fork``,
    other threads running, the child failing, hanging or sending something
    unexpected) falls back to computing the order here, so the result is
    always ``dask.order.order(dsk)``."""

    def __init__(self, pid, fd, clock):
        self.pid, self.fd, self.clock = pid, fd, clock
        self.started = clock()
        self.elapsed = 0.0
        self.how = "in a child process"

    @classmethod
    def start(cls, dsk):
        import threading
        import time

        if os.environ.get("DASK_SCHEDULER_MATERIALIZER_FORK_ORDER", "1") == "0":
            return None
        rss = _rss_bytes()
        graph_bytes = rss - _rss_ready if rss is not None and _rss_ready is not None else 0
        headroom = _memory_headroom()
        if not _fork_fits(headroom, graph_bytes):
            log.info(
                "ordering the graph in the helper itself, not in a forked child: "
                "%d MiB available, the graph holds %d MiB",
                headroom >> 20,
                graph_bytes >> 20,
            )
            return None
        # Forking a process with other threads can deadlock the child.
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        try:
            r, w = os.pipe()
        except OSError:
            return None
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return None
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(r)
                import dask.order

                order = dask.order.order(dsk)
                data = msgpack.packb([order.get(k) for k in dsk], use_bin_type=True)
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view) :]
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        return cls(pid, r, time.perf_counter)

    def _read(self, deadline):
        import select

        chunks = []
        while True:
            left = deadline - self.clock()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def result(self, dsk, patience):
        """The orders, as a list aligned with ``dsk``."""
        import signal

        data = None
        try:
            data = self._read(self.clock() + patience)
        finally:
            os.close(self.fd)
            if data is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                _, status = os.waitpid(self.pid, 0)
            except OSError:
                status = -1
        self.elapsed = self.clock() - self.started
        orders = None
        if data is not None and status == 0:
            try:
                orders = msgpack.unpackb(data, use_list=True)
            except Exception:  # noqa: BLE001
                orders = None
        if not isinstance(orders, list) or len(orders) != len(dsk):
            log.warning(
                "computing the graph order in a child process failed (%s); "
                "computing it here",
                "timed out" if data is None else f"exit status {status}",
            )
            import dask.order

            t = self.clock()
            order = dask.order.order(dsk)
            orders = [order.get(k) for k in dsk]
            self.how = "failed, then computed in the helper"
            self.elapsed = self.clock() - t
        return orders


# --------------------------------------------------------------------------
# files uploaded with Client.upload_file (the scheduler plugin
# SchedulerUploadFile); other scheduler plugins run in the function runner
# --------------------------------------------------------------------------

_SCHEDULER_PLUGIN_ERROR = (
    "the scheduler routed {plugin} here as Client.upload_file's SchedulerUploadFile, "
    "which it is not"
)


def _upload_dir():
    """Where ``Client.upload_file`` puts its files for the scheduler side.
    Every helper of one scheduler is a child of that scheduler process, so
    they all find the same directory."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"dask-scheduler-{os.getppid()}-uploads")


# file name -> mtime (ns) of the uploaded files this process has seen
_upload_seen = {}


def _refresh_uploads():
    """Make files uploaded since the last request importable here, as they
    are in the Python scheduler's process after ``upload_file``: the upload
    directory (and any ``.egg``/``.zip``/``.pyz`` in it) on ``sys.path``,
    import caches invalidated, modules imported from a changed file reloaded."""
    d = _upload_dir()
    try:
        entries = {e.name: e.stat().st_mtime_ns for e in os.scandir(d) if e.is_file()}
    except OSError:
        return
    if d not in sys.path:
        sys.path.insert(0, d)
    if entries == _upload_seen:
        return
    import importlib

    importlib.invalidate_caches()
    for name, mtime in entries.items():
        path = os.path.join(d, name)
        if name.endswith((".egg", ".zip", ".pyz")) and path not in sys.path:
            sys.path.insert(0, path)
        old = _upload_seen.get(name)
        if old is not None and old != mtime:
            for mod in list(sys.modules.values()):
                if getattr(mod, "__file__", None) == path:
                    importlib.reload(mod)
    _upload_seen.clear()
    _upload_seen.update(entries)


def op_p2p_create(req):
    """Start a run of a P2P shuffle, as ``ShuffleSchedulerPlugin._create``:
    map every output partition to a worker (``spec.pick_worker`` over the
    given workers, keeping the mapping ``existing`` of a shuffle that shares
    output tasks) and build the ``ShuffleRunSpec`` sent to the workers, with
    the scheduler's ``run_id``."""
    import pickle

    from distributed.shuffle._core import ShuffleRunSpec

    spec = pickle.loads(req["spec"])
    workers = list(req["workers"])
    if not workers:
        raise RuntimeError("no workers to run the P2P shuffle on")
    existing = {}
    for mapping in req.get("existing") or ():
        existing.update(pickle.loads(mapping))
    worker_for = {}
    for partition in spec.output_partitions:
        worker = existing.get(partition)
        if worker is None:
            worker = spec.pick_worker(partition, workers)
        worker_for[partition] = worker
    run_spec = ShuffleRunSpec(spec=spec, worker_for=worker_for, span_id=req.get("span_id"))
    # the run id counts per scheduler, not per helper process
    object.__setattr__(run_spec, "run_id", int(req["run_id"]))
    from distributed.protocol.pickle import dumps

    return {
        "status": "ok",
        "run_spec": _pickled_header(dumps(run_spec), 0),
        "worker_for": pickle.dumps(worker_for),
        "participating": sorted(set(worker_for.values())),
    }


def op_p2p_worker_plugin(req):
    """The pickled ``ShuffleWorkerPlugin`` that the Python scheduler installs
    on every worker (its shuffle extension's ``start``)."""
    from distributed.protocol.pickle import dumps
    from distributed.shuffle._worker_plugin import ShuffleWorkerPlugin

    return {"status": "ok", "plugin": dumps(ShuffleWorkerPlugin())}


def op_write_cluster_dump(req):
    """``dump_cluster_state_to_url``: write the dump the scheduler gathered
    to ``url`` with Dask's own writer (fsspec), as the Python scheduler does."""
    import asyncio

    from distributed import cluster_dump

    state = req["state"]

    async def get_state():
        return state

    asyncio.run(
        cluster_dump.write_state(
            get_state, req["url"], req.get("format") or "msgpack",
            **dict(req.get("storage_options") or {}),
        )
    )
    return {"status": "ok"}


def op_scheduler_plugin(req):
    """``register_scheduler_plugin`` of ``SchedulerUploadFile`` (what
    ``Client.upload_file`` registers): write its file where every helper
    imports from, and import it if asked. (Other plugins go to the function
    runner, ``_plugin_add``.)"""
    import pickle

    try:
        plugin = pickle.loads(req["plugin"])
    except Exception as e:  # noqa: BLE001 - a class only the client can import
        raise RuntimeError(
            _SCHEDULER_PLUGIN_ERROR.format(plugin=f"a plugin it cannot load ({e})")
        ) from None
    cls = type(plugin)
    if cls.__module__ != "distributed.diagnostics.plugin" or cls.__name__ != "SchedulerUploadFile":
        raise TypeError(
            _SCHEDULER_PLUGIN_ERROR.format(plugin=f"{cls.__module__}.{cls.__qualname__}")
        )
    d = _upload_dir()
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, os.path.basename(plugin.filename))
    data = plugin.data if isinstance(plugin.data, bytes) else bytes(plugin.data)
    tmp = f"{path}.{os.getpid()}.part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _refresh_uploads()
    if plugin.load:
        from distributed.utils import import_file

        import_file(path)
    return {"status": "ok", "nbytes": len(data)}


_FEED_ERROR = (
    "The Rust dask-scheduler runs no Python on the scheduler, so 'feed' serves only "
    "distributed's progress bars (ProgressBar / MultiProgressBar grouped by prefix); "
    "it cannot run {what}"
)


def _closure(fn):
    """A function's closure as ``{name: value}``."""
    cells = fn.__closure__ or ()
    return {name: cell.cell_contents for name, cell in zip(fn.__code__.co_freevars, cells)}


def op_describe_feed(req):
    """``feed(setup=..., function=...)``: Python's scheduler runs the two
    pickled functions. This scheduler recognises the two that
    ``distributed.diagnostics.progressbar`` sends (the progress bars of
    ``distributed.progress``) and answers what they watch, so that it can
    serve them itself; anything else is refused, naming it."""
    import pickle

    def load(name):
        data = req.get(name)
        if data is None:
            return None
        try:
            return pickle.loads(data)
        except Exception as e:  # noqa: BLE001 - a function only the client can import
            raise NotImplementedError(
                _FEED_ERROR.format(what=f"a {name} function it cannot load ({e})")
            ) from None

    setup, function = load("setup"), load("function")
    if req.get("teardown") is not None:
        raise NotImplementedError(_FEED_ERROR.format(what="a teardown function"))
    module = getattr(setup, "__module__", None)
    qualname = getattr(setup, "__qualname__", repr(setup))
    kinds = {
        "ProgressBar.listen.<locals>.setup": "progress",
        "MultiProgressBar.listen.<locals>.setup": "multi",
    }
    kind = kinds.get(qualname) if module == "distributed.diagnostics.progressbar" else None
    fqual = getattr(function, "__qualname__", None)
    if kind is None or fqual != qualname.replace(".setup", ".function"):
        raise NotImplementedError(_FEED_ERROR.format(what=f"{module}.{qualname}"))
    cells = _closure(setup)
    out = {
        "status": "ok",
        "kind": kind,
        "keys": list(cells["keys"]),
        "complete": bool(cells["complete"]),
    }
    if kind == "multi":
        from dask.utils import key_split

        group_by = cells.get("group_by")
        if group_by is not key_split:
            # a bar all the same: it is told so in the shape it reads
            what = "spans" if group_by == "spans" else getattr(group_by, "__qualname__", repr(group_by))
            return {
                "status": "ok",
                "kind": "unsupported",
                "text": _FEED_ERROR.format(what=f"a progress bar grouped by {what}"),
            }
    return out


def op_describe_scheduler_function(req):
    """``run_function`` (``Client.run_on_scheduler``): Python's scheduler
    calls the pickled function in its own process. This scheduler
    recognises the one call distributed makes itself, the system monitor's
    sample count that ``performance_report`` reads on entering
    (``monitor_count``); every other function is one for the function runner
    (``run``)."""
    import pickle

    try:
        function = pickle.loads(req["function"])
    except Exception as e:  # noqa: BLE001 - a function only the client can import
        raise NotImplementedError(
            "Client.run_on_scheduler: the Rust dask-scheduler's Python cannot load this "
            f"function: {type(e).__name__}: {e}"
        ) from None
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", repr(function))
    if module == "distributed.client" and qualname == "performance_report.__aenter__.<locals>.<lambda>":
        return {"status": "ok", "kind": "monitor_count"}
    return {"status": "ok", "kind": "run"}


# --------------------------------------------------------------------------
# the function runner (run_on_scheduler)
# --------------------------------------------------------------------------


def _serialized(obj):
    """``Serialize(obj)`` as the scheduler puts it on the wire:
    {"header": sub-header bytes, "frames": [payload, ...]}."""
    from distributed.protocol.serialize import (
        Serialize,
        msgpack_encode_default,
        serialize_and_split,
    )
    from distributed.utils import ensure_memoryview

    header, frames = serialize_and_split(Serialize(obj), on_error="raise")
    header["compression"] = tuple(None for _ in frames)
    header["num-sub-frames"] = len(frames)
    frames = [bytes(ensure_memoryview(f)) for f in frames]
    raw = msgpack.dumps(header, default=msgpack_encode_default, use_bin_type=True)
    return {"header": raw, "frames": frames}


_STAND_IN_ERROR = (
    "Scheduler.{name} is not available: the Rust dask-scheduler has no Python scheduler "
    "object. run_on_scheduler functions, --preload modules and scheduler plugins run in "
    "a Python process beside it and get, as the scheduler, a stand-in with only "
    "'address', 'id', 'local_directory', 'plugins', 'add_plugin', 'remove_plugin', "
    "'identity', 'log_event', 'story', 'retire_workers', the worker and nanny plugin "
    "(un)registrations, the methods behind its RPCs (get_who_has, workers_to_close, "
    "broadcast, ...), new entries in 'handlers' and 'extensions', 'loop', 'services', "
    "'time_started', 'transition_log', 'unrunnable', read-only copies of "
    "'tasks', 'workers', 'clients', 'task_groups', 'task_prefixes', 'running' and "
    "'total_nthreads', and the attributes set on it (state such as raft-dask's)"
)


def _scheduler_attribute_names():
    """Names a ``distributed.Scheduler`` has: its class's attributes and
    those its ``__init__``s (and its bases') assign."""
    import inspect
    import re

    from distributed import Scheduler

    names = set(dir(Scheduler))
    for cls in Scheduler.__mro__:
        init = cls.__dict__.get("__init__")
        try:
            src = inspect.getsource(init) if init is not None else ""
        except (OSError, TypeError):
            continue
        names.update(re.findall(r"self\.(\w+)\s*(?::[^=\n]*)?=(?!=)", src))
    return frozenset(n for n in names if not (n.startswith("__") and n.endswith("__")))


_WORKDIR = None


def _scheduler_local_directory():
    """The scheduler's scratch directory, made on first use as
    ``distributed.core.Server`` makes it (``<temporary-directory>/
    dask-scratch-space/scheduler-*``, removed when the runner exits) and put
    first on ``sys.path``, as there: a module a plugin unpacks into it
    (``UploadDirectory(..., mode="all")``) is importable by the functions
    run here."""
    global _WORKDIR
    if _WORKDIR is None:
        import tempfile

        import dask.config
        from distributed.diskutils import WorkSpace

        base = dask.config.get("temporary-directory") or tempfile.gettempdir()
        if "dask-scratch-space" not in str(base):
            base = os.path.join(base, "dask-scratch-space")
        _WORKDIR = WorkSpace(base).new_work_dir(prefix="scheduler-")
        if _WORKDIR.dir_path not in sys.path:
            sys.path.insert(0, _WORKDIR.dir_path)
    return _WORKDIR.dir_path


# Scheduler methods the stand-in asks of the scheduler over its RPC (that
# name), taking the real method's arguments, and, where Python's returns
# lists, making the reply's tuples lists (``_relayed_method``)
_RELAYED_METHODS = {
    "get_who_has": ("who_has", "values"),
    "get_has_what": ("has_what", "values"),
    "get_ncores": ("ncores", None),
    "get_ncores_running": ("ncores_running", None),
    "get_processing": ("processing", "values"),
    "get_nbytes": ("nbytes", None),
    "get_task_status": ("get_task_status", None),
    "get_task_prefix_states": ("get_task_prefix_states", None),
    "get_metadata": ("get_metadata", None),
    "set_metadata": ("set_metadata", None),
    "get_events": ("events", None),
    "get_task_stream": ("get_task_stream", "list"),
    "adaptive_target": ("adaptive_target", None),
    "workers_to_close": ("workers_to_close", "list"),
    "check_idle": ("check_idle", None),
    "versions": ("versions", None),
    "broadcast": ("broadcast", None),
    "rebalance": ("rebalance", None),
    "replicate": ("replicate", None),
    "restart": ("restart", None),
    "get_call_stack": ("call_stack", None),
    "get_worker_logs": ("worker_logs", None),
}


def _relayed_method(stand_in, name):
    """The stand-in's ``name``: a function with the real ``Scheduler``
    method's signature (a coroutine function where that is one), which asks
    the scheduler's RPC with the arguments given (defaults are the
    scheduler's, as when a client calls it)."""
    import functools
    import inspect
    import pickle

    from distributed import Scheduler

    op, shape = _RELAYED_METHODS[name]
    real = getattr(Scheduler, name)
    signature = inspect.signature(real)
    signature = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name not in ("self", "comm")]
    )

    def arguments(args, kwargs):
        given = dict(signature.bind(*args, **kwargs).arguments)
        # a callable (``workers_to_close(key=...)``) travels pickled, as a
        # client sends it
        return {k: pickle.dumps(v) if callable(v) else v for k, v in given.items()}

    def shaped(reply):
        if shape == "values" and isinstance(reply, dict):
            return {k: list(v) for k, v in reply.items()}
        if shape == "list" and isinstance(reply, tuple):
            return list(reply)
        return reply

    if inspect.iscoroutinefunction(real):

        async def method(*args, **kwargs):
            return shaped(await stand_in._relay(op, **arguments(args, kwargs)))

    else:

        def method(*args, **kwargs):
            return shaped(stand_in._relay_now(op, **arguments(args, kwargs)))

    functools.update_wrapper(method, real)
    method.__signature__ = signature
    return method


# Scheduler attributes the stand-in reads from a copy of the scheduler's state
_COPIED = frozenset(
    {"tasks", "workers", "clients", "task_groups", "task_prefixes", "running",
     "total_nthreads", "n_tasks", "bandwidth", "bandwidth_workers", "bandwidth_types",
     "unrunnable"}
)

# Attributes of the Python scheduler's process: the runner's event loop and
# the services by name stand in for the first two; the rest are asked of the
# scheduler (``_SchedulerStandIn.__getattr__``)
_PROCESS_ATTRIBUTES = frozenset({"loop", "io_loop", "services", "time_started", "transition_log"})

# Scheduler methods the stand-in asks of the scheduler over its RPC
_RELAYED = frozenset(
    {
        "register_worker_plugin",
        "register_nanny_plugin",
        "unregister_worker_plugin",
        "unregister_nanny_plugin",
        "identity",
        "log_event",
        "story",
        "retire_workers",
    }
)


class _StateCopy:
    """One task, worker, client or task group of a copy of the scheduler's
    state (``_SchedulerSnapshot``), standing for Python's ``TaskState``,
    ``WorkerState``, ``ClientState`` or ``TaskGroup``. A field is read from
    the copy's raw data on first use (``_fields``: name -> how to read it),
    so a large graph's copy costs little until its tasks are looked at.
    Read-only: setting an attribute raises, as it would not change the
    scheduler. An attribute the Python class has and the copy lacks raises
    ``NotImplementedError`` naming it."""

    _python_class = ""
    _fields = {}

    def __init__(self, snapshot, data, **fields):
        d = self.__dict__
        d["_snapshot"] = snapshot
        d["_data"] = data
        d.update(fields)

    def _raw(self, name):
        """The raw value of field ``name`` (``None`` where at its default)."""
        return self.__dict__["_data"].get(name)

    def __getattr__(self, name):
        # only called for names not read yet
        read = type(self)._fields.get(name)
        if read is not None:
            d = self.__dict__
            value = d[name] = read(d["_snapshot"], self._raw(name), self)
            return value
        from distributed import scheduler

        cls = getattr(scheduler, self._python_class)
        if name in _python_attribute_names(cls):
            raise NotImplementedError(
                f"{self._python_class}.{name} is not available: run_on_scheduler "
                "functions, --preload modules and scheduler plugins get a copy of the Rust "
                "dask-scheduler's tasks, workers and clients without it"
            )
        raise AttributeError(f"{self._python_class!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        raise NotImplementedError(
            f"cannot set {self._python_class}.{name}: run_on_scheduler functions, --preload "
            "modules and scheduler plugins get a read-only copy of the Rust dask-scheduler's "
            "state (changing it would not change the scheduler)"
        )


def _python_attribute_names(cls):
    """The attributes a ``distributed.scheduler`` state class has: its slots
    (and its bases'), public or behind a property, and its properties."""
    names = set(dir(cls))
    for c in cls.__mro__:
        names.update(s.lstrip("_") for s in c.__dict__.get("__slots__", ()))
    return names


def _plain(s, raw, copy):
    return raw


def _or(default):
    return lambda s, raw, copy: default if raw is None else raw


def _tasks(s, raw, copy):
    return {s._task(i) for i in raw or ()}


def _tasks_or_none(s, raw, copy):
    return _tasks(s, raw, copy) or None


def _strings_or_none(s, raw, copy):
    return set(raw) if raw else None


class _TaskCopy(_StateCopy):
    """``TaskState``, as ``_StateCopy`` describes."""

    _python_class = "TaskState"
    _fields = {
        "priority": lambda s, raw, copy: tuple(raw) if raw is not None else None,
        "run_id": _plain,
        "dependencies": _tasks,
        "dependents": _tasks,
        "waiting_on": _tasks_or_none,
        "waiters": _tasks_or_none,
        "who_has": lambda s, raw, copy: {s._worker_by_id[i] for i in raw or ()} or None,
        "who_wants": lambda s, raw, copy: {s._client_by_id[i] for i in raw or ()} or None,
        "processing_on": lambda s, raw, copy: s._worker_by_id.get(raw),
        "nbytes": _or(-1),
        "group": lambda s, raw, copy: s._groups()[raw],
        "group_key": lambda s, raw, copy: copy.group.name,
        "prefix": lambda s, raw, copy: copy.group.prefix,
        "has_lost_dependencies": lambda s, raw, copy: bool(raw),
        "retries": _or(0),
        "suspicious": _or(0),
        "actor": lambda s, raw, copy: bool(raw),
        "annotations": _or({}),
        "exception_blame": lambda s, raw, copy: None if raw is None else s._task(raw),
        "exception_text": _plain,
        "traceback_text": _plain,
        "host_restrictions": _strings_or_none,
        "worker_restrictions": _strings_or_none,
        "resource_restrictions": _plain,
        "loose_restrictions": lambda s, raw, copy: bool(raw),
        # the result's type name, once the task has been in memory
        "type": _plain,
        # the workers it erred on; None unless erred, and (as in Python)
        # when it inherited its failure while waiting
        "erred_on": lambda s, raw, copy: None if raw is None else set(raw),
        "run_spec": lambda s, raw, copy: _run_spec_of(copy.key),
        # the failure as its worker sent it (serialized, as Python keeps
        # it), asked of the scheduler when first read
        "exception": lambda s, raw, copy: _error_of(copy.key, "exception"),
        "traceback": lambda s, raw, copy: _error_of(copy.key, "traceback"),
        # what its workers reported as its metadata, None until any
        "metadata": _plain,
    }

    def _raw(self, name):
        d = self.__dict__
        return d["_snapshot"]._task_value(d["_data"], name)

    @property
    def state(self):
        # the field read most, straight from its column
        return self._snapshot._dense["state"][self._data]

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _TaskCopy) and self.key == other.key

    def __repr__(self):
        return f"<TaskState {self.key!r} {self.state}>"

    def get_nbytes(self):
        """``TaskState.get_nbytes``: the result's size, or the default
        guess (``distributed.scheduler.default-data-size``) until known."""
        if self.nbytes >= 0:
            return self.nbytes
        import dask.config
        from dask.utils import parse_bytes

        return parse_bytes(dask.config.get("distributed.scheduler.default-data-size"))

    def get_nbytes_deps(self):
        """``TaskState.get_nbytes_deps``: the sizes of its dependencies."""
        return sum(ts.get_nbytes() for ts in self.dependencies)


def _of_complete(name, read):
    """``read`` for a worker's or client's field that names tasks: a copy
    taken without tasks (``_SchedulerSnapshot.complete`` false) asks for the
    complete copy and reads the field from the same worker or client
    there."""

    def field(s, raw, copy):
        if s.complete:
            return read(s, raw, copy)
        full = s._completed()
        if isinstance(copy, _WorkerCopy):
            same = full.workers.get(copy.address)
        else:
            same = full.clients.get(copy.client_key)
        return getattr(same, name) if same is not None else read(s, None, copy)

    return field


def _status(s, raw, copy):
    """A worker's ``Status``, as Python's ``WorkerState.status`` is."""
    from distributed.core import Status

    name = raw or "running"
    return Status[name] if name in Status.__members__ else name


def _memory(s, raw, copy):
    from distributed.scheduler import MemoryState

    raw = raw or {}
    return MemoryState(
        process=raw.get("process", 0),
        unmanaged_old=raw.get("unmanaged_old", 0),
        managed=raw.get("managed", 0),
        spilled=raw.get("spilled", 0),
    )


def _defaultdict_int(raw):
    from collections import defaultdict

    return defaultdict(int, raw or {})


class _WorkerCopy(_StateCopy):
    """``WorkerState``, as ``_StateCopy`` describes."""

    _python_class = "WorkerState"
    _fields = {
        "name": lambda s, raw, copy: copy.address if raw is None else raw,
        "host": _or(""),
        "status": _status,
        "nthreads": _or(0),
        "memory_limit": _or(0),
        "local_directory": _plain,
        "pid": _or(0),
        "nanny": _plain,
        "services": _or({}),
        "extra": _or({}),
        "metrics": _or({}),
        "last_seen": _or(0.0),
        # how far the scheduler's clock was ahead of the worker's
        "time_delay": _or(0.0),
        # its processing tasks by prefix name
        "task_prefix_count": lambda s, raw, copy: _defaultdict_int(raw),
        "resources": _or({}),
        "used_resources": _or({}),
        "nbytes": _or(0),
        "occupancy": _or(0.0),
        "memory": _memory,
        "has_what": _of_complete("has_what", _tasks),
        "processing": _of_complete("processing", _tasks),
        "long_running": _of_complete("long_running", _tasks),
        "actors": _of_complete("actors", _tasks),
        "needs_what": _of_complete(
            "needs_what", lambda s, raw, copy: {s._task(t): n for t, n in raw or ()}
        ),
        # what its last heartbeat said it was executing, with the seconds
        # each task had run
        "executing": _of_complete(
            "executing", lambda s, raw, copy: {s._task(t): d for t, d in raw or ()}
        ),
        "versions": lambda s, raw, copy: s._versions_at(raw),
        # as in Python, the configured bandwidth, never updated
        "bandwidth": lambda s, raw, copy: _configured_bandwidth(),
    }

    def __hash__(self):
        return hash(self.server_id)

    def identity(self):
        """``WorkerState.identity()``: the worker as the scheduler's
        ``identity()`` lists it."""
        return {
            "type": "Worker",
            "id": self.name,
            "host": self.host,
            "resources": self.resources,
            "local_directory": self.local_directory,
            "name": self.name,
            "nthreads": self.nthreads,
            "memory_limit": self.memory_limit,
            "last_seen": self.last_seen,
            "services": self.services,
            "metrics": self.metrics,
            "status": self.status.name,
            "nanny": self.nanny,
            **self.extra,
        }

    def __eq__(self, other):
        return isinstance(other, _WorkerCopy) and self.server_id == other.server_id

    def __repr__(self):
        name = f", name: {self.name}" if self.name != self.address else ""
        return (
            f"<WorkerState {self.address!r}{name}, status: {self.status.name}, "
            f"memory: {len(self.has_what)}, processing: {len(self.processing)}>"
        )


class _ClientCopy(_StateCopy):
    """``ClientState``, as ``_StateCopy`` describes."""

    _python_class = "ClientState"
    _fields = {"last_seen": _or(0.0), "wants_what": _of_complete("wants_what", _tasks),
               "versions": lambda s, raw, copy: s._versions_at(raw)}

    def __hash__(self):
        return hash(self.client_key)

    def __eq__(self, other):
        return isinstance(other, _ClientCopy) and self.client_key == other.client_key

    def __repr__(self):
        return f"<Client {self.client_key!r}>"

    def __str__(self):
        return self.client_key


class _Durations:
    """``TaskCollection.duration`` and ``all_durations``, from the copy's
    microsecond totals, as Python's."""

    @property
    def duration(self):
        """Seconds its tasks' workers reported, every action summed."""
        return self._duration_us / 1e6

    @property
    def all_durations(self):
        """Seconds its tasks' workers reported, by action."""
        from collections import defaultdict

        return defaultdict(float, {a: us / 1e6 for a, us in self._all_durations_us.items()})


class _GroupCopy(_Durations, _StateCopy):
    """``TaskGroup``, as ``_StateCopy`` describes: its name, prefix, ``len``
    (tasks ever added), its tasks' counts by state (the forgotten ones
    included), ``done``, the groups its live tasks depend on, its result
    ``types``, ``nbytes_total``, ``duration``, ``all_durations``, ``start``
    and ``stop``."""

    _python_class = "TaskGroup"

    @property
    def types(self):
        """``TaskGroup.types``: the names of its tasks' result types."""
        return self._types.keys()

    @property
    def done(self):
        """``TaskGroup.done``: no task of the group is still to run."""
        return all(
            count == 0 or state in ("memory", "erred", "released", "forgotten")
            for state, count in self.states.items()
        )

    def __len__(self):
        return self._size

    def __repr__(self):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.states.items()) if v)
        return f"<{self.name}: {counts}>"


class _PrefixCopy(_Durations, _StateCopy):
    """``TaskPrefix``, as ``_StateCopy`` describes: its name, its live
    groups, ``len`` and its tasks' counts by state (as in Python, the sums
    of its live groups': a group whose tasks were all forgotten no longer
    counts), ``state_counts`` (how many times its tasks entered each
    state), ``duration_average`` and ``max_exec_time`` (-1 until measured,
    as in Python), ``suspicious``, its result ``types``, ``nbytes_total``
    and ``duration`` (its live groups'), and ``all_durations`` (every
    group's ever, as in Python)."""

    _python_class = "TaskPrefix"

    @property
    def types(self):
        """``TaskPrefix.types``: the names of its live groups' result types."""
        return self._types.keys()

    def __len__(self):
        return sum(len(group) for group in self.groups)

    def __repr__(self):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.states.items()) if v)
        return f"<{self.name}: {counts}>"


class _TaskMap(Mapping):
    """``Scheduler.tasks`` in a copy of the state: key -> ``_TaskCopy``, a
    read-only mapping whose entries are made on first use, so that
    ``len(tasks)`` or one lookup costs little with a large graph."""

    def __init__(self, snapshot):
        self._snapshot = snapshot
        self._index = None

    def _keys(self):
        """Key -> position of its row (made on first use)."""
        if self._index is None:
            self._index = {
                (k if type(k) is str else _as_key(k)): n
                for n, k in enumerate(self._snapshot._dense["key"])
            }
        return self._index

    def __len__(self):
        return self._snapshot._count

    def __getitem__(self, key):
        return self._snapshot._task_at(self._keys()[key])

    def __iter__(self):
        return iter(self._keys())

    def __contains__(self, key):
        return key in self._keys()

    def _in_order(self):
        """The tasks in the scheduler's order, without looking keys up."""
        task_at = self._snapshot._task_at
        return (task_at(n) for n in range(len(self)))

    def values(self):
        return _TaskValues(self)

    def items(self):
        return _TaskItems(self)

    def __repr__(self):
        return f"<copy of Scheduler.tasks: {len(self)} tasks>"


class _TaskValues(ValuesView):
    """``tasks.values()`` of a ``_TaskMap``."""

    def __iter__(self):
        return self._mapping._in_order()


class _TaskItems(ItemsView):
    """``tasks.items()`` of a ``_TaskMap``."""

    def __iter__(self):
        return ((ts.key, ts) for ts in self._mapping._in_order())


class _SchedulerSnapshot:
    """The scheduler's tasks, workers, clients and task groups at one
    moment, as Python objects that point at each other as Python's do
    (``tasks[k].who_has`` holds entries of ``workers``), from the
    scheduler's ``stand_in_snapshot`` RPC: tasks by field (a column per
    field every task has, a map of position to value for the others), the
    workers and clients as maps, all naming each other by id.
    ``complete`` is false for a copy taken without tasks (all that reading
    ``workers`` or ``clients`` needs); ``completed`` then gives the
    complete copy that replaces it, for the tasks a worker or client
    names."""

    def __init__(self, raw, complete, completed=None):
        from collections import defaultdict

        from sortedcontainers import SortedDict

        self.complete = complete
        self._completed = completed
        # times a task was sent to a worker to run (steals not counted)
        self.n_tasks = raw.get("n_tasks") or 0
        # bytes/s assumed for transfers, following the workers' measurements
        self.bandwidth = raw.get("bandwidth")
        # the same per (receiving, sending) worker pair and per type of data
        self.bandwidth_workers = defaultdict(
            float, {(to, frm): bw for to, frm, bw in raw.get("bandwidth_workers") or ()}
        )
        self.bandwidth_types = defaultdict(float, raw.get("bandwidth_types") or {})
        self._raw_unrunnable = raw.get("unrunnable") or ()
        self._count = raw.get("task_count") or 0
        self._dense = raw.get("task_columns") or {}
        self._sparse = raw.get("task_sparse") or {}
        self._raw_groups = raw.get("groups") or []
        # the distinct get_versions() maps, named by position
        self._versions = raw.get("versions") or []
        self._raw_prefixes = raw.get("prefixes") or []
        self._group_copies = None
        self._copies = [None] * self._count
        self._position_of_id = None
        self.tasks = _TaskMap(self)
        self._worker_by_id = {
            w["i"]: _WorkerCopy(
                self, w, address=w.get("address", ""),
                server_id=w.get("server_id", w.get("address", "")),
            )
            for w in raw.get("workers") or ()
        }
        self._client_by_id = {
            c["i"]: _ClientCopy(self, c, client_key=c.get("client_key", ""))
            for c in raw.get("clients") or ()
        }
        self.workers = SortedDict((ws.address, ws) for ws in self._worker_by_id.values())
        self.clients = {cs.client_key: cs for cs in self._client_by_id.values()}

    @property
    def running(self):
        from distributed.core import Status

        return {ws for ws in self.workers.values() if ws.status == Status.running}

    @property
    def total_nthreads(self):
        return sum(ws.nthreads for ws in self.workers.values())

    @property
    def unrunnable(self):
        """The tasks in ``no-worker``, each with the ``time.monotonic()`` at
        which it got there, as Python's (the scheduler's clock is the wall
        clock, shifted here to this process's monotonic one)."""
        import time

        if not self.complete:
            return self._completed().unrunnable
        shift = time.monotonic() - time.time()
        return {self._task(i): since + shift for i, since in self._raw_unrunnable}

    @property
    def task_groups(self):
        return {g.name: g for g in self._groups()}

    @property
    def task_prefixes(self):
        self._groups()
        return {p.name: p for p in self._prefix_copies}

    def _positions(self):
        """Task id -> the position of its row (made on first use)."""
        if self._position_of_id is None:
            self._position_of_id = {i: n for n, i in enumerate(self._dense["i"])}
        return self._position_of_id

    def _versions_at(self, i):
        """A worker's or client's ``versions``: the map at position ``i``
        of the copy's distinct ones (``{}`` where it sent none)."""
        return {} if i is None else self._versions[i]

    def _task_value(self, n, name):
        """The raw value of field ``name`` of the task at position ``n``."""
        column = self._dense.get(name)
        if column is not None:
            return column[n]
        values = self._sparse.get(name)
        return None if values is None else values.get(n)

    def _task_at(self, n):
        """The copy of the task at position ``n`` (made on first use)."""
        ts = self._copies[n]
        if ts is None:
            key = self._dense["key"][n]
            ts = self._copies[n] = _TaskCopy(self, n, key=key if type(key) is str else _as_key(key))
        return ts

    def _task(self, i):
        """The copy of the task with id ``i``."""
        return self._task_at(self._positions()[i])

    def _groups(self):
        """The groups, by their index in the raw data, with their counts
        and dependencies (made on first use: it reads every task)."""
        if self._group_copies is not None:
            return self._group_copies
        from collections import defaultdict

        from distributed.scheduler import ALL_TASK_STATES

        prefixes = []
        for name, duration, entered, suspicious, longest, all_us in self._raw_prefixes:
            prefixes.append(_PrefixCopy(
                self, {}, name=name, groups=[], states=dict.fromkeys(ALL_TASK_STATES, 0),
                state_counts=defaultdict(int, entered), suspicious=suspicious,
                _types=defaultdict(int), nbytes_total=0, _duration_us=0,
                _all_durations_us=defaultdict(int, all_us),
                duration_average=-1 if duration is None else duration,
                max_exec_time=-1 if longest is None else longest,
            ))
        groups = []
        for (name, prefix_id, size, types, nbytes_total, duration_us, all_us, start,
             stop) in self._raw_groups:
            prefix = prefixes[prefix_id]
            group = _GroupCopy(self, {}, name=name, prefix=prefix, _size=size,
                               states=dict.fromkeys(ALL_TASK_STATES, 0), dependencies=set(),
                               _types=defaultdict(int, types), nbytes_total=nbytes_total,
                               _duration_us=duration_us,
                               _all_durations_us=defaultdict(int, all_us),
                               start=start, stop=stop)
            prefix.groups.append(group)
            # a prefix sums its live groups' types, bytes and durations, as
            # Python's (whose removed groups take theirs with them)
            for type_name, count in types.items():
                prefix._types[type_name] += count
            prefix.__dict__["nbytes_total"] += nbytes_total
            prefix.__dict__["_duration_us"] += duration_us
            groups.append(group)
        group_of = [groups[g] for g in self._dense["group"]]
        for group, state in zip(group_of, self._dense["state"]):
            group.states[state] = group.states.get(state, 0) + 1
        for group in groups:
            group.states["forgotten"] = len(group) - sum(group.states.values())
            # a prefix counts what its live groups count, as in Python,
            # where a removed group takes its counts with it
            for state, count in group.states.items():
                group.prefix.states[state] = group.prefix.states.get(state, 0) + count
        self._prefix_copies = prefixes
        position = self._positions()
        for n, deps in self._sparse.get("dependencies", {}).items():
            group = group_of[n]
            for dep in deps:
                other = group_of[position[dep]]
                if other is not group:
                    group.dependencies.add(other)
        self._group_copies = groups
        return groups


# the copy of the scheduler's state taken in this turn of the runner's
# event loop, if any
_SNAPSHOT = None


def _forget_snapshot():
    global _SNAPSHOT
    _SNAPSHOT = None


# The scheduler's own RPC handlers: Python's ``Scheduler.handlers`` in
# distributed 2026.8.0, its default extensions' included (a test checks the
# list against a real ``Scheduler``), and this scheduler's own. Python code
# here cannot replace them: they run in the Rust dask-scheduler.
_BUILTIN_HANDLERS = frozenset(
    """
    adaptive_target add_keys amm_handler benchmark_hardware broadcast call_stack
    check_idle connection_stream dump_cluster_state_to_url dump_state echo
    event_clear event_is_set event_set event_wait events feed gather
    get_cluster_state get_error_cause get_logs get_metadata get_runspec get_story
    get_task_prefix_states get_task_status get_task_stream get_task_stream_index
    has_what heartbeat_worker identity log_event logs memory_sampler_start
    memory_sampler_stop multi_lock_acquire multi_lock_release nbytes ncores
    ncores_running performance_report processing profile proxy publish_delete
    publish_get publish_list publish_put queue_create queue_get queue_put
    queue_qsize rebalance register-client register-worker register_nanny
    register_nanny_plugin register_scheduler_plugin register_worker_plugin
    replicate restart restart_workers retire_workers retry run_function scatter
    semaphore_acquire semaphore_close semaphore_refresh_leases semaphore_register
    semaphore_release semaphore_value set_metadata set_resources set_restrictions
    shuffle_barrier shuffle_get shuffle_get_or_create shuffle_restrict_task
    start_task_metadata stop_task_metadata subscribe_worker_status terminate
    unregister unregister_nanny_plugin unregister_scheduler_plugin
    unregister_worker_plugin update_data variable_get variable_set versions
    who_has worker_logs workers_to_close
    close stand_in_snapshot stand_in_error stand_in_transition_log
    """.split()
)

# Python's default scheduler extensions (``Scheduler.extensions``), whose
# work this scheduler does itself
_BUILTIN_EXTENSIONS = frozenset(
    """
    amm events memory_sampler multi_locks publish queues replay-tasks semaphores
    shuffle spans stealing variables
    """.split()
)

# RPC handlers that Python code here registered (``scheduler.handlers[name] =
# handler`` in a run_on_scheduler function, a preload or a plugin's
# ``start``, as optuna's ``DaskStorage`` does): the scheduler forwards calls
# of these names here (``rpc_handler``)
_RPC_HANDLERS = {}
# set when ``_RPC_HANDLERS`` changed since the last reply, which then carries
# the names (``rpc_handlers``); set at first, so that the first reply of a
# fresh runner tells the scheduler that an earlier one's handlers are gone
_RPC_HANDLERS_CHANGED = True
_RPC_HANDLERS_VERSION = 0

# extensions Python code here added (``scheduler.extensions[name] = ext``)
_EXTENSIONS = {}


def _rpc_handlers_changed():
    global _RPC_HANDLERS_CHANGED, _RPC_HANDLERS_VERSION
    _RPC_HANDLERS_CHANGED = True
    _RPC_HANDLERS_VERSION += 1


class _OwnAndAdded(MutableMapping):
    """A table of the scheduler's (``handlers``, ``extensions``) as the
    stand-in has it: the Rust scheduler's own entries (``builtin``, listed,
    but not to be replaced or removed) and those Python code here added
    (``added``). ``what`` names the table in errors."""

    builtin = frozenset()
    added = {}
    what = ""

    def own(self, name):
        """The value of one of the scheduler's own entries."""
        raise NotImplementedError

    def changed(self):
        """Called after an added entry was set or removed."""

    def __getitem__(self, name):
        if name in self.added:
            return self.added[name]
        if name in self.builtin:
            return self.own(name)
        raise KeyError(name)

    def _refuse(self, doing, name):
        raise NotImplementedError(
            f"cannot {doing} the scheduler's {self.what} {name!r}: the Rust dask-scheduler "
            f"has it itself. New {self.what}s can be added here"
        )

    def __setitem__(self, name, value):
        if name in self.builtin:
            self._refuse("replace", name)
        if not isinstance(name, str):
            raise TypeError(f"a {self.what}'s name must be a str, not {type(name).__name__}")
        self.added[name] = value
        self.changed()

    def __delitem__(self, name):
        if name in self.builtin:
            self._refuse("remove", name)
        del self.added[name]
        self.changed()

    def __contains__(self, name):
        return name in self.builtin or name in self.added

    def __iter__(self):
        yield from sorted(self.builtin)
        yield from list(self.added)

    def __len__(self):
        return len(self.builtin) + len(self.added)

    def __repr__(self):
        return f"<Scheduler {self.what}s: {len(self.builtin)} of its own, added here: {list(self.added)}>"


class _HandlerTable(_OwnAndAdded):
    """``Scheduler.handlers`` in the stand-in. New names can be added and
    removed as on Python's dict, and clients call them as on Python's
    scheduler (``client.scheduler.<name>(...)``): the scheduler forwards the
    call's message here and sends the handler's return value back
    (``_rpc_handler``). The scheduler's own handlers are listed, but
    reading, replacing or removing one raises ``NotImplementedError``: they
    run in the Rust scheduler."""

    builtin = _BUILTIN_HANDLERS
    added = _RPC_HANDLERS
    what = "handler"

    def own(self, name):
        raise NotImplementedError(
            f"Scheduler.handlers[{name!r}]: the scheduler's own handlers run in the "
            "Rust dask-scheduler, not in Python; call it over RPC, as a client does"
        )

    def changed(self):
        _rpc_handlers_changed()


class _RustExtension:
    """What the stand-in's ``extensions`` holds for one of Python's default
    extensions: its work is done by the Rust scheduler, so any attribute
    raises ``NotImplementedError`` naming it."""

    def __init__(self, name):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr):
        raise NotImplementedError(
            f"Scheduler.extensions[{self._name!r}].{attr}: the Rust dask-scheduler does the "
            f"work of Python's {self._name!r} extension itself; it has no Python object"
        )

    def __setattr__(self, attr, value):
        self.__getattr__(attr)

    def __repr__(self):
        return f"<{self._name!r} extension of the Rust dask-scheduler>"


class _ExtensionTable(_OwnAndAdded):
    """``Scheduler.extensions`` in the stand-in: Python's default extensions
    by name (``_RustExtension`` placeholders), and whatever Python code here
    adds, as libraries keep their state there (optuna's ``DaskStorage``)."""

    builtin = _BUILTIN_EXTENSIONS
    added = _EXTENSIONS
    what = "extension"

    def own(self, name):
        return _RustExtension(name)


class _ServiceStandIn:
    """One of the scheduler's services (its dashboard) in the stand-in's
    ``services``: what Python code reads of it is its ``port``."""

    def __init__(self, name, port):
        self.name = name
        self.port = port

    def __repr__(self):
        return f"<{self.name} service of the Rust dask-scheduler on port {self.port}>"


class _ForwardedComm:
    """The ``comm`` a forwarded handler that asks for one gets: the client's
    connection stays with the scheduler, which sends the handler's return
    value as the reply, so only its addresses are here."""

    def __init__(self, peer_address, local_address):
        self.peer_address = peer_address
        self.local_address = local_address
        self.name = "forwarded by the Rust dask-scheduler"

    def closed(self):
        return False

    def _refuse(self, what):
        raise NotImplementedError(
            f"comm.{what} in a scheduler handler: the Rust dask-scheduler keeps the "
            "client's connection and forwards only the call's message to the handler; "
            "its return value is the reply"
        )

    async def read(self, *args, **kwargs):
        self._refuse("read")

    async def write(self, *args, **kwargs):
        self._refuse("write")

    def __repr__(self):
        return f"<forwarded comm from {self.peer_address!r}>"


async def _rpc_handler(req, send):
    """One call of a handler Python code here registered, as Python's
    ``Server._handle_comm`` makes it: the client's message (``frames``, as
    on the wire) loaded as the scheduler loads it (``deserialize=False``),
    the handler called with ``comm`` if it asks for one, a coroutine
    awaited, and the result, or Python's ``uncaught-error`` message for an
    exception, sent back as frames."""
    import inspect

    from distributed.core import Status, _expects_comm, error_message
    from distributed.protocol import dumps, loads
    from distributed.utils import has_keyword

    rid = req.get("id")
    name = req.get("name")
    serializers = None
    try:
        msg = loads(list(req.get("frames") or ()), deserialize=False)
        if not isinstance(msg, dict):
            raise TypeError(f"Bad message type.  Expected dict, got\n  {msg}")
        msg.pop("op", None)
        serializers = msg.pop("serializers", None)
        msg.pop("close", None)
        msg.pop("reply", None)
        handler = _RPC_HANDLERS.get(name)
        if handler is None:
            raise NotImplementedError(
                f"The Rust dask-scheduler does not implement the operation {name!r}: no "
                "handler of that name is registered in its Python process (one registered "
                "there is lost if that process ends)"
            )
        if serializers is not None and has_keyword(handler, "serializers"):
            msg["serializers"] = serializers
        log.debug("Calling into handler %s", getattr(handler, "__name__", handler))
        if _expects_comm(handler):
            result = handler(_ForwardedComm(req.get("peer"), req.get("address")), **msg)
        else:
            result = handler(**msg)
        if inspect.iscoroutine(result):
            result = await result
        elif inspect.isawaitable(result):
            raise RuntimeError(
                "Comm handler returned unknown awaitable. Expected coroutine, instead got "
                f"{type(result)}"
            )
    except Exception as e:  # noqa: BLE001 - the client raises it, as from Python's
        log.exception("Exception while handling op %s", name)
        result = error_message(e, status="uncaught-error")
    if result is Status.dont_reply:
        send({"id": rid, "status": "OK", "reply": False})
        return
    # as on the client's connection, whose handshake with this scheduler
    # agreed on no compression
    context = {
        "sender": {"address": req.get("address")},
        "recipient": {"address": req.get("peer")},
        "compression": None,
    }
    try:
        frames = dumps(result, serializers=serializers, on_error="message", context=context)
    except Exception as e:  # noqa: BLE001 - a result that cannot travel
        log.exception("Exception while serializing the reply of op %s", name)
        frames = dumps(error_message(e, status="uncaught-error"), context=context)
    send({"id": rid, "status": "OK", "frames": [bytes(memoryview(f)) for f in frames]})


class _SchedulerStandIn:
    """What a ``run_on_scheduler`` function that takes ``dask_scheduler``
    (or ``dask_worker``, which Python fills with the scheduler too) gets
    here: one object for the runner's lifetime, like the scheduler. It keeps
    the attributes functions set on it, which is all some libraries use the
    scheduler for (raft-dask keeps its NCCL root id in
    ``dask_scheduler._raft_comm_state``), and has ``address``, ``id``,
    ``local_directory``,
    ``plugins`` (the scheduler plugins registered, by name), ``add_plugin``,
    ``remove_plugin``, and, asked of the scheduler over its RPC, the worker
    and nanny plugin (un)registrations (``UploadDirectory.start`` uses them),
    ``identity``, ``log_event``, ``story`` and ``retire_workers``,
    ``handlers`` and ``extensions`` (to which new entries can be added:
    clients call such a handler as on Python's scheduler, ``_HandlerTable``),
    the methods that answer the scheduler's RPCs (``_RELAYED_METHODS``:
    ``get_who_has``, ``workers_to_close``, ``broadcast``, ...), asked of it,
    ``loop`` (the runner's event loop), ``services`` (the scheduler's, by
    name, with their ports, and those added here), ``time_started`` and
    ``transition_log`` (asked of the scheduler),
    and read-only copies of ``tasks``, ``workers``, ``clients``,
    ``task_groups``, ``task_prefixes``, ``running``, ``total_nthreads``,
    ``n_tasks`` and ``bandwidth``
    (``_snapshot``).
    Reading or setting any other attribute of a real ``Scheduler`` raises
    ``NotImplementedError`` naming it: it would be wrong or without effect
    here. Any other name behaves as on the real object: missing until set."""

    def __init__(self):
        object.__setattr__(self, "_stand_in_reserved", None)

    def _reserved(self):
        names = object.__getattribute__(self, "_stand_in_reserved")
        if names is None:
            names = _scheduler_attribute_names() - {
                "address", "id", "plugins", "add_plugin", "remove_plugin",
                "local_directory", "handlers", "extensions", *_RELAYED, *_COPIED,
                *_RELAYED_METHODS, *_PROCESS_ATTRIBUTES
            }
            object.__setattr__(self, "_stand_in_reserved", names)
        return names

    def __getattr__(self, name):
        # only called for names not set on the object
        if name == "plugins":
            return _PLUGINS
        if name == "local_directory":
            return _scheduler_local_directory()
        if name == "handlers":
            return _HandlerTable()
        if name == "extensions":
            return _ExtensionTable()
        if name in _RELAYED_METHODS:
            return _relayed_method(self, name)
        if name in ("loop", "io_loop"):
            # the runner's event loop, where these functions and plugins run
            from tornado.ioloop import IOLoop

            return IOLoop.current()
        if name == "services":
            return self._services()
        if name == "time_started":
            return self.identity(n_workers=0)["started"]
        if name == "transition_log":
            return self._transition_log()
        if name in _COPIED:
            snapshot = self._snapshot(tasks=name in ("tasks", "task_groups", "task_prefixes"))
            return getattr(snapshot, name)
        if name in self._reserved():
            raise NotImplementedError(_STAND_IN_ERROR.format(name=name))
        raise AttributeError(f"'Scheduler' object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in ("handlers", "extensions"):
            raise NotImplementedError(
                f"cannot replace Scheduler.{name}: add or remove entries of it instead "
                "(the Rust dask-scheduler's own stay as they are)"
            )
        if name in _COPIED:
            raise NotImplementedError(
                f"cannot set Scheduler.{name}: run_on_scheduler functions, --preload modules "
                "and scheduler plugins get a read-only copy of the Rust dask-scheduler's "
                "state (changing it would not change the scheduler)"
            )
        if name in self._reserved():
            raise NotImplementedError(_STAND_IN_ERROR.format(name=name))
        object.__setattr__(self, name, value)

    def _snapshot(self, tasks=True):
        """The scheduler's state as Python objects (``_SchedulerSnapshot``),
        asked of the scheduler (its ``stand_in_snapshot`` RPC), with its
        tasks or (``tasks=False``, enough for ``workers``) without. One
        copy serves until the runner's event loop next runs, so a plain
        function sees one unchanging state, as it would in Python's
        scheduler, whose state only changes between turns of its event
        loop; a coroutine function sees a fresh copy after each ``await``.
        A copy without tasks is replaced by a complete one when tasks are
        asked for: what was read from the first copy stays as it was."""
        import asyncio

        global _SNAPSHOT
        if _SNAPSHOT is not None and (_SNAPSHOT.complete or not tasks):
            return _SNAPSHOT
        snapshot = _SchedulerSnapshot(
            _without_gc(self._relay_now, "stand_in_snapshot", tasks=tasks), tasks,
            lambda: self._snapshot(tasks=True),
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the runner's loop: a copy per access
            return snapshot
        _SNAPSHOT = snapshot
        loop.call_soon(_forget_snapshot)
        return snapshot

    def _services(self):
        """``Scheduler.services``: the scheduler's (its dashboard), each with
        the ``port`` it listens on, as its identity gives them, and those
        Python code here adds (dask-gateway's preload adds its API server).
        One dict for the runner's lifetime."""
        services = self.__dict__.get("services")
        if services is None:
            services = {
                name: _ServiceStandIn(name, port)
                for name, port in (self.identity(n_workers=0).get("services") or {}).items()
            }
            object.__setattr__(self, "services", services)
        return services

    def _transition_log(self):
        """``Scheduler.transition_log``: the scheduler's log of transitions
        as Python's ``Transition`` tuples, oldest first, asked of it now."""
        from collections import deque

        import dask.config

        records = self._relay_now("stand_in_transition_log")
        maxlen = dask.config.get("distributed.admin.low-level-log-length")
        return deque(_transitions(records), maxlen=maxlen)

    def add_plugin(self, plugin, *, idempotent=False, name=None, **kwargs):
        """``Scheduler.add_plugin``: keeps the plugin (its ``start`` is not
        called, as in Python, except for plugins added while the preloads
        start)."""
        name, fresh = _add_plugin(plugin, name, idempotent)
        if fresh:
            _keep_plugin(name, plugin)

    def remove_plugin(self, name=None):
        """``Scheduler.remove_plugin``."""
        _remove_plugin(name)

    async def register_worker_plugin(self, comm=None, plugin=None, name=None, idempotent=None):
        """``Scheduler.register_worker_plugin``, asked of the scheduler."""
        return await self._relay("register_worker_plugin", plugin=plugin, name=name,
                                 idempotent=idempotent)

    async def register_nanny_plugin(self, comm=None, plugin=None, name=None, idempotent=None):
        """``Scheduler.register_nanny_plugin`` (what ``UploadDirectory.start``
        calls), asked of the scheduler."""
        return await self._relay("register_nanny_plugin", plugin=plugin, name=name,
                                 idempotent=idempotent)

    async def unregister_worker_plugin(self, comm=None, name=None):
        """``Scheduler.unregister_worker_plugin``, asked of the scheduler."""
        return await self._relay("unregister_worker_plugin", name=name)

    async def unregister_nanny_plugin(self, comm=None, name=None):
        """``Scheduler.unregister_nanny_plugin``, asked of the scheduler."""
        return await self._relay("unregister_nanny_plugin", name=name)

    async def retire_workers(self, workers=None, *, names=None, close_workers=False,
                             remove=True, stimulus_id=None, **kwargs):
        """``Scheduler.retire_workers``, asked of the scheduler (its
        ``retire_workers`` RPC, as ``Client.retire_workers`` asks it): the
        retired workers' identities by address."""
        return await self._relay("retire_workers", workers=workers, names=names,
                                 close_workers=close_workers, remove=remove,
                                 stimulus_id=stimulus_id, **kwargs)

    def identity(self, n_workers=-1):
        """``Scheduler.identity``: the scheduler's answer to its ``identity``
        RPC, asked now (a round trip, where Python's reads its own state)."""
        return self._relay_now("identity", n_workers=n_workers)

    def log_event(self, topic, msg):
        """``Scheduler.log_event``: the event is logged by the scheduler
        (its ``log_event`` RPC), where clients and plugins see it."""
        self._relay_now("log_event", topic=topic, msg=msg)

    def story(self, *keys_or_tasks_or_stimuli):
        """``Scheduler.story``: the records of the scheduler's transition log
        that touch these keys (its ``get_story`` RPC, asked now), as Python's
        ``Transition`` tuples."""
        keys = [getattr(k, "key", k) for k in keys_or_tasks_or_stimuli]
        return list(_transitions(self._relay_now("get_story", keys_or_stimuli=keys)))

    def _relay_now(self, op, **kwargs):
        """``_relay`` for the scheduler's synchronous methods: the call may
        come from a coroutine on this runner's event loop, so it runs on a
        loop of its own, in a thread, and the caller waits for it."""
        import asyncio
        import threading

        outcome = {}

        def call():
            try:
                outcome["value"] = asyncio.run(self._relay(op, **kwargs))
            except BaseException as e:  # re-raised in the caller
                outcome["error"] = e

        thread = threading.Thread(target=call, name=f"scheduler-{op}", daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    async def _relay(self, op, **kwargs):
        """Call the scheduler's RPC ``op`` over a connection of its own, as a
        client would. The replies stay serialized, as the Python scheduler's
        own ``broadcast`` leaves the workers' replies."""
        from distributed.core import rpc
        from distributed.security import Security

        address = self.__dict__.get("address")
        if address is None:
            raise NotImplementedError(_STAND_IN_ERROR.format(name=op))
        args = Security().get_connection_args("client")
        async with rpc(address, connection_args=args, deserialize=False) as r:
            return await getattr(r, op)(**kwargs)

    def __repr__(self):
        return f"<Scheduler stand-in for run_on_scheduler: {self.__dict__.get('address')!r}>"


def _configured_bandwidth():
    """``distributed.scheduler.bandwidth`` in bytes/s: Python's
    ``WorkerState.bandwidth``, set from it when the worker registers."""
    import dask.config
    from dask.utils import parse_bytes

    return parse_bytes(dask.config.get("distributed.scheduler.bandwidth"))


def _run_spec_of(key):
    """``TaskState.run_spec`` of the task ``key``: the task as submitted
    (a ``GraphNode``), None for scattered data, asked of the scheduler when
    first read (its ``get_runspec`` RPC, as ``Client.recreate_task_locally``
    asks it), not copied with every task."""
    if _STAND_IN is None:
        raise NotImplementedError(_STAND_IN_ERROR.format(name="run_spec"))
    spec = _STAND_IN._relay_now("get_runspec", key=key)
    from distributed.protocol import deserialize
    from distributed.protocol.serialize import Serialized

    if isinstance(spec, Serialized):
        spec = deserialize(spec.header, spec.frames)
    return spec


def _error_of(key, name):
    """``TaskState.exception`` or ``.traceback`` of the task ``key``: what
    its worker sent, left serialized as Python's scheduler leaves it; None
    unless the task itself raised."""
    if _STAND_IN is None:
        raise NotImplementedError(_STAND_IN_ERROR.format(name=name))
    return _STAND_IN._relay_now("stand_in_error", key=key).get(name)


def _without_gc(call, *args, **kwargs):
    """``call(*args, **kwargs)`` with Python's cyclic garbage collector
    paused: decoding a large graph's copy makes hundreds of thousands of
    small containers, and collections triggered by their number, which find
    no garbage among them, took as long again as the decoding."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return call(*args, **kwargs)
    finally:
        if was_enabled:
            gc.enable()


def _as_key(key):
    """A key as it came over msgpack, with lists (tuple keys) made tuples."""
    if isinstance(key, (list, tuple)):
        return tuple(_as_key(k) for k in key)
    return key


def _transitions(records):
    """The scheduler's transition-log records (``get_story``,
    ``stand_in_transition_log``) as Python's ``Transition`` tuples."""
    from distributed.scheduler import Transition

    for key, start, finish, recs, stimulus, when in records:
        yield Transition(
            _as_key(key), start, finish, {_as_key(k): v for k, v in recs.items()}, stimulus, when
        )


_STAND_IN = None


def _stand_in(req):
    """The one stand-in of this runner, with the scheduler's address and id."""
    global _STAND_IN
    if _STAND_IN is None:
        _STAND_IN = _SchedulerStandIn()
    for name, field in (("address", "address"), ("id", "scheduler_id")):
        if req.get(field) is not None:
            object.__setattr__(_STAND_IN, name, req[field])
    return _STAND_IN


def _run_reply(req, loop, send):
    """One ``run`` request, as ``distributed.worker.run`` handles it in the
    Python scheduler: unpickle, call (a coroutine function is awaited, or
    started in the background with ``wait=False``), and answer
    ``{"status": "OK", "result_ser"}``; an ``Exception`` from the function is
    ``{"status": "error", ...}`` (the client raises it); a failure before
    the call (unpickling, ``wait=False`` with a plain function) is
    ``{"status": "uncaught", ...}``, as it escapes Python's handler."""
    import inspect
    import pickle

    from dask.utils import funcname
    from distributed.utils import has_arg

    rid = req.get("id")

    def answer(reply):
        reply["id"] = rid
        send(reply)

    def ok(result):
        try:
            answer({"status": "OK", "result_ser": _serialized(result)})
        except Exception as e:  # noqa: BLE001 - a result that cannot travel
            log.warning("run_on_scheduler: cannot serialize the result: %s", e)
            answer(error_reply(e))

    try:
        _refresh_uploads()
        function = pickle.loads(req["function"])
        is_coro = inspect.iscoroutinefunction(function)
        wait = req.get("wait", True)
        assert wait or is_coro, "Combination not supported"
        args = pickle.loads(req["args"]) if req.get("args") else ()
        kwargs = pickle.loads(req["kwargs"]) if req.get("kwargs") else {}
        for name in ("dask_worker", "dask_scheduler"):
            if has_arg(function, name):
                kwargs[name] = _stand_in(req)
    except BaseException as e:  # noqa: BLE001
        reply = error_reply(e)
        reply["status"] = "uncaught"
        answer(reply)
        return
    log.info("Run out-of-band function %r", funcname(function))

    def failed(e):
        log.warning("Run Failed\nFunction: %s", str(funcname(function))[:1000], exc_info=e)
        answer(error_reply(e))

    if not is_coro:
        try:
            result = function(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the function's own
            failed(e)
        except BaseException as e:  # noqa: BLE001 - SystemExit and such: not the runner's end
            reply = error_reply(e)
            reply["status"] = "uncaught"
            answer(reply)
        else:
            ok(result)
        return

    async def call():
        try:
            result = await function(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            if wait:
                failed(e)
            else:
                log.warning("background run_on_scheduler function failed", exc_info=e)
            return
        if wait:
            ok(result)

    _keep(loop.create_task(call()))
    if not wait:
        ok(None)


# tasks of coroutine functions still running (kept referenced until done)
_BACKGROUND = set()


def _keep(task):
    """Hold a reference to ``task`` until it is done."""
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


# the PreloadManagers started, for their teardown
_PRELOADS = []


async def _start_preloads(req, send):
    """``--preload``: import the modules (a failure is the scheduler's: it
    does not start, as Python's does not) and run each ``dask_setup`` with
    the stand-in as the scheduler; a ``dask_setup`` that fails is logged and
    reported, and the others go on, as in Python's ``PreloadManager``."""
    import inspect

    from distributed.preloading import process_preloads

    rid = req.get("id")
    try:
        manager = process_preloads(
            _stand_in(req), list(req.get("names") or ()), list(req.get("argv") or ())
        )
    except BaseException as e:  # noqa: BLE001
        reply = error_reply(e)
        reply["status"] = "uncaught"
        reply["id"] = rid
        send(reply)
        return
    _PRELOADS.append(manager)
    failed = []
    before = dict(_PLUGINS)
    for preload in manager:
        try:
            await preload.start()
        except Exception as e:  # noqa: BLE001 - as Python: logged, not fatal
            log.exception("Failed to start preload: %s", preload.name)
            failed.append(f"{preload.name}: {type(e).__name__}: {e}")
    # as Scheduler.start: the plugins the preloads added start now
    for name, plugin in list(_PLUGINS.items()):
        if before.get(name) is plugin:
            continue
        try:
            result = plugin.start(_stand_in(req))
            if inspect.isawaitable(result):
                await result
        except Exception as e:  # noqa: BLE001 - the scheduler already serves
            log.exception("Failed to start scheduler plugin %s", name)
            failed.append(f"scheduler plugin {name}: {type(e).__name__}: {e}")
    send({"id": rid, "status": "ok", "failed": failed})


async def _close(req, send, loop):
    """The scheduler closes: close the plugins, tear the preloads down
    (newest first), answer, and end the process."""
    await _close_plugins()
    for manager in reversed(_PRELOADS):
        await manager.teardown()
    send({"id": req.get("id"), "status": "ok"})
    loop.stop()


# scheduler plugins registered in this runner, by name (Python's
# ``Scheduler.plugins``)
_PLUGINS = {}

# the hooks whose calls the scheduler ships as events (``plugin_events``)
_EVENT_HOOKS = (
    "transition", "update_graph", "add_worker", "remove_worker",
    "add_client", "remove_client", "log_event", "restart",
)


def _overrides(plugin, hook):
    """Whether ``plugin`` has its own ``hook`` (not ``SchedulerPlugin``'s no-op)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    own = getattr(type(plugin), hook, None)
    return own is not None and own is not getattr(SchedulerPlugin, hook, None)


# set when ``_PLUGINS`` changed since the last reply: the next reply
# carries the whole table (``plugin_hooks``), from which the scheduler
# learns which hooks to record, whoever added the plugin (a client, or
# ``scheduler.add_plugin`` in a preload or a ``run_on_scheduler`` function)
_PLUGINS_CHANGED = False
# counts the changes, for ``_handlers``
_PLUGINS_VERSION = 0


def _plugins_changed():
    global _PLUGINS_CHANGED, _PLUGINS_VERSION
    _PLUGINS_CHANGED = True
    _PLUGINS_VERSION += 1


def _plugin_table():
    """``{name: [hooks it overrides]}`` for every plugin."""
    return {
        name: [h for h in _EVENT_HOOKS if _overrides(plugin, h)]
        for name, plugin in _PLUGINS.items()
    }


def _add_plugin(plugin, name=None, idempotent=False):
    """The checks of Python's ``Scheduler.add_plugin``, plus the refusal of
    ``valid_workers_downscaling`` (its answer would have to take part in the
    scheduler's decision, which runs elsewhere): ``(name, False)`` when
    ``idempotent`` keeps the plugin of that name, else ``(name, True)``, and
    the caller keeps it (``_keep_plugin``)."""
    from distributed.diagnostics.plugin import SchedulerPlugin, _get_plugin_name

    if not isinstance(plugin, SchedulerPlugin):
        raise TypeError(f"not a SchedulerPlugin: {type(plugin).__name__}")
    if name is None:
        name = _get_plugin_name(plugin)
    if name in _PLUGINS and idempotent:
        return name, False
    if _overrides(plugin, "valid_workers_downscaling"):
        raise NotImplementedError(
            f"{type(plugin).__qualname__}.valid_workers_downscaling: the Rust "
            "dask-scheduler runs scheduler plugins beside the scheduler and tells them "
            "what happened a moment later, so a plugin cannot take part in choosing "
            "the workers to retire"
        )
    return name, True


def _keep_plugin(name, plugin):
    """Keep ``plugin`` as ``name`` (replacing one, with Python's warning)."""
    import warnings

    if name in _PLUGINS:
        warnings.warn(
            f"Scheduler already contains a plugin with name {name}; overwriting.",
            category=UserWarning,
        )
    _PLUGINS[name] = plugin
    _plugins_changed()


async def _plugin_add(req, send):
    """``register_scheduler_plugin``, as Python's: unpickle, keep the one of
    that name if ``idempotent``, else ``start`` it with the stand-in and keep
    it (a plugin of the same name is replaced, with Python's warning)."""
    import inspect
    import pickle

    rid = req.get("id")
    try:
        _refresh_uploads()
        plugin = pickle.loads(req["plugin"])
        name, fresh = _add_plugin(plugin, req.get("name"), req.get("idempotent"))
        if fresh is False:
            send({"id": rid, "status": "ok", "name": name, "added": False})
            return
        if hasattr(plugin, "start"):
            result = plugin.start(_stand_in(req))
            if inspect.isawaitable(result):
                await result
        _keep_plugin(name, plugin)
    except BaseException as e:  # noqa: BLE001 - the client raises it
        reply = error_reply(e)
        reply["status"] = "uncaught"
        reply["id"] = rid
        send(reply)
        return
    # (the reply carries the plugin table: ``send`` adds it)
    send({"id": rid, "status": "ok", "name": name, "added": True})


def _plugin_remove(req, send):
    """``unregister_scheduler_plugin``: as Python's ``remove_plugin``, the
    plugin is dropped (not closed); an unknown name is a ``ValueError``."""
    name = req.get("name")
    if name not in _PLUGINS:
        reply = error_reply(
            ValueError(f"Could not find plugin {name!r} among the current scheduler plugins")
        )
        reply["status"] = "uncaught"
        reply["id"] = req.get("id")
        send(reply)
        return
    _remove_plugin(name)
    send({"id": req.get("id"), "status": "ok"})


def _remove_plugin(name):
    """Python's ``Scheduler.remove_plugin``."""
    if name not in _PLUGINS:
        raise ValueError(f"Could not find plugin {name!r} among the current scheduler plugins")
    del _PLUGINS[name]
    _plugins_changed()


def _handlers():
    """``{hook: [bound method of each plugin that overrides it]}``, worked
    out again only after the plugins changed."""
    global _HANDLERS
    if _HANDLERS[0] != _PLUGINS_VERSION:
        table = {
            hook: [getattr(p, hook) for p in _PLUGINS.values() if _overrides(p, hook)]
            for hook in _EVENT_HOOKS
        }
        _HANDLERS = (_PLUGINS_VERSION, table)
    return _HANDLERS[1]


_HANDLERS = (None, {})


def _plugin_events(req, loop):
    """Call the plugins' hooks for the events the scheduler recorded, in
    order, with the arguments Python's scheduler passes; a hook that raises
    is logged, as Python logs it, and the others go on. ``add_worker`` and
    ``remove_worker`` may return awaitables, which run in the background."""
    import inspect

    scheduler = _stand_in({})
    for event in req.get("events") or ():
        hook, args = event[0], event[1:]
        for method in _handlers().get(hook, ()):
            try:
                if hook == "transition":
                    key, start, finish, stimulus_id = args
                    result = method(key, start, finish, stimulus_id=stimulus_id)
                elif hook == "update_graph":
                    client, keys, tasks, annotations, priority, stimulus_id = args
                    result = method(
                        scheduler, client=client, keys=set(keys), tasks=list(tasks),
                        annotations=annotations, priority=priority, stimulus_id=stimulus_id,
                    )
                elif hook in ("add_worker", "remove_worker"):
                    extra = {"stimulus_id": args[1]} if hook == "remove_worker" else {}
                    result = method(scheduler=scheduler, worker=args[0], **extra)
                elif hook in ("add_client", "remove_client"):
                    result = method(scheduler=scheduler, client=args[0])
                elif hook == "log_event":
                    result = method(args[0], args[1])
                else:  # restart
                    result = method(scheduler)
                if result is not None and inspect.isawaitable(result):
                    _keep(loop.create_task(_logged(result, hook)))
            except Exception:  # noqa: BLE001 - as Python: logged, the others go on
                log.info("Plugin failed with exception", exc_info=True)


async def _logged(awaitable, hook):
    try:
        await awaitable
    except Exception:  # noqa: BLE001
        log.exception("Plugin %s hook failed", hook)


async def _close_plugins():
    """The scheduler closes: every plugin's ``before_close``, then its
    ``close`` (errors logged), as ``Scheduler.close`` does."""
    import inspect

    for method in ("before_close", "close"):
        for plugin in list(_PLUGINS.values()):
            try:
                result = getattr(plugin, method)()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001
                log.exception("Plugin %s failed", method)


def runner_main(proto_in, proto_out):
    """The function runner: one long-lived process per scheduler that runs
    ``run_on_scheduler`` functions, so that what one call starts (a thread,
    a listening socket, module state) lives on for the next call and for the
    workers, as it does in the Python scheduler's process. Requests carry an
    ``"id"`` that the reply echoes; plain functions run one at a time on the
    event loop's thread, as they do on the Python scheduler's event loop, and
    coroutine functions run concurrently. It also runs ``--preload`` modules
    (``preload``) and tears them down when the scheduler closes (``close``,
    which ends the process). EOF on stdin ends the process, whatever threads
    the functions started."""
    import asyncio
    import logging
    import threading

    global log
    log = logging.getLogger("dask_scheduler.function_runner")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lock = threading.Lock()

    def send(reply):
        global _PLUGINS_CHANGED, _RPC_HANDLERS_CHANGED
        if _PLUGINS_CHANGED:
            reply["plugin_hooks"] = _plugin_table()
            # replies may be handled out of order: the scheduler keeps the
            # newest table of this process
            reply["plugin_version"] = [os.getpid(), _PLUGINS_VERSION]
            _PLUGINS_CHANGED = False
        if _RPC_HANDLERS_CHANGED:
            reply["rpc_handlers"] = sorted(_RPC_HANDLERS)
            reply["rpc_handlers_version"] = [os.getpid(), _RPC_HANDLERS_VERSION]
            _RPC_HANDLERS_CHANGED = False
        body = _packed_reply(reply, reply.get("id"))
        with lock:
            try:
                _write(proto_out, body)
            except (BrokenPipeError, OSError):
                os._exit(0)

    def handle(body):
        req = None
        try:
            req = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=False)
            if not isinstance(req, dict):
                raise TypeError(f"request must be a msgpack map, not {type(req).__name__}")
            op = req.get("op")
            if op == "ping":
                send({"id": req.get("id"), "status": "ok"})
            elif op == "run":
                _run_reply(req, loop, send)
            elif op == "preload":
                _keep(loop.create_task(_start_preloads(req, send)))
            elif op == "close":
                _keep(loop.create_task(_close(req, send, loop)))
            elif op == "plugin_events":
                _plugin_events(req, loop)
            elif op == "plugin_add":
                _keep(loop.create_task(_plugin_add(req, send)))
            elif op == "plugin_remove":
                _plugin_remove(req, send)
            elif op == "rpc_handler":
                _keep(loop.create_task(_rpc_handler(req, send)))
            else:
                raise ValueError(
                    f"unknown op {op!r} (expected 'run', 'preload', 'close', 'plugin_add', "
                    "'plugin_remove', 'plugin_events', 'rpc_handler' or 'ping')"
                )
        except BaseException as e:  # noqa: BLE001 - every request gets a reply
            reply = error_reply(e)
            reply["status"] = "uncaught"
            reply["id"] = req.get("id") if isinstance(req, dict) else None
            send(reply)

    def read_requests():
        while True:
            body = _read(proto_in)
            if body is None:
                loop.call_soon_threadsafe(loop.stop)
                return
            loop.call_soon_threadsafe(handle, body)

    threading.Thread(target=read_requests, name="requests", daemon=True).start()
    log.info("function runner ready (pid %d)", os.getpid())
    loop.run_forever()
    # The scheduler is gone: end here, whatever threads user code started.
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def _logging_format(formatter):
    """A formatter as ``[format, datefmt]`` in ``%`` style (Python's default
    formatter prints the message alone; ``{`` and ``$`` formats converted),
    python-json-logger's as ``{"json": ...}`` (`_json_formatter`), or a
    string saying why it cannot be rendered by this scheduler."""
    import logging
    import re

    if formatter is None:
        return ["%(message)s", None]
    json_spec = _json_formatter(formatter)
    if json_spec is not None:
        return json_spec
    if type(formatter) is not logging.Formatter:
        return f"formatter class {type(formatter).__module__}.{type(formatter).__qualname__}"
    style = formatter._style
    fmt = style._fmt
    if type(style) is logging.PercentStyle:
        pass
    elif type(style) in (logging.StrFormatStyle, logging.StringTemplateStyle):
        brace = type(style) is logging.StrFormatStyle
        pattern = r"\{\{|\}\}|\{(\w+)\}" if brace else r"\$\$|\$\{(\w+)\}|\$(\w+)"
        out, at = [], 0
        for m in [*re.finditer(pattern, fmt), None]:
            literal = fmt[at:m.start() if m else len(fmt)]
            if brace and ("{" in literal or "}" in literal):
                return f"format {fmt!r} (a '{{' field with a conversion or format spec)"
            out.append(literal.replace("%", "%%"))
            if m:
                name = next((g for g in m.groups() if g), None)
                # a field, or an escaped brace or dollar
                out.append(f"%({name})s" if name else m.group(0)[0])
                at = m.end()
        fmt = "".join(out)
    else:
        return f"format style {type(style).__qualname__}"
    return [fmt, formatter.datefmt]


def _json_formatter(formatter):
    """python-json-logger's ``JsonFormatter`` (as configured, not
    subclassed nor given its own serializer or encoder) as what a line of it
    holds: ``{"json": {...}}`` with its keys in its order, each the JSON text
    of the key and where its value comes from (a record field, a fixed JSON
    text, the UTC timestamp). A string says why it cannot be rendered here;
    ``None``: not one."""
    try:
        from pythonjsonlogger.json import JsonEncoder, JsonFormatter
    except ImportError:
        return None
    if not isinstance(formatter, JsonFormatter):
        return None
    import json
    import logging

    name = f"{type(formatter).__module__}.{type(formatter).__qualname__}"
    if type(formatter) is not JsonFormatter:
        return f"formatter class {name} (a subclass of JsonFormatter)"
    if (formatter.json_serializer is not json.dumps or formatter.json_default is not None
            or formatter.json_encoder is not JsonEncoder):
        return f"formatter {name} with its own json_serializer, json_default or json_encoder"
    ascii_only = bool(formatter.json_ensure_ascii)

    def dumps(value):
        return json.dumps(value, cls=JsonEncoder, indent=formatter.json_indent,
                          ensure_ascii=ascii_only)

    rename = formatter.rename_fields
    entries = {}
    for field, value in formatter.defaults.items():
        entries[rename.get(field, field)] = ["value", dumps(value)]
    for field in formatter._required_fields:
        entries[rename.get(field, field)] = ["field", field]
    for field, value in formatter.static_fields.items():
        entries[rename.get(field, field)] = ["value", dumps(value)]
    # a record's other attributes, in a LogRecord's order (`message` is set
    # when it is formatted, `asctime` only for a format that names it)
    attrs = [*logging.makeLogRecord({}).__dict__, "message"]
    if "asctime" in formatter._required_fields:
        attrs.append("asctime")
    for field in attrs:
        if field not in formatter._skip_fields and not field.startswith("_"):
            entries[rename.get(field, field)] = ["field", field]
    if formatter.timestamp:
        key = formatter.timestamp if isinstance(formatter.timestamp, str) else "timestamp"
        entries[rename.get(key, key)] = ["timestamp", None]
    if formatter.rename_fields_keep_missing:
        for field in rename.values():
            entries.setdefault(field, ["value", "null"])
    indent = formatter.json_indent
    return {"json": {
        "prefix": str(formatter.prefix),
        "indent": (" " * indent if isinstance(indent, int) else indent),
        "ensure-ascii": ascii_only,
        "datefmt": formatter.datefmt,
        "entries": [[json.dumps(str(k), ensure_ascii=ascii_only), *v]
                    for k, v in entries.items()],
    }}


def _logging_filters(filters):
    """``{"name": ...}`` for each ``logging.Filter`` (which the scheduler
    applies), the class of any other filter (which it names as not applied)."""
    import logging

    return [
        {"name": f.name} if type(f) is logging.Filter
        else f"{type(f).__module__}.{type(f).__qualname__}"
        for f in filters
    ]


def _logging_handler(handler):
    """What this scheduler needs to write a Python logging handler's
    records itself: where, from which level, in which format."""
    import logging
    import logging.handlers

    kind = type(handler)
    out = {"level": int(handler.level), "class": f"{kind.__module__}.{kind.__qualname__}"}
    if kind in (logging.FileHandler, logging.handlers.WatchedFileHandler):
        out.update(kind="file", path=str(handler.baseFilename), mode=str(handler.mode),
                   watched=kind is logging.handlers.WatchedFileHandler)
    elif kind is logging.handlers.TimedRotatingFileHandler and handler.namer is None \
            and handler.rotator is None:
        out.update(kind="timed", path=str(handler.baseFilename), when=str(handler.when),
                   suffix=str(handler.suffix), utc=bool(handler.utc),
                   **{"interval": int(handler.interval), "rollover-at": int(handler.rolloverAt),
                      "backup-count": int(handler.backupCount)})
    elif kind is logging.handlers.RotatingFileHandler:
        out.update(kind="rotating", path=str(handler.baseFilename), mode=str(handler.mode),
                   **{"max-bytes": int(handler.maxBytes), "backup-count": int(handler.backupCount)})
    elif kind in (logging.StreamHandler, type(logging.lastResort)):
        stream = handler.stream
        if stream in (sys.stderr, sys.__stderr__):
            out["kind"] = "stderr"
        elif stream in (sys.stdout, sys.__stdout__):
            out["kind"] = "stdout"
        else:
            out["kind"] = "unsupported"
            out["why"] = f"stream {stream!r}"
    elif kind is logging.NullHandler:
        out["kind"] = "null"
    else:
        out["kind"] = "unsupported"
        out["why"] = f"handler class {out['class']}"
    fmt = _logging_format(handler.formatter)
    if isinstance(fmt, str):
        out["format-error"] = fmt
    elif isinstance(fmt, dict):
        out.update(fmt)
    else:
        out["format"], out["datefmt"] = fmt
    if handler.filters:
        out["filters"] = _logging_filters(handler.filters)
    return out


def _describe_logging():
    """Python's logging as Dask's config (``logging:``, in its old or its
    ``version: 1`` form, or ``logging-file-config``) set it up when this
    helper imported distributed, as a Python scheduler's process has it:
    every logger with a setting of its own (level, handlers, propagation,
    disabled), the root logger, the handlers they use and the handler of
    last resort. The scheduler routes its own lines through this."""
    import logging

    handlers, index = [], {}

    def ref(h):
        if id(h) not in index:
            index[id(h)] = len(handlers)
            handlers.append(_logging_handler(h))
        return index[id(h)]

    def describe(lg, level=None):
        out = {
            "level": int(lg.level if level is None else level),
            "propagate": bool(lg.propagate),
            "disabled": bool(lg.disabled),
            "handlers": [ref(h) for h in lg.handlers if id(h) not in _HELPER_LOG_HANDLERS],
        }
        if lg.filters:
            out["filters"] = _logging_filters(lg.filters)
        return out

    root = logging.getLogger()
    loggers = {}
    for name, lg in sorted(logging.Logger.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger) or name.split(".")[0] == "dask_scheduler":
            continue
        d = describe(lg)
        if d["level"] or d["handlers"] or not d["propagate"] or d["disabled"] or "filters" in d:
            loggers[name] = d
    return {
        "root": describe(root, _HELPER_ROOT_LEVEL),
        "loggers": loggers,
        "handlers": handlers,
        "last-resort": ref(logging.lastResort) if logging.lastResort is not None else None,
    }


def _logging_setup():
    """`_describe_logging`, or why it failed (the scheduler then keeps its
    own default output)."""
    try:
        return _describe_logging()
    except Exception as e:  # noqa: BLE001 - reported, never fatal
        return {"error": f"{type(e).__name__}: {e}"}


def op_config(req):
    """The scheduler settings of Dask's config as this environment resolves them
    (YAML files, ``DASK_*`` environment variables), parsed into plain numbers."""
    import dask.config
    from dask.utils import parse_bytes, parse_timedelta

    get = dask.config.get
    ttl = get("distributed.scheduler.worker-ttl", None)
    idle = get("distributed.scheduler.idle-timeout", None)
    no_workers = get("distributed.scheduler.no-workers-timeout", None)
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
            "events-cleanup-delay": float(
                parse_timedelta(get("distributed.scheduler.events-cleanup-delay", "1h"))
            ),
            # a plain string (an unquoted environment variable) names one
            "blocked-handlers": [
                str(op) for op in _as_list(get("distributed.scheduler.blocked-handlers", None))
            ],
            "no-workers-timeout": (
                float(parse_timedelta(no_workers)) if no_workers else None
            ),
            "bandwidth": float(parse_bytes(get("distributed.scheduler.bandwidth"))),
            "work-stealing": bool(get("distributed.scheduler.work-stealing")),
            "work-stealing-interval": float(
                parse_timedelta(get("distributed.scheduler.work-stealing-interval"))
            ),
            "rootish-taskgroup": int(get("distributed.scheduler.rootish-taskgroup")),
            "rootish-taskgroup-dependencies": int(
                get("distributed.scheduler.rootish-taskgroup-dependencies")
            ),
            # this scheduler's own setting (not in Dask's schema): keep the
            # queued siblings of a running root task for the same worker
            "sibling-affinity": bool(get("distributed.scheduler.sibling-affinity", True)),
            # records kept for get_task_stream (Python's TaskStreamPlugin)
            "task-stream-length": max(
                int(get("distributed.scheduler.dashboard.status.task-stream-length", 1000)),
                int(get("distributed.scheduler.dashboard.tasks.task-stream-length", 100000)),
            ),
            "log-length": int(get("distributed.admin.log-length")),
            "logging-setup": _logging_setup(),
            # a string, or nothing: Dask parses an environment value that
            # looks like a Python literal (a JSON object) as that literal
            "log-format": _string_or_none(get("distributed.admin.log-format")),
            "socket-backlog": int(get("distributed.comm.socket-backlog")),
            "http-routes": [str(r) for r in _as_list(get("distributed.scheduler.http.routes"))],
            "prometheus-namespace": str(
                get("distributed.dashboard.prometheus.namespace", "dask") or ""
            ),
            "recent-to-old-time": float(
                parse_timedelta(get("distributed.worker.memory.recent-to-old-time"))
            ),
            "rebalance-measure": str(get("distributed.worker.memory.rebalance.measure")),
            "rebalance-sender-min": float(get("distributed.worker.memory.rebalance.sender-min")),
            "rebalance-recipient-max": float(
                get("distributed.worker.memory.rebalance.recipient-max")
            ),
            "rebalance-sender-recipient-gap": float(
                get("distributed.worker.memory.rebalance.sender-recipient-gap")
            ),
            "default-task-durations": {
                str(k): float(parse_timedelta(v))
                for k, v in (get("distributed.scheduler.default-task-durations") or {}).items()
            },
            "comm": _comm_security_config(get),
            # the length is Dask's; this scheduler's own switch turns the
            # log off (on by default, as Python always keeps it)
            "transition-log-length": (
                int(get("distributed.admin.low-level-log-length"))
                if get("distributed.scheduler.transition-log", True)
                else 0
            ),
            "amm-start": bool(get("distributed.scheduler.active-memory-manager.start")),
            "amm-interval": float(
                parse_timedelta(get("distributed.scheduler.active-memory-manager.interval"))
            ),
            "amm-measure": str(get("distributed.scheduler.active-memory-manager.measure")),
            "amm-policies": [
                str(p.get("class")) if isinstance(p, dict) else str(p)
                for p in (get("distributed.scheduler.active-memory-manager.policies") or [])
            ],
            # HTTPS on the dashboard port (Python's Server.start_http_server)
            "dashboard-tls-cert": get("distributed.scheduler.dashboard.tls.cert", None),
            "dashboard-tls-key": get("distributed.scheduler.dashboard.tls.key", None),
            # started in the function runner when --preload names none
            "preload": [str(p) for p in _as_list(get("distributed.scheduler.preload", None))],
            "preload-argv": _plain_argv(get("distributed.scheduler.preload-argv", None)),
        },
    }


def _string_or_none(value):
    return value if isinstance(value, str) else None


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _plain_argv(value):
    """``preload-argv``: one list of strings, or one per preload."""
    return [v if isinstance(v, str) else [str(a) for a in v] for v in _as_list(value)]


def _comm_security_config(get):
    """The ``distributed.comm`` settings ``Security`` reads for the scheduler
    (TLS files or inline PEM, versions, ciphers, require-encryption) and the
    default scheme; absent ones are ``None``."""

    def text(key):
        v = get(key, None)
        return None if v is None else str(v)

    def number(key):
        v = get(key, None)
        return None if v is None else float(v)

    req = get("distributed.comm.require-encryption", None)
    return {
        "ca-file": text("distributed.comm.tls.ca-file"),
        "cert": text("distributed.comm.tls.scheduler.cert"),
        "key": text("distributed.comm.tls.scheduler.key"),
        "min-version": number("distributed.comm.tls.min-version"),
        "max-version": number("distributed.comm.tls.max-version"),
        "ciphers": text("distributed.comm.tls.ciphers"),
        "require-encryption": None if req is None else bool(req),
        "default-scheme": text("distributed.comm.default-scheme"),
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
        reply["exception_ser"] = _serialized(exc)
        reply["traceback_ser"] = _serialized(tb) if tb is not None else None
    except BaseException:  # noqa: BLE001
        log.warning("could not serialize exception for the wire", exc_info=True)
    return reply


def _packed_reply(reply, rid):
    """``reply`` with its ``"id"``, as msgpack; a reply msgpack cannot encode
    becomes the error that says so."""
    reply["id"] = rid
    try:
        return msgpack.packb(reply, use_bin_type=True)
    except BaseException as e:  # noqa: BLE001
        try:
            raise RuntimeError(f"reply is not msgpack-encodable: {e}") from e
        except RuntimeError as e2:
            fallback = error_reply(e2)
        fallback["id"] = rid
        return msgpack.packb(fallback, use_bin_type=True)


# --------------------------------------------------------------------------
# main loop
# --------------------------------------------------------------------------

# After a graph of at least this many tasks, collect garbage and hand free
# heap memory back to the OS (a few tens of ms, not worth it for small ones).
RELEASE_AFTER_TASKS = 20000


def _release_memory():
    import gc

    gc.collect()
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        trim = getattr(libc, "malloc_trim", None)  # glibc only
        if trim is not None:
            trim(0)
    except Exception:  # noqa: BLE001 - best effort
        pass


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
    if os.environ.get("DASK_SCHEDULER_HELPER_ROLE") == "function-runner":
        return runner_main(proto_in, proto_out)
    log.info(
        "materializer helper ready (pid %d, dask %s, distributed %s)",
        os.getpid(),
        dask.__version__,
        distributed.__version__,
    )
    global _rss_ready
    _rss_ready = _rss_bytes()

    def emit(partial):
        try:
            body = msgpack.packb(partial, use_bin_type=True)
        except Exception as e:
            raise RuntimeError(f"reply is not msgpack-encodable: {e}") from e
        _write(proto_out, body)

    while True:
        body = _read(proto_in)
        if body is None:
            return 0
        rid = req = None
        try:
            req = msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=False)
            if not isinstance(req, dict):
                raise TypeError(f"request must be a msgpack map, not {type(req).__name__}")
            rid = req.get("id")
            op = req.get("op")
            if op == "materialize":
                reply = op_materialize(req, emit)
            elif op == "versions":
                # extra packages, as `Client.get_versions(packages=...)` asks
                extra = [p for p in req.get("packages") or () if isinstance(p, str)]
                reply = {"status": "ok",
                         "versions": get_versions(packages=extra) if extra else versions}
            elif op == "config":
                reply = op_config(req)
            elif op == "ping":
                reply = {"status": "ok"}
            elif op == "scheduler_plugin":
                reply = op_scheduler_plugin(req)
            elif op == "p2p_create":
                reply = op_p2p_create(req)
            elif op == "p2p_worker_plugin":
                reply = op_p2p_worker_plugin(req)
            elif op == "write_cluster_dump":
                reply = op_write_cluster_dump(req)
            elif op == "describe_feed":
                reply = op_describe_feed(req)
            elif op == "describe_scheduler_function":
                reply = op_describe_scheduler_function(req)
            else:
                raise ValueError(
                    f"unknown op {op!r} (expected 'materialize', 'versions', 'config', "
                    "'scheduler_plugin', 'p2p_create', 'p2p_worker_plugin', "
                    "'write_cluster_dump', 'describe_feed', 'describe_scheduler_function' or 'ping')"
                )
        except BaseException as e:  # noqa: BLE001 - SystemExit from user code too
            log.info("request %r failed: %s: %s", rid, type(e).__name__, e)
            reply = error_reply(e)
        out = _packed_reply(reply, rid)
        try:
            _write(proto_out, out)
        except (BrokenPipeError, OSError):
            return 0
        big = reply.get("ntasks", 0) >= RELEASE_AFTER_TASKS
        # Nothing of a request may outlive it: the reply of a big graph
        # would otherwise pin its memory until the next request.
        del body, req, reply, out
        if big:
            _release_memory()


if __name__ == "__main__":
    sys.exit(main())

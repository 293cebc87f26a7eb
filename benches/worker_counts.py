#!/usr/bin/env python
"""What the workers receive: a diagnostic, not a benchmark.

Starts one scheduler (``rust``: target/release/dask-scheduler, or ``python``:
distributed's), 4 ``dask worker --nthreads 1 --no-nanny`` processes that load
this file as a ``--preload`` module, runs 100 chains of 100 delayed ``inc``
tasks (compare.py's ``overhead_delayed``), and prints, summed over the
workers: the stream ops they handled by op, their state-machine stimuli by
type, their TCP reads, the batches and messages they sent back, their CPU
seconds, and the wall time. The fifteenth session found with it that the
delayed chains were slow under the Rust scheduler because their first tasks
were queued (benches/README.md, fifteenth-session notes).

Usage::

    .venv/bin/python benches/worker_counts.py rust|python [--chains 100] [--length 100]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# --------------------------------------------------------------------------
# the preload side (runs inside each worker)

_READS: collections.Counter = collections.Counter()


def _count_reads() -> None:
    """Count every TCP message this worker process reads."""
    import distributed.comm.tcp as tcp

    if getattr(tcp.TCP.read, "_counted", False):
        return
    original = tcp.TCP.read

    async def read(self, deserializers=None):
        msg = await original(self, deserializers)
        _READS["tcp reads"] += 1
        return msg

    read._counted = True
    tcp.TCP.read = read


def dask_setup(worker) -> None:
    """Preload hook: wrap the worker's stream handlers and stimulus entry."""
    counts: collections.Counter = collections.Counter()
    worker._received_counts = counts
    handle_stimulus = worker.handle_stimulus

    def counted_stimulus(*stims):
        for stim in stims:
            counts["stimulus " + type(stim).__name__] += 1
        return handle_stimulus(*stims)

    worker.handle_stimulus = counted_stimulus
    for op, handler in list(worker.stream_handlers.items()):

        def counted(*args, _handler=handler, _op=op, **kwargs):
            counts["op " + _op] += 1
            return _handler(*args, **kwargs)

        worker.stream_handlers[op] = counted
    _count_reads()


def snapshot(dask_worker) -> dict:
    """This worker's counts so far (run with ``client.run``)."""
    out = dict(dask_worker._received_counts)
    out.update(_READS)
    out["batches sent"] = dask_worker.batched_stream.batch_count
    out["messages sent"] = dask_worker.batched_stream.message_count
    return out


# --------------------------------------------------------------------------
# the driver side


def _cpu_seconds(pids) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scheduler", choices=["rust", "python"])
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--rust-bin", default=str(ROOT / "target/release/dask-scheduler"))
    args = ap.parse_args()

    # this file's directory is on sys.path when it runs as a script
    import compare
    from distributed import Client

    py = sys.executable
    port = compare.free_port()
    common = ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"]
    if args.scheduler == "rust":
        cmd = [args.rust_bin, *common, "--python", py]
    else:
        cmd = [py, "-m", "distributed.cli.dask_scheduler", *common]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    procs = [subprocess.Popen(cmd, **quiet)]
    address = f"tcp://127.0.0.1:{port}"
    try:
        for _ in range(4):
            procs.append(subprocess.Popen(
                [py, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
                 "--memory-limit", "0", "--preload", "worker_counts"], **quiet))
        # by reference, so that the workers run the preloaded module's
        # `snapshot` with its counters (this file runs as `__main__`, whose
        # functions cloudpickle would copy by value)
        import worker_counts

        # compare.py's `overhead_delayed` workload: the same graph, warm-up and check
        work = compare.build_overhead_delayed(
            {"chains": args.chains, "length": args.length, "timeout": 600})
        with Client(address, timeout=60) as client:
            client.wait_for_workers(4, timeout=60)
            work.warm(client)
            before = client.run(worker_counts.snapshot)
            cpu0 = _cpu_seconds(p.pid for p in procs[1:])
            t0 = time.perf_counter()
            result = work.run(client)
            wall = time.perf_counter() - t0
            cpu1 = _cpu_seconds(p.pid for p in procs[1:])
            after = client.run(worker_counts.snapshot)
        try:
            work.check(result)
        except AssertionError as e:
            print(f"WRONG RESULT: {e}", file=sys.stderr)
            return 2
        total: collections.Counter = collections.Counter()
        for w, counts in after.items():
            for k, v in counts.items():
                total[k] += v - before[w].get(k, 0)
        print(f"{args.scheduler}: {args.chains} chains x {args.length}: wall {wall:.2f} s, "
              f"workers' CPU {cpu1 - cpu0:.2f} s")
        for k, v in sorted(total.items()):
            print(f"  {k:40} {v:>8}")
        return 0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    sys.exit(main())

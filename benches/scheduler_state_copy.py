#!/usr/bin/env python
"""What reading the scheduler's state costs a ``run_on_scheduler`` function,
against each scheduler, with ``--tasks`` tasks held: ``len(dask_scheduler.
tasks)``, reading every task's state, and ``len(dask_scheduler.workers)``.
Python's scheduler hands the function its live objects; the Rust scheduler's
function runner gets a copy of the state over an RPC (workers alone without
the tasks). The tasks wait for workers (there are none), so the scheduler
holds them all. ``--calls`` calls of each, medians; the schedulers
alternate, ``--rounds`` times each, each round on a fresh scheduler.

    .venv/bin/python benches/scheduler_state_copy.py [--tasks 100000] [--calls 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from local_scheduler import alternate, median_of, start


def count_tasks(dask_scheduler):
    return len(dask_scheduler.tasks)


def task_states(dask_scheduler):
    return len({key: ts.state for key, ts in dask_scheduler.tasks.items()})


def count_workers(dask_scheduler):
    return len(dask_scheduler.workers)


PROBES = {"len_tasks": count_tasks, "all_states": task_states, "len_workers": count_workers}


def one_round(impl: str, n: int, calls: int) -> dict:
    from distributed import Client

    proc, address = start(impl)
    try:
        with Client(address, timeout=60) as client:
            futures = client.map(len, [[i] for i in range(n)], pure=False)
            while client.run_on_scheduler(count_tasks) < n:
                time.sleep(0.1)
            row = {"scheduler": impl, "tasks": n}
            for name, probe in PROBES.items():
                took = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    got = client.run_on_scheduler(probe)
                    took.append(time.perf_counter() - t0)
                    assert got == (0 if name == "len_workers" else n), (name, got)
                row[f"{name}_ms"] = statistics.median(took) * 1e3
            del futures
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = alternate(
        args.rounds,
        lambda impl: one_round(impl, args.tasks, args.calls),
        lambda row: ", ".join(f"{name} {row[name + '_ms']:.1f} ms" for name in PROBES),
    )
    for name in PROBES:
        field = f"{name}_ms"
        rust, python = median_of(rows, "rust", field), median_of(rows, "python", field)
        print(f"{name}: rust {rust:.1f} ms, python {python:.1f} ms, ratio {rust / python:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"tasks": args.tasks, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

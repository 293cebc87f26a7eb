#!/usr/bin/env python
"""What a scheduler plugin with a ``transition`` hook costs each scheduler:
``client.map`` of ``--n`` tiny tasks (then their sum) on 2 local workers, once
without a plugin and once with one that counts transitions. Reports the wall
time and the scheduler's CPU (its process and its children, read with psutil
before and after each run; a child that ended meanwhile is not counted) per
task. The schedulers alternate, ``--rounds`` times each, each round on a
fresh cluster.

    .venv/bin/python benches/scheduler_plugin_overhead.py [--n 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
from distributed.diagnostics.plugin import SchedulerPlugin

from local_scheduler import IMPLS, PYTHON, alternate, median_of, quiet, start, stop


class CountTransitions(SchedulerPlugin):
    """Counts the transitions it is told of (pickled by value: this module
    is the client's ``__main__``)."""

    name = "count-transitions"

    def __init__(self):
        self.n = 0

    def transition(self, key, start, finish, *args, **kwargs):
        self.n += 1


def counted(dask_scheduler=None):
    return dask_scheduler.plugins["count-transitions"].n


def inc(x):
    return x + 1


def cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def one_round(impl: str, n: int) -> dict:
    from distributed import Client

    sched, address = start(impl)
    workers = [
        subprocess.Popen(
            [str(PYTHON), "-m", "distributed.cli.dask_worker", address, "--nthreads", "2",
             "--no-nanny", "--no-dashboard", "--memory-limit", "0"],
            **quiet(),
        )
        for _ in range(2)
    ]
    row = {"scheduler": impl}
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            client.submit(inc, 0).result()  # warm up (starts the materializer)
            proc = psutil.Process(sched.pid)
            for label in ("without", "with"):
                if label == "with":
                    client.register_plugin(CountTransitions())
                    client.run_on_scheduler(counted)
                c0, t0 = cpu(proc), time.perf_counter()
                futures = client.map(inc, range(n), key=[f"inc-{label}-{i}" for i in range(n)])
                assert client.submit(sum, futures).result() == n * (n + 1) // 2
                wall = time.perf_counter() - t0
                row[f"{label}_wall_s"] = wall
                row[f"{label}_cpu_us_per_task"] = (cpu(proc) - c0) / (n + 1) * 1e6
                del futures
            # the releases of the last run's keys arrive after its result:
            # count once the number stops changing
            seen, last = client.run_on_scheduler(counted), -1
            while seen != last:
                time.sleep(0.3)
                seen, last = client.run_on_scheduler(counted), seen
            row["transitions_seen"] = seen
    finally:
        # the workers first, while the scheduler can still see them leave
        for group in (workers, [sched]):
            stop(group)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = alternate(
        args.rounds,
        lambda impl: one_round(impl, args.n),
        lambda row: (
            f"without: {row['without_wall_s']:.2f} s, {row['without_cpu_us_per_task']:.0f} us/task; "
            f"with the plugin: {row['with_wall_s']:.2f} s, {row['with_cpu_us_per_task']:.0f} "
            f"us/task ({row['transitions_seen']} transitions seen)"
        ),
    )

    def med(impl, field):
        return median_of(rows, impl, field)

    for field in ("with_wall_s", "with_cpu_us_per_task"):
        print(f"{field}: rust/python {med('rust', field) / med('python', field):.2f}")
    for impl in IMPLS:
        print(
            f"{impl}: CPU per task with the plugin / without "
            f"{med(impl, 'with_cpu_us_per_task') / med(impl, 'without_cpu_us_per_task'):.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps({"n": args.n, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

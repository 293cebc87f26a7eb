#!/usr/bin/env python
"""Peak memory and time of taking in a graph, Python's scheduler against this
one with and without the forked ``dask.order`` child.

A client submits ``da.random...sum(split_every=8)`` over ``--chunks`` chunks
(the ``e2e_split_every`` graph at 20,000 chunks, 42,859 tasks); there are no
workers, so the scheduler holds the graph. Measured, each round on a fresh
scheduler:

- the peak, over samples every 50 ms, of the resident (RSS) and proportional
  (PSS: pages shared between processes count once) set sizes of the scheduler
  and all its children (this scheduler's materializer helper and the
  helper's forked child), from the submission until the graph is held. The
  Rust scheduler's function runner, a Python process started for the
  ``run_on_scheduler`` probe below (Python's runs the function in its own
  process), is left out;
- the intake time: from the submission until ``len(dask_scheduler.tasks)``
  reaches the graph's task count (polled every 0.1 s through
  ``run_on_scheduler``, the same way for both schedulers).

Variants: ``python``; ``rust`` (as it ships: for graphs of 100k tasks or
more the child is forked while memory allows, which on a machine with room is
always; the thirty-sixth session's results in ``results/s36/`` were taken
while that floor was 20k); ``rust-nofork``
(``DASK_SCHEDULER_MATERIALIZER_FORK_ORDER=0``). They alternate,
``--rounds`` times; medians and ranges, and ratios to Python's.

    .venv/bin/python benches/graph_intake_memory.py [--chunks 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import local_scheduler
from local_scheduler import alternate, median_of

VARIANTS = ("python", "rust", "rust-nofork")


def count_tasks(dask_scheduler):
    return len(dask_scheduler.tasks)


def start(variant: str) -> tuple[subprocess.Popen, str]:
    if variant == "rust-nofork":
        return local_scheduler.start("rust", {"DASK_SCHEDULER_MATERIALIZER_FORK_ORDER": "0"})
    return local_scheduler.start(variant)


class PeakSampler:
    """Peak RSS and PSS of a process and its children, every 50 ms."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.rss = self.pss = 0
        self.processes = 1  # most processes counted in one sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            rss = pss = counted = 0
            procs = [self.proc, *self.proc.children(recursive=True)]
            for p in procs:
                try:
                    if p.environ().get("DASK_SCHEDULER_HELPER_ROLE") == "function-runner":
                        # only the probe below makes it; Python's runs
                        # functions in its own process
                        continue
                    m = p.memory_full_info()
                except psutil.Error:
                    continue
                rss += m.rss
                pss += m.pss
                counted += 1
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self.processes = max(self.processes, counted)
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def one_round(variant: str, chunks: int) -> dict:
    import dask.array as da
    from distributed import Client

    proc, address = start(variant)
    try:
        with Client(address, timeout=60) as client:
            x = da.random.default_rng(5).random((chunks * 100,), chunks=100).sum(split_every=8)
            n = len(x.__dask_graph__())
            # the first call starts the Rust scheduler's function runner:
            # not part of the intake
            assert client.run_on_scheduler(count_tasks) == 0
            with PeakSampler(proc.pid) as peak:
                t0 = time.perf_counter()
                future = client.compute(x)
                while client.run_on_scheduler(count_tasks) < n:
                    time.sleep(0.1)
                intake = time.perf_counter() - t0
                time.sleep(0.5)  # the helper's last chunk and its clean-up
            del future
            return {
                "scheduler": variant,
                "tasks": n,
                "intake_s": intake,
                "peak_rss_mib": peak.rss / 2**20,
                "peak_pss_mib": peak.pss / 2**20,
                "processes": peak.processes,
            }
    finally:
        local_scheduler.stop([proc])


def summary(rows: list[dict]) -> list[str]:
    lines = [
        "| scheduler | tasks | intake [s] | peak RSS [MiB] | peak PSS [MiB] | "
        "intake / Python's | PSS / Python's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(variant, field, digits):
        vals = [r[field] for r in rows if r["scheduler"] == variant]
        med = median_of(rows, variant, field)
        return f"{med:.{digits}f} ({min(vals):.{digits}f}–{max(vals):.{digits}f})"

    for v in VARIANTS:
        if not any(r["scheduler"] == v for r in rows):
            continue
        tasks = next(r["tasks"] for r in rows if r["scheduler"] == v)
        intake = median_of(rows, v, "intake_s") / median_of(rows, "python", "intake_s")
        pss = median_of(rows, v, "peak_pss_mib") / median_of(rows, "python", "peak_pss_mib")
        lines.append(
            f"| {v} | {tasks:,} | {cell(v, 'intake_s', 2)} | {cell(v, 'peak_rss_mib', 0)} | "
            f"{cell(v, 'peak_pss_mib', 0)} | {intake:.2f} | {pss:.2f} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = alternate(
        args.rounds,
        lambda variant: one_round(variant, args.chunks),
        lambda row: (
            f"{row['tasks']} tasks: intake {row['intake_s']:.2f} s, "
            f"peak RSS {row['peak_rss_mib']:.0f} MiB, PSS {row['peak_pss_mib']:.0f} MiB "
            f"({row['processes']} processes)"
        ),
        impls=VARIANTS,
    )
    print("\n".join(summary(rows)))
    if args.out:
        args.out.write_text(json.dumps({"chunks": args.chunks, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

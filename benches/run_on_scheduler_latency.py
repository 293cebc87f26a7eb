#!/usr/bin/env python
"""Latency of ``Client.run_on_scheduler`` against each scheduler: the first
call (here it starts the function runner, a Python process) and then
``--calls`` calls of ``len("abc")`` one after another, medians and the 10th
and 90th percentiles. The schedulers alternate, ``--rounds`` times each,
each round on a fresh scheduler with no workers.

    .venv/bin/python benches/run_on_scheduler_latency.py [--calls 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from local_scheduler import alternate, median_of, start


def one_round(impl: str, calls: int) -> dict:
    from distributed import Client

    proc, address = start(impl)
    try:
        with Client(address, timeout=60) as client:
            t0 = time.perf_counter()
            assert client.run_on_scheduler(len, "abc") == 3
            first = time.perf_counter() - t0
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                client.run_on_scheduler(len, "abc")
                lat.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lat.sort()
    return {
        "scheduler": impl,
        "first_ms": first * 1e3,
        "median_ms": statistics.median(lat) * 1e3,
        "p10_ms": lat[len(lat) // 10] * 1e3,
        "p90_ms": lat[len(lat) * 9 // 10] * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = alternate(
        args.rounds,
        lambda impl: one_round(impl, args.calls),
        lambda row: (
            f"first call {row['first_ms']:7.1f} ms, then median {row['median_ms']:.2f} ms "
            f"(p10 {row['p10_ms']:.2f}, p90 {row['p90_ms']:.2f})"
        ),
    )
    ratio = median_of(rows, "rust", "median_ms") / median_of(rows, "python", "median_ms")
    print(f"median latency ratio rust/python: {ratio:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"calls": args.calls, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

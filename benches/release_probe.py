#!/usr/bin/env python
"""Where the time goes when a client releases N persisted keys at once (the
"release all" column of simbench's scale part): the client's, the
scheduler's (process tree) and the load driver's CPU between the client's
``del x`` and the simulated workers' last ``free-keys``.

    .venv/bin/python benches/release_probe.py 200000 rust
    .venv/bin/python benches/release_probe.py 200000 python

One fresh scheduler and 8 simulated workers (``dask-loaddriver``) per run;
run the two schedulers alternately and compare the CPU columns, not one
wall time against another.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import dask.array as da  # noqa: E402
import psutil  # noqa: E402
from distributed import Client, wait  # noqa: E402

import simbench as sb  # noqa: E402


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("impl", choices=["rust", "python"])
    args = ap.parse_args()
    ns = argparse.Namespace(
        python=str(REPO / ".venv" / "bin" / "python"),
        rust_bin_copy=str(REPO / "target" / "release" / "dask-scheduler"),
        driver_copy=str(REPO / "target" / "release" / "dask-loaddriver"),
        materializer_pool_size=None,
    )
    tmp = Path(tempfile.mkdtemp(prefix="release-probe-"))
    sched = sb.Sched(args.impl, ns, tmp, "rel")
    drv = client = None
    try:
        drv = sb.Driver(ns.driver_copy, sched.address, 8, 4, 20000, tmp / "drv.log")
        drv.wait_registered(60)
        client = Client(sched.address, timeout=30)
        x = client.persist(da.ones((args.n,), chunks=1))
        drv.wait_for("computed", args.n, 600)
        wait(x, timeout=600)
        time.sleep(1)
        driver = psutil.Process(drv.popen.pid)
        c0, s0, d0 = own_cpu(), sched.cpu(), sum(driver.cpu_times()[:2])
        t0 = time.time()
        del x
        t1 = drv.wait_for("freed", args.n, 600)["last_free"]
        time.sleep(0.5)
        c1, s1, d1 = own_cpu(), sched.cpu(), sum(driver.cpu_times()[:2])
        print(
            f"{args.impl} n={args.n}: release {t1 - t0:.2f} s; client CPU {c1 - c0:.2f} s, "
            f"scheduler CPU {s1 - s0:.2f} s, driver CPU {d1 - d0:.2f} s",
            flush=True,
        )
    finally:
        if client is not None:
            client.close()
        if drv is not None:
            drv.close()
        sched.close()


if __name__ == "__main__":
    main()

"""Does every result stay right while workers die under the scheduler? A
load test with real parts: three ``dask worker --nanny`` processes, three
clients (threads) submitting random DAGs of 5-200 tasks and checking every
result against a value computed here, a fifth of the graphs cancelled soon
after submission, and a worker process killed (SIGKILL; its nanny starts a
new one) every 2-6 s.

Reported per scheduler: graphs submitted, cancelled and checked, wrong
results (must be 0), other errors, `KilledWorker`s (legitimate under this
chaos, counted apart), kills, and whether the scheduler was still alive and
answering at the end. The schedulers take turns, each with a fresh cluster.

    .venv/bin/python benches/chaos_soak.py --seconds 240
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from local_scheduler import IMPLS, PYTHON, quiet, start, stop  # noqa: E402


def inc(x):
    time.sleep(random.random() * 0.01)
    return x + 1


def add(*xs):
    time.sleep(random.random() * 0.01)
    return sum(xs)


def random_graph(r: random.Random, tag: str):
    """A random DAG of delayed tasks (each depends on up to 3 earlier ones),
    5 of its keys to compute, and their expected values."""
    import dask

    n = r.randint(5, 200)
    tasks, values = [], []
    for i in range(n):
        deps = r.sample(range(i), min(i, r.randint(0, 3)))
        if deps:
            tasks.append(dask.delayed(add)(*[tasks[d] for d in deps], dask_key_name=f"{tag}-{i}"))
            values.append(sum(values[d] for d in deps))
        else:
            tasks.append(dask.delayed(inc)(i, dask_key_name=f"{tag}-{i}"))
            values.append(i + 1)
    outs = r.sample(range(n), min(n, 5))
    return [tasks[o] for o in outs], [values[o] for o in outs]


def user(address: str, uid: int, deadline: float, seed: int, stats: dict, lock: threading.Lock):
    from distributed import Client

    r = random.Random(seed * 1000 + uid)
    with Client(address, timeout=60, set_as_default=False) as c:
        g = 0
        while time.time() < deadline:
            g += 1
            collections, want = random_graph(r, f"u{uid}-g{g}-{r.random()}")
            futures = c.compute(collections)
            with lock:
                stats["graphs"] += 1
            if r.random() < 0.2:
                time.sleep(r.random() * 0.1)
                c.cancel(futures)
                with lock:
                    stats["cancelled"] += 1
                continue
            try:
                got = c.gather(futures)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                kind = "killed_worker" if type(e).__name__ == "KilledWorker" else "errors"
                with lock:
                    stats[kind] += 1
                    if kind == "errors":
                        stats["error_samples"].append(f"{type(e).__name__}: {e}"[:300])
                continue
            with lock:
                if got == want:
                    stats["checked"] += 1
                else:
                    stats["wrong"] += 1
                    stats["error_samples"].append(f"wrong: {got} != {want}"[:300])


def killer(address: str, deadline: float, seed: int, stats: dict, lock: threading.Lock):
    from distributed import Client

    r = random.Random(seed)
    with Client(address, timeout=60, set_as_default=False) as c:
        while time.time() < deadline:
            time.sleep(r.uniform(2, 6))
            try:
                pids = c.run(os.getpid)
                os.kill(r.choice(sorted(pids.values())), signal.SIGKILL)
                with lock:
                    stats["kills"] += 1
            except Exception as e:  # noqa: BLE001 - a worker may be restarting
                print(f"  killer: {type(e).__name__}: {e}", flush=True)


def run(impl: str, seconds: float, seed: int) -> dict:
    from distributed import Client

    sched, address = start(impl)
    logdir = tempfile.mkdtemp(prefix="chaos-")
    workers = [
        subprocess.Popen(
            [str(PYTHON), "-m", "distributed.cli.dask_worker", address, "--nanny",
             "--nthreads", "2", "--no-dashboard", "--name", f"w{i}",
             "--local-directory", os.path.join(logdir, f"w{i}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=quiet()["env"])
        for i in range(3)
    ]
    stats = {"scheduler": impl, "graphs": 0, "cancelled": 0, "checked": 0, "wrong": 0,
             "errors": 0, "killed_worker": 0, "kills": 0, "error_samples": []}
    lock = threading.Lock()
    try:
        with Client(address, timeout=60, set_as_default=False) as c:
            c.wait_for_workers(3, timeout=120)
        deadline = time.time() + seconds
        threads = [threading.Thread(target=user, args=(address, u, deadline, seed, stats, lock))
                   for u in range(3)]
        threads.append(threading.Thread(target=killer, args=(address, deadline, seed, stats, lock)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with Client(address, timeout=60, set_as_default=False) as c:
            stats["alive_after"] = c.submit(inc, 1, pure=False).result(timeout=60) == 2
    finally:
        stop(workers)
        stats["scheduler_exit"] = sched.poll()
        stop([sched])
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=IMPLS)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    rows = []
    for impl in [args.only] if args.only else IMPLS:
        row = run(impl, args.seconds, args.seed)
        rows.append(row)
        shown = {k: v for k, v in row.items() if k != "error_samples"}
        print(f"{impl:6s} {shown}", flush=True)
        for sample in row["error_samples"][:10]:
            print(f"         {sample}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    sys.exit(1 if any(r["wrong"] or not r.get("alive_after") for r in rows) else 0)


if __name__ == "__main__":
    main()

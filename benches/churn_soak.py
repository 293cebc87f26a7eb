"""Does a long-lived scheduler keep its memory while clients and workers come
and go? The situation of a scheduler in a Kubernetes cluster that autoscales
for days.

For each scheduler (this one and Python's, alternating), ``--rounds`` rounds
of: a worker joins (a real ``dask worker``), a new client submits a map of
``--tasks`` small tasks and their sum, gathers the result and closes, and
the oldest worker leaves once more than two are up (killed, every third one,
else closed cleanly). The scheduler's resident memory is read after every
round: its process's, and its process tree's (this scheduler's Python
helpers included). Reported: the RSS after the warm-up rounds, at the
end, and the growth per round over the rounds after the warm-up (least
squares). Growth that does not level off is a leak: what each departed
client and worker leaves behind (event topics, host records, metrics).

    .venv/bin/python benches/churn_soak.py --rounds 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_scheduler import PYTHON, alternate, quiet  # noqa: E402
from local_scheduler import start as start_scheduler  # noqa: E402

WARMUP = 5


def inc(x):
    return x + 1


def rss_of(proc: subprocess.Popen) -> tuple[int, int]:
    """Resident bytes of the scheduler process, and of its process tree
    (with this scheduler's Python helpers)."""
    try:
        p = psutil.Process(proc.pid)
        own = p.memory_info().rss
        return own, own + sum(c.memory_info().rss for c in p.children(recursive=True))
    except psutil.NoSuchProcess:
        return 0, 0


LOGS = Path(tempfile.mkdtemp(prefix="churn-soak-"))


def start_worker(address: str, name: str) -> subprocess.Popen:
    argv = [
        str(PYTHON), "-m", "distributed.cli.dask_worker", address,
        "--nthreads", "1", "--no-nanny", "--no-dashboard", "--memory-limit", "0",
        "--host", "127.0.0.1", "--name", name,
    ]
    log = open(LOGS / f"{name}.log", "w")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=quiet()["env"])


def slope(ys: list[float]) -> float:
    """Least-squares growth per step."""
    n = len(ys)
    if n < 2:
        return 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run(impl: str, rounds: int, tasks: int) -> dict:
    from distributed import Client

    sched, address = start_scheduler(impl)
    workers: list[subprocess.Popen] = []
    leaving: list[subprocess.Popen] = []
    rss: list[int] = []
    tree: list[int] = []
    t0 = time.perf_counter()
    try:
        for r in range(rounds):
            workers.append(start_worker(address, f"{impl}-{r}"))
            with Client(address, timeout=30) as client:
                client.wait_for_workers(min(len(workers), 2), timeout=60)
                futures = client.map(inc, range(tasks), key=[f"soak-{r}-{i}" for i in range(tasks)])
                total = client.submit(sum, futures, key=f"soak-sum-{r}")
                assert total.result(timeout=120) == tasks * (tasks + 1) // 2
                del futures, total
            if len(workers) > 2:
                gone = workers.pop(0)
                if r % 3 == 0:
                    gone.kill()
                else:
                    gone.terminate()
                # not waited for: a worker closing after SIGTERM can take
                # its 30 s close timeout (with either scheduler)
                leaving.append(gone)
            time.sleep(0.2)
            own, whole = rss_of(sched)
            rss.append(own)
            tree.append(whole)
    finally:
        for w in workers + leaving:
            w.kill()
            w.wait()
        sched.terminate()
        try:
            sched.wait(15)
        except subprocess.TimeoutExpired:
            sched.kill()
    w = min(WARMUP, len(rss)) - 1
    return {
        "scheduler": impl,
        "rounds": rounds,
        "tasks_per_round": tasks,
        "seconds": time.perf_counter() - t0,
        "rss_after_warmup_mib": rss[w] / 2**20,
        "rss_end_mib": rss[-1] / 2**20,
        "growth_kib_per_round": slope([x / 1024 for x in rss[WARMUP:]]),
        "tree_rss_after_warmup_mib": tree[w] / 2**20,
        "tree_rss_end_mib": tree[-1] / 2**20,
        "tree_growth_kib_per_round": slope([x / 1024 for x in tree[WARMUP:]]),
        "rss_mib": [round(x / 2**20, 1) for x in rss],
        "tree_rss_mib": [round(x / 2**20, 1) for x in tree],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of both schedulers")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--only", choices=("rust", "python"), help="run one scheduler alone")
    args = ap.parse_args()
    rows = alternate(
        args.repeat,
        lambda impl: run(impl, args.rounds, args.tasks),
        lambda r: (
            f"process RSS {r['rss_after_warmup_mib']:.1f} MiB after {WARMUP} rounds, "
            f"{r['rss_end_mib']:.1f} MiB after {r['rounds']}, "
            f"growth {r['growth_kib_per_round']:.0f} KiB/round; with helpers "
            f"{r['tree_rss_after_warmup_mib']:.1f} -> {r['tree_rss_end_mib']:.1f} MiB, "
            f"{r['tree_growth_kib_per_round']:.0f} KiB/round ({r['seconds']:.0f} s)"
        ),
        impls=(args.only,) if args.only else ("rust", "python"),
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

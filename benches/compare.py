#!/usr/bin/env python
"""Side-by-side benchmark: the Python Dask scheduler vs the Rust ``dask-scheduler``.

Both schedulers run in the SAME invocation on the same machine.  For every
graph, each scheduler gets a fresh cluster: the scheduler and 4 ``dask worker
--nthreads 1 --no-nanny --memory-limit 0`` processes on 127.0.0.1 (random free
ports, own process groups).  Both clusters are warmed up, then the timed runs
alternate between them (ABBA order) while memory and CPU are sampled; after
each run the workers' own transfer counters are read, and the result is
verified against a local computation.  Everything is bounded in time and torn
down (SIGTERM, then SIGKILL of the process groups).

Usage::

    /work/venv/bin/python benches/compare.py [--quick] [--repeat 3]
        [--out benches/results/compare-full.json] [--graphs array_sum,matmul]

Writes the raw numbers as JSON (``--out``) and the Markdown summary table to
``benches/results/latest.md`` (``--md``), and prints the table.  Exit status:
0 all good, 1 some run failed or timed out (recorded in the results, with the
scheduler's log tail), 2 some run computed a WRONG result.

See ``benches/README.md`` for what each metric means and the caveats.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_funcs as bf  # noqa: E402

HOST = "127.0.0.1"
N_WORKERS = 4
SAMPLE_INTERVAL = 0.05  # seconds between RSS samples
PSS_INTERVAL = 0.2  # seconds between PSS samples (reading smaps_rollup walks the page tables)
STARTUP_TIMEOUT = 60.0
MiB = 1024 * 1024

# Environment that the Nanny would give a worker process (distributed.yaml,
# nanny.pre-spawn-environ); with --no-nanny we set it ourselves so that BLAS
# does not oversubscribe the 2 cores and glibc returns freed memory.
WORKER_ENV = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def log(msg: str) -> None:
    ts = time.strftime("%H:%M:%S")
    print(f"[{ts}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# processes


_LIVE: list["Proc"] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class Proc:
    """A child in its own session (process group), logging to a file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]):
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self._log.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.ps = psutil.Process(self.pid)
        _LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def finish(self) -> None:
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if self in _LIVE:
            _LIVE.remove(self)


def stop_procs(procs: list[Proc], grace: float = 5.0) -> None:
    """SIGTERM every process group, wait up to ``grace``, SIGKILL the groups."""
    procs = [p for p in procs if p in _LIVE]
    for p in procs:
        if p.alive():
            p.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        p.signal_group(signal.SIGKILL)  # also reaps helpers left in the group
    for p in procs:
        p.finish()


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_LIVE):
        p.signal_group(signal.SIGKILL)


def _on_signal(signum, frame):  # make Ctrl-C / SIGTERM clean up too
    _kill_leftovers()
    raise SystemExit(128 + signum)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
    )
    if extra:
        env.update(extra)
    return env


def process_tree_cpu(ps: psutil.Process, split: bool = False):
    """CPU seconds (user+system) of a process, its reaped children and its live
    descendants.  A delta of this over a run is the CPU the tree spent in it.
    With ``split``: (own, descendants)."""
    try:
        t = ps.cpu_times()
        own = t.user + t.system
        total = own + t.children_user + t.children_system
    except psutil.Error:
        return (float("nan"), float("nan")) if split else float("nan")
    try:
        kids = ps.children(recursive=True)
    except psutil.Error:
        kids = []
    for k in kids:
        try:
            kt = k.cpu_times()
            total += kt.user + kt.system
        except psutil.Error:
            pass
    return (own, total - own) if split else total


def process_cpu_self() -> float:
    """CPU seconds of this (client) process, without its children."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def rss(ps: psutil.Process) -> int:
    try:
        return ps.memory_info().rss
    except psutil.Error:
        return 0


def pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (Linux ``smaps_rollup``): pages
    shared with other processes, e.g. a forked child's, count once among them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Cluster:
    """One scheduler (Python or Rust) + N_WORKERS workers + one client."""

    def __init__(self, impl: str, args, tmp: Path, tag: str):
        self.impl = impl
        self.tag = tag
        self.runs = 0
        self.setup_s = None
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.workers: list[Proc] = []
        self.client = None
        self.port = free_port()
        self.dash_port = free_port()
        self.address = f"tcp://{HOST}:{self.port}"
        if impl == "python":
            argv = [args.python, "-m", "distributed.cli.dask_scheduler"]
        else:
            argv = [args.rust_bin_copy]
        argv += [
            "--host", HOST,
            "--port", str(self.port),
            "--dashboard-address", f"{HOST}:{self.dash_port}",
        ]
        if impl == "rust":
            argv += ["--python", args.python]
            if args.materializer_pool_size:
                argv += ["--materializer-pool-size", str(args.materializer_pool_size)]
        self.scheduler = Proc(argv, tmp / f"{tag}-scheduler.log", child_env())
        self.procs.append(self.scheduler)

    def start(self, args) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not port_open(self.port):
            if not self.scheduler.alive():
                raise RuntimeError(
                    f"{self.impl} scheduler exited with {self.scheduler.popen.returncode} "
                    "before listening"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.impl} scheduler did not listen within {STARTUP_TIMEOUT}s")
            time.sleep(0.05)
        for i in range(N_WORKERS):
            wdir = self.tmp / f"w{i}-{self.port}"
            argv = [
                args.python, "-m", "distributed.cli.dask_worker", self.address,
                "--nthreads", "1", "--no-nanny", "--memory-limit", "0",
                "--host", HOST, "--no-dashboard", "--name", f"bench-{i}",
                "--local-directory", str(wdir), "--death-timeout", "30",
            ]
            w = Proc(argv, self.tmp / f"{self.scheduler.log_path.stem}-w{i}.log",
                     child_env(WORKER_ENV))
            self.procs.append(w)
            self.workers.append(w)
        from distributed import Client

        self.client = Client(self.address, timeout=30, set_as_default=False)
        self.client.wait_for_workers(N_WORKERS, timeout=STARTUP_TIMEOUT)
        for w in self.workers:
            if not w.alive():
                raise RuntimeError(f"worker died at startup:\n{w.log_tail(20)}")

    def kill_now(self) -> None:
        for p in self.procs:
            p.signal_group(signal.SIGKILL)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close(timeout=10)
            except Exception:
                pass
            self.client = None
        stop_procs(self.procs)


# ---------------------------------------------------------------------------
# sampling


class Sampler(threading.Thread):
    """Every SAMPLE_INTERVAL: RSS of each worker and of the scheduler plus all
    its descendants (the Rust scheduler's materializer helpers); every
    PSS_INTERVAL also the PSS of the scheduler plus its descendants, which
    counts the pages a helper shares with its forked ``dask.order`` child once."""

    def __init__(self, scheduler: psutil.Process, workers: list[psutil.Process]):
        super().__init__(daemon=True)
        self.sched = scheduler
        self.workers = workers
        self.stop_event = threading.Event()
        self.n = 0
        self.worker_peak = [0] * len(workers)
        self.worker_sum_peak = 0
        self.sched_peak = 0
        self.sched_self_peak = 0
        self.sched_children_peak = 0
        self.sched_pss_peak = 0
        self._pss_at = 0.0
        self.max_children = 0
        self._kids: list[psutil.Process] = []
        self._kids_at = 0.0

    def _sample(self) -> None:
        now = time.monotonic()
        if now - self._kids_at > 0.5:
            try:
                self._kids = self.sched.children(recursive=True)
            except psutil.Error:
                self._kids = []
            self._kids_at = now
        ws = [rss(w) for w in self.workers]
        for i, v in enumerate(ws):
            self.worker_peak[i] = max(self.worker_peak[i], v)
        self.worker_sum_peak = max(self.worker_sum_peak, sum(ws))
        own = rss(self.sched)
        kids = sum(rss(k) for k in self._kids)
        self.sched_self_peak = max(self.sched_self_peak, own)
        self.sched_children_peak = max(self.sched_children_peak, kids)
        self.max_children = max(self.max_children, len(self._kids))
        self.sched_peak = max(self.sched_peak, own + kids)
        if now - self._pss_at >= PSS_INTERVAL:
            total = pss(self.sched.pid) + sum(pss(k.pid) for k in self._kids)
            self.sched_pss_peak = max(self.sched_pss_peak, total)
            self._pss_at = now
        self.n += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            self._sample()
            self.stop_event.wait(SAMPLE_INTERVAL)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(5)
        self._sample()


# ---------------------------------------------------------------------------
# graphs


def graph_len(*collections) -> int:
    """Number of tasks the scheduler materializes for ``client.compute(...)``:
    what ``Client._graph_to_futures`` sends (FinalizeCompute + optimize) and
    ``Scheduler.update_graph`` lowers with ``expr.__dask_graph__()``."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    expr = collections_to_expr(list(collections), True)
    if len(collections) == 1:
        expr = FinalizeCompute(expr)
    return len(expr.optimize().__dask_graph__())


@dataclass
class Graph:
    name: str
    title: str
    full: dict
    quick: dict
    build: Callable[[dict], "Work"]
    max_repeat: int = 1 << 30  # cap on --repeat (for compatibility probes)


@dataclass
class Work:
    """One instance of a graph."""

    run: Callable[[Any], Any]  # client -> result (blocking, bounded)
    check: Callable[[Any], None]  # raises AssertionError on a wrong result
    n_tasks: int | None  # None: count_tasks() under the cluster's client (first warm-up)
    warm: Callable[[Any], None]
    description: str
    imports: tuple = ("numpy",)  # modules to import on the workers before timing
    count_tasks: Callable[[], int] | None = None


def _compute(client, coll, timeout):
    fut = client.compute(coll)
    try:
        return fut.result(timeout=timeout)
    finally:
        fut.release()


def _warm_separately(client, collections, timeout=120):
    """Compute each collection with its own ``client.compute`` call, all in
    flight at once: one ``update-graph`` each, so that on the Rust scheduler
    several materializer helpers (not just one) import what the graph needs."""
    futs = [client.compute(c) for c in collections]
    client.gather(futs, errors="raise")
    for f in futs:
        f.release()


_REF_CACHE: dict[str, Any] = {}


def build_array_sum(p):
    import dask.array as da

    n, c, seed = p["n"], p["chunks"], 42
    x = da.random.default_rng(seed).random((n, n), chunks=c)
    s = x.sum()
    key = f"array_sum-{n}-{c}"
    if key not in _REF_CACHE:
        _REF_CACHE[key] = float(s.compute(scheduler="threads"))
    ref = _REF_CACHE[key]

    def check(r):
        assert math.isclose(float(r), ref, rel_tol=1e-9), f"sum {r!r} != local {ref!r}"

    def warm(client):
        small = [da.random.default_rng(1).random((400, 400), chunks=100).sum() for _ in range(2)]
        _warm_separately(client, small)

    return Work(
        run=lambda client: _compute(client, s, p["timeout"]),
        check=check,
        n_tasks=None,
        count_tasks=lambda: graph_len(s),
        warm=warm,
        imports=("numpy", "dask.array"),
        description=f"da.random.default_rng(42).random(({n},{n}), chunks={c}).sum()",
    )


def build_matmul(p):
    import dask.array as da
    import numpy as np

    n, c = p["n"], p["chunks"]
    x = da.random.default_rng(7).random((n, n), chunks=c)
    y = x @ x.T
    key = f"matmul-{n}-{c}"
    if key not in _REF_CACHE:
        xl = x.compute(scheduler="threads")
        _REF_CACHE[key] = xl @ xl.T
    ref = _REF_CACHE[key]

    def check(r):
        assert isinstance(r, np.ndarray) and r.shape == ref.shape, f"bad result {type(r)} {getattr(r, 'shape', None)}"
        assert np.allclose(r, ref, rtol=1e-9, atol=1e-9), "x @ x.T differs from local numpy"

    def warm(client):
        xs = [da.random.default_rng(2).random((300, 300), chunks=100) for _ in range(2)]
        _warm_separately(client, [(a @ a.T).sum() for a in xs])

    return Work(
        run=lambda client: _compute(client, y, p["timeout"]),
        check=check,
        n_tasks=None,
        count_tasks=lambda: graph_len(y),
        warm=warm,
        imports=("numpy", "dask.array"),
        description=f"x = da.random.default_rng(7).random(({n},{n}), chunks={c}); x @ x.T (result gathered)",
    )


def _tree(leaves):
    from dask import delayed

    level = leaves
    while len(level) > 1:
        nxt = [delayed(bf.add)(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def build_delayed_tree(p):
    import numpy as np
    from dask import delayed

    n, size = p["leaves"], p["leaf_elems"]
    leaves = [delayed(bf.make_leaf)(i, size) for i in range(n)]
    root = _tree(leaves)
    expect = float(sum(range(n)))

    def check(r):
        assert isinstance(r, np.ndarray) and r.shape == (size,), f"bad result {type(r)}"
        assert np.all(r == expect), f"tree sum {r[:3]} != {expect}"

    def warm(client):
        small = [_tree([delayed(bf.make_leaf)(i + 10 * j, 100) for i in range(16)]) for j in range(2)]
        _warm_separately(client, small)

    return Work(
        run=lambda client: _compute(client, root, p["timeout"]),
        check=check,
        n_tasks=None,
        count_tasks=lambda: graph_len(root),
        warm=warm,
        description=(
            f"{n} delayed leaves np.full({size}, i) ({size * 8 // 1024} KiB each), "
            "binary tree of add"
        ),
    )


def build_df_groupby(p):
    import dask
    import numpy as np

    kw = dict(start="2000-01-01", end=p["end"], freq=p["freq"],
              partition_freq=p["partition_freq"], seed=11)
    split_out = p.get("split_out", "default")
    df = dask.datasets.timeseries(**kw)
    shuffle = p.get("shuffle")
    if shuffle:
        g = df.groupby("name").x.sum(shuffle_method=shuffle)
        call = f".groupby('name').x.sum(shuffle_method={shuffle!r})"
    elif split_out == "default":
        # exactly ``groupby("name").x.sum()``: dask picks split_out from the
        # number of partitions, and for split_out > 1 it shuffles (P2P under
        # a distributed client)
        g = df.groupby("name").x.sum()
        call = ".groupby('name').x.sum()"
    else:
        g = df.groupby("name").x.sum(split_out=split_out)
        call = f".groupby('name').x.sum(split_out={split_out})"
    key = f"df-{split_out}-{shuffle}-" + json.dumps(kw, sort_keys=True)
    if key not in _REF_CACHE:
        _REF_CACHE[key] = g.compute(scheduler="threads").sort_index()
    ref = _REF_CACHE[key]

    def check(r):
        r = r.sort_index()
        assert list(r.index) == list(ref.index), "groupby keys differ from local"
        assert np.allclose(r.values, ref.values, rtol=1e-9, atol=1e-6), "groupby sums differ from local"

    def warm(client):
        small = [
            dask.datasets.timeseries(start="2000-01-01", end="2000-01-03", freq="60s",
                                     partition_freq="1D", seed=s).groupby("name").x.sum(split_out=1)
            for s in (1, 2)
        ]
        _warm_separately(client, small)

    return _dataframe_work(g, p["timeout"], check, warm,
                           f"dask.datasets.timeseries({kw}){call} ({df.npartitions} partitions)")


def _dataframe_work(g, timeout, check, warm, description):
    """A dataframe collection computed once per run, its tasks counted as sent."""
    return Work(
        run=lambda client: _compute(client, g, timeout),
        check=check,
        n_tasks=None,
        count_tasks=lambda: graph_len(g),
        warm=warm,
        imports=("numpy", "pandas", "pyarrow", "dask.dataframe"),
        description=description,
    )


def build_df_shuffle(p):
    """``df.shuffle("id")`` with dask's default method (P2P under a
    distributed client with pyarrow), checked by counting each partition's
    distinct ids: after a correct shuffle every id lives in one partition."""
    import dask

    kw = dict(start="2000-01-01", end=p["end"], freq=p["freq"],
              partition_freq=p["partition_freq"], seed=13)
    df = dask.datasets.timeseries(**kw)
    g = df.shuffle("id").map_partitions(lambda part: part.id.nunique()).sum()
    key = "df-shuffle-" + json.dumps(kw, sort_keys=True)
    if key not in _REF_CACHE:
        _REF_CACHE[key] = int(df.id.nunique().compute(scheduler="threads"))
    ref = _REF_CACHE[key]

    def check(r):
        assert int(r) == ref, f"{int(r)} ids over the partitions, {ref} distinct: not shuffled"

    def warm(client):
        small = dask.datasets.timeseries(start="2000-01-01", end="2000-01-03", freq="60s",
                                         partition_freq="1D", seed=3)
        _warm_separately(client, [small.shuffle("id").map_partitions(len).sum()])

    return _dataframe_work(
        g, p["timeout"], check, warm,
        f"dask.datasets.timeseries({kw}).shuffle('id') then distinct ids per partition, "
        f"summed ({df.npartitions} partitions; dask's default method: P2P)")


def build_map_inc(p):
    n = p["n"]
    expect = sum(x + 1 for x in range(n))

    def run(client):
        futs = client.map(bf.inc, range(n))
        tot = client.submit(bf.sum_list, futs)
        try:
            return tot.result(timeout=p["timeout"])
        finally:
            tot.release()
            for f in futs:
                f.release()
            del futs

    def check(r):
        assert r == expect, f"sum of map(inc) {r!r} != {expect}"

    def warm(client):
        a = client.map(bf.inc, range(100, 300))
        b = client.map(bf.inc, range(300, 500))
        ta, tb = client.submit(bf.sum_list, a), client.submit(bf.sum_list, b)
        assert ta.result(timeout=60) == sum(range(101, 301))
        assert tb.result(timeout=60) == sum(range(301, 501))

    return Work(run=run, check=check, n_tasks=n + 1, warm=warm,
                description=f"client.map(inc, range({n})) then client.submit(sum, futures).result()")


def build_overhead_map(p):
    from distributed import wait

    n = p["n"]

    def run(client):
        futs = client.map(bf.noop, range(n))
        done = wait(futs, timeout=p["timeout"])
        bad = [f for f in done.done if f.status != "finished"]
        # outside the timed window would be nicer, but the futures must be
        # released before the teardown anyway; counting is cheap
        n_ok = n - len(bad) - len(done.not_done)
        for f in futs:
            f.release()
        return n_ok

    def check(r):
        assert r == n, f"only {r} of {n} no-op tasks finished"

    def warm(client):
        wait(client.map(bf.noop, range(-200, -100)) + client.map(bf.noop, range(-100, 0)), timeout=60)

    return Work(run=run, check=check, n_tasks=n, warm=warm,
                description=f"client.map(noop, range({n})); wait(futures)")


def build_overhead_delayed(p):
    from dask import delayed

    chains, length = p["chains"], p["length"]

    def graph(c, n, off=0):
        ends = []
        for j in range(c):
            t = delayed(bf.inc)(off + j)
            for _ in range(n - 1):
                t = delayed(bf.inc)(t)
            ends.append(t)
        return delayed(bf.sum_list)(ends)

    root = graph(chains, length)
    expect = sum(j + length for j in range(chains))

    def check(r):
        assert r == expect, f"delayed chains gave {r!r}, expected {expect}"

    def warm(client):
        _warm_separately(client, [graph(20, 10, 1000 * k) for k in range(1, 3)])

    return Work(
        run=lambda client: _compute(client, root, p["timeout"]),
        check=check,
        n_tasks=None,
        count_tasks=lambda: graph_len(root),
        warm=warm,
        description=f"{chains} independent chains of {length} delayed inc tasks + one final sum",
    )


def build_split_every(p):
    """A 1-D array of ``chunks`` small chunks reduced with ``sum(split_every=k)``:
    a deep, narrow tree reduction (issue 4, point 3)."""
    import dask.array as da

    nc, ce, k = p["chunks"], p["chunk_elems"], p["split_every"]
    x = da.random.default_rng(5).random((nc * ce,), chunks=ce)
    s = x.sum(split_every=k)
    key = f"split_every-{nc}-{ce}-{k}"
    if key not in _REF_CACHE:
        _REF_CACHE[key] = float(s.compute(scheduler="threads"))
    ref = _REF_CACHE[key]

    def check(r):
        assert math.isclose(float(r), ref, rel_tol=1e-9), f"sum {r!r} != local {ref!r}"

    def warm(client):
        small = [da.random.default_rng(j).random((4000,), chunks=100).sum(split_every=k) for j in (1, 2)]
        _warm_separately(client, small)

    return Work(
        run=lambda client: _compute(client, s, p["timeout"]),
        check=check,
        n_tasks=None,
        count_tasks=lambda: graph_len(s),
        warm=warm,
        imports=("numpy", "dask.array"),
        description=f"da.random.default_rng(5).random(({nc * ce},), chunks={ce}).sum(split_every={k}) ({nc} chunks)",
    )


GRAPHS = [
    Graph("array_sum", "1. array reduction",
          {"n": 10000, "chunks": 500, "timeout": 180}, {"n": 6000, "chunks": 500, "timeout": 120},
          build_array_sum),
    Graph("matmul", "2. x @ x.T",
          {"n": 2000, "chunks": 250, "timeout": 180}, {"n": 1500, "chunks": 250, "timeout": 120},
          build_matmul),
    Graph("delayed_tree", "3. fan-out/fan-in delayed tree",
          {"leaves": 1000, "leaf_elems": 16384, "timeout": 180},
          {"leaves": 500, "leaf_elems": 16384, "timeout": 120},
          build_delayed_tree),
    Graph("df_groupby", "4. dataframe groupby-sum (split_out=1)",
          {"end": "2000-02-01", "freq": "1s", "partition_freq": "12h", "split_out": 1, "timeout": 180},
          {"end": "2000-01-11", "freq": "1s", "partition_freq": "12h", "split_out": 1, "timeout": 120},
          build_df_groupby),
    # Compatibility probe, run once: the default ``groupby("name").x.sum()``
    # picks split_out > 1 for this many partitions and shuffles.
    Graph("df_groupby_default", "4b. dataframe groupby-sum, dask's default split_out",
          {"end": "2000-02-01", "freq": "1s", "partition_freq": "12h", "timeout": 180},
          {"end": "2000-01-11", "freq": "1s", "partition_freq": "12h", "timeout": 120},
          build_df_groupby, max_repeat=1),
    # The workaround the Rust scheduler's error message suggests, measured on both.
    Graph("df_groupby_tasks", "4c. dataframe groupby-sum, default split_out, shuffle_method='tasks'",
          {"end": "2000-02-01", "freq": "1s", "partition_freq": "12h", "shuffle": "tasks", "timeout": 180},
          {"end": "2000-01-11", "freq": "1s", "partition_freq": "12h", "shuffle": "tasks", "timeout": 120},
          build_df_groupby, max_repeat=1),
    Graph("df_shuffle", "4d. dataframe shuffle, dask's default method (P2P)",
          {"end": "2000-02-01", "freq": "1s", "partition_freq": "12h", "timeout": 180},
          {"end": "2000-01-11", "freq": "1s", "partition_freq": "12h", "timeout": 120},
          build_df_shuffle),
    Graph("map_inc", "5. many small tasks (map + sum)",
          {"n": 10000, "timeout": 240}, {"n": 3000, "timeout": 120},
          build_map_inc),
    Graph("overhead_map", "6a. overhead: map of no-op tasks",
          {"n": 10000, "timeout": 240}, {"n": 3000, "timeout": 120},
          build_overhead_map),
    Graph("overhead_delayed", "6b. overhead: delayed graph",
          {"chains": 100, "length": 100, "timeout": 240}, {"chains": 30, "length": 100, "timeout": 120},
          build_overhead_delayed),
    # Issue 4, point 3: the end-to-end workloads (``--graphs issue4`` selects
    # these five: e2e_map, e2e_array_sum, e2e_tree, e2e_split_every, df_groupby).
    Graph("e2e_map", "E1. map of 20k tiny tasks (+ sum)",
          {"n": 20000, "timeout": 300}, {"n": 5000, "timeout": 120},
          build_map_inc),
    Graph("e2e_array_sum", "E2. array sum, 10k chunks",
          {"n": 10000, "chunks": 100, "timeout": 300}, {"n": 5000, "chunks": 100, "timeout": 120},
          build_array_sum),
    Graph("e2e_tree", "E3. delayed tree, 8k tasks",
          {"leaves": 4000, "leaf_elems": 16, "timeout": 300},
          {"leaves": 1000, "leaf_elems": 16, "timeout": 120},
          build_delayed_tree),
    Graph("e2e_split_every", "E4. split_every reduction, 20k chunks",
          {"chunks": 20000, "chunk_elems": 100, "split_every": 8, "timeout": 300},
          {"chunks": 5000, "chunk_elems": 100, "split_every": 8, "timeout": 120},
          build_split_every),
]

# ``--graphs issue4``: the end-to-end set of issue 4, point 3.
ISSUE4_GRAPHS = ["e2e_map", "e2e_array_sum", "e2e_tree", "e2e_split_every", "df_groupby"]


# ---------------------------------------------------------------------------
# one measurement


def counters(client) -> dict:
    return client.run(bf.worker_counters)


def counter_delta(before: dict, after: dict) -> dict:
    out: dict[str, Any] = {"per_worker": {}}
    keys = ("executed_count", "transfer_outgoing_bytes_total", "transfer_outgoing_count_total",
            "transfer_incoming_count_total")
    tot = {k: 0 for k in keys}
    in_log_bytes = 0
    in_log_exact = True
    for addr, a in after.items():
        b = before.get(addr)
        if b is None:
            raise RuntimeError(f"worker {addr} appeared during the run")
        d = {k: a[k] - b[k] for k in keys}
        # the incoming log is a bounded deque: its delta is exact only if it never wrapped
        if a["transfer_incoming_log_len"] < (a["transfer_incoming_log_maxlen"] or 1 << 60):
            d["transfer_incoming_log_bytes"] = a["transfer_incoming_log_bytes"] - b["transfer_incoming_log_bytes"]
            in_log_bytes += d["transfer_incoming_log_bytes"]
        else:
            in_log_exact = False
        out["per_worker"][addr] = d
        for k in keys:
            tot[k] += d[k]
    out.update(tot)
    out["transfer_incoming_log_bytes"] = in_log_bytes if in_log_exact else None
    out["keys_in_memory_after"] = sum(a["n_keys_in_memory"] for a in after.values())
    return out


def system_busy_cpu() -> float:
    """CPU seconds all processes on the machine have been busy (all cores)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def wait_quiet(max_wait: float, threshold: float = 0.25) -> tuple[float, float]:
    """Wait (at most ``max_wait`` s) until the machine is mostly idle: busy
    fraction of all cores below ``threshold`` over 0.5 s.  Returns (waited,
    last busy fraction).  Other sessions share this machine; this only avoids
    starting a run in the middle of someone's compile."""
    t0 = time.monotonic()
    ncpu = os.cpu_count() or 1
    while True:
        b0 = system_busy_cpu()
        time.sleep(0.5)
        busy = (system_busy_cpu() - b0) / (0.5 * ncpu)
        waited = time.monotonic() - t0
        if busy < threshold or waited >= max_wait:
            return waited, busy


def finish_start(cluster: Cluster, work: "Work", args) -> float:
    """Wait for the workers, warm up; returns seconds spent."""
    t0 = time.perf_counter()
    watchdog = threading.Timer(STARTUP_TIMEOUT + 120, cluster.kill_now)
    watchdog.daemon = True
    watchdog.start()
    try:
        cluster.start(args)
        cluster.client.run(bf.warm_imports, list(work.imports))
        with cluster.client.as_current():
            work.warm(cluster.client)
            if work.n_tasks is None:
                work.n_tasks = work.count_tasks()
    finally:
        watchdog.cancel()
    return time.perf_counter() - t0


def failure_details(rec: dict, cluster: Cluster | None, exc: BaseException) -> None:
    rec["ok"] = False
    rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["traceback"] = traceback.format_exc(limit=8)
    if cluster is not None:
        rec["scheduler_log_tail"] = cluster.scheduler.log_tail(80)
        rec["scheduler_alive"] = cluster.scheduler.alive()
        rec["worker_log_tails"] = [w.log_tail(15) for w in cluster.workers]


def read_psi() -> dict[str, int]:
    """Linux pressure-stall totals (microseconds): time some/all tasks waited
    for CPU or memory, machine-wide.  Empty where /proc/pressure is absent."""
    out = {}
    for res in ("cpu", "memory"):
        try:
            with open(f"/proc/pressure/{res}") as f:
                for line in f:
                    kind, *fields = line.split()
                    total = dict(x.split("=") for x in fields)["total"]
                    out[f"{res}_{kind}"] = int(total)
        except (OSError, KeyError, ValueError):
            pass
    return out


def run_once(cluster: Cluster, graph: Graph, work: "Work", p: dict, args, rep: int,
             idle_procs: list[Proc] = ()) -> dict:
    """One timed run of ``work`` on an already started and warmed cluster."""
    impl = cluster.impl
    rec: dict[str, Any] = {"scheduler": impl, "graph": graph.name, "repeat": rep, "params": p,
                           "ok": False, "n_tasks": work.n_tasks, "cluster": cluster.tag,
                           "cluster_run_index": cluster.runs}
    cluster.runs += 1
    watchdog = threading.Timer(p["timeout"] + 90, cluster.kill_now)
    watchdog.daemon = True
    try:
        client = cluster.client
        waited, busy = wait_quiet(args.quiet_wait)
        rec["quiet_wait_s"], rec["machine_busy_before"] = waited, busy
        rec["loadavg_1m_before"] = os.getloadavg()[0]
        before = counters(client)
        time.sleep(0.2)  # let the counters round-trip settle
        sched_ps = cluster.scheduler.ps
        worker_ps = [w.ps for w in cluster.workers]
        sampler = Sampler(sched_ps, worker_ps)
        sampler._sample()
        rec["worker_rss_before_bytes"] = sum(rss(w) for w in worker_ps)
        rec["worker_rss_before_per_worker_bytes"] = [rss(w) for w in worker_ps]
        rec["scheduler_rss_incl_children_before_bytes"] = sampler.sched_peak
        watchdog.start()
        sampler.start()
        cpu_c0 = process_cpu_self()
        cpu_s0, cpu_k0 = process_tree_cpu(sched_ps, split=True)
        idle_ps = [q.ps for q in idle_procs]
        cpu_i0 = sum(process_tree_cpu(q) for q in idle_ps)
        psi0 = read_psi()
        cpu_w0 = sum(process_tree_cpu(w) for w in worker_ps)
        busy0 = system_busy_cpu()
        wall_t0 = time.time()
        t0 = time.perf_counter()
        try:
            with client.as_current():  # dask picks defaults (e.g. shuffle method) as for a real user
                result = work.run(client)
        finally:
            t1 = time.perf_counter()
            busy1 = system_busy_cpu()
            cpu_s1, cpu_k1 = process_tree_cpu(sched_ps, split=True)
            cpu_i1 = sum(process_tree_cpu(q) for q in idle_ps)
            psi1 = read_psi()
            cpu_w1 = sum(process_tree_cpu(w) for w in worker_ps)
            cpu_c1 = process_cpu_self()
            sampler.finish()
            rec["wall_s"] = t1 - t0
            rec["scheduler_cpu_self_s"] = cpu_s1 - cpu_s0
            rec["scheduler_cpu_children_s"] = cpu_k1 - cpu_k0
            rec["scheduler_cpu_s"] = rec["scheduler_cpu_self_s"] + rec["scheduler_cpu_children_s"]
            rec["idle_cluster_cpu_s"] = cpu_i1 - cpu_i0
            rec["psi_delta_s"] = {k: (psi1[k] - psi0[k]) / 1e6 for k in psi0 if k in psi1}
            rec["worker_cpu_s"] = cpu_w1 - cpu_w0
            rec["client_cpu_s"] = cpu_c1 - cpu_c0
            rec["machine_busy_cpu_s"] = busy1 - busy0
            rec["other_cpu_s"] = max(
                0.0, rec["machine_busy_cpu_s"] - rec["scheduler_cpu_s"] - rec["worker_cpu_s"]
                - rec["client_cpu_s"] - rec["idle_cluster_cpu_s"])
            rec["worker_peak_rss_sum_bytes"] = sampler.worker_sum_peak
            rec["worker_peak_rss_per_worker_bytes"] = sampler.worker_peak
            rec["scheduler_peak_rss_bytes"] = sampler.sched_peak
            rec["scheduler_peak_rss_self_bytes"] = sampler.sched_self_peak
            rec["scheduler_peak_rss_children_bytes"] = sampler.sched_children_peak
            rec["scheduler_peak_pss_bytes"] = sampler.sched_pss_peak
            rec["scheduler_children"] = sampler.max_children
            rec["rss_samples"] = sampler.n
        after = counters(client)
        rec["transfer"] = counter_delta(before, after)
        try:
            by_prefix: dict[str, int] = {}
            for per_worker in client.run(bf.incoming_by_prefix, wall_t0).values():
                for k, v in per_worker.items():
                    by_prefix[k] = by_prefix.get(k, 0) + v
            rec["transfer_incoming_by_prefix"] = dict(sorted(by_prefix.items(), key=lambda kv: -kv[1]))
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            rec["transfer_incoming_by_prefix"] = f"unavailable: {exc!r}"
        rec["transfer_bytes"] = rec["transfer"]["transfer_outgoing_bytes_total"]
        rec["executed_tasks"] = rec["transfer"]["executed_count"]
        rec["tasks_per_s"] = work.n_tasks / rec["wall_s"]
        rec["scheduler_cpu_us_per_task"] = rec["scheduler_cpu_s"] / work.n_tasks * 1e6
        try:
            work.check(result)
        except AssertionError as exc:
            rec["wrong_result"] = True
            raise AssertionError(f"WRONG RESULT: {exc}") from exc
        del result
        rec["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - we record everything
        failure_details(rec, cluster, exc)
        rec["timed_out"] = isinstance(exc, TimeoutError) or "timed out" in str(exc).lower()
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        watchdog.cancel()
    return rec


def bench_graph(graph: Graph, work: "Work", impls: list[str], repeat: int, args, tmp: Path,
                gi: int, records: list[dict], on_record: Callable[[dict], None]) -> None:
    """All runs of one graph: a fresh cluster per scheduler (both started
    together, then warmed up), ``repeat`` timed runs each in alternating
    order (ABBA...), and a fresh cluster again after a failed run."""
    p = dict(graph.quick if args.quick else graph.full)
    n = min(repeat, graph.max_repeat)
    clusters: dict[str, Cluster | None] = {}
    dead: dict[str, str] = {}  # impl -> why no more runs

    def fresh(impl: str, k: int) -> None:
        tag = f"{graph.name}-{impl}-c{k}"
        try:
            clusters[impl] = Cluster(impl, args, tmp, tag)
        except Exception as exc:  # noqa: BLE001
            clusters[impl] = None
            dead[impl] = f"scheduler did not start: {type(exc).__name__}: {exc}"

    def ready(impl: str) -> None:
        c = clusters.get(impl)
        if c is None:
            return
        try:
            c.setup_s = finish_start(c, work, args)
        except Exception as exc:  # noqa: BLE001
            rec = {"scheduler": impl, "graph": graph.name, "repeat": -1, "params": p,
                   "phase": "startup/warm-up", "n_tasks": work.n_tasks}
            failure_details(rec, c, exc)
            on_record(rec)
            dead[impl] = f"startup/warm-up failed: {rec['error']}"
            c.close()
            clusters[impl] = None

    started = 0
    try:
        for impl in impls:
            fresh(impl, started)
        for impl in impls:
            ready(impl)
        started += 1
        for rep in range(n):
            order = list(impls)
            if (rep + gi) % 2 == 1:
                order.reverse()
            for impl in order:
                if impl in dead:
                    rec = {"scheduler": impl, "graph": graph.name, "repeat": rep, "params": p,
                           "ok": False, "n_tasks": work.n_tasks, "skipped": True,
                           "error": f"not run: {dead[impl]}"}
                    on_record(rec)
                    continue
                if clusters.get(impl) is None:
                    fresh(impl, started)
                    started += 1
                    ready(impl)
                    if impl in dead:
                        continue
                c = clusters[impl]
                log(f"repeat {rep + 1}/{n} {graph.name:18s} {impl:6s} (cluster {c.tag}, run {c.runs}) ...")
                idle = [q for other, oc in clusters.items() if other != impl and oc is not None
                        for q in oc.procs]
                rec = run_once(c, graph, work, p, args, rep, idle)
                rec["cluster_setup_s"] = getattr(c, "setup_s", None)
                on_record(rec)
                if not rec["ok"]:
                    c.close()
                    clusters[impl] = None
                    if rec.get("timed_out"):
                        dead[impl] = f"an earlier run timed out ({rec['error']})"
    finally:
        for c in clusters.values():
            if c is not None:
                c.close()


# ---------------------------------------------------------------------------
# summary


METRICS = [
    # key, label, unit scale, format, how measured
    ("wall_s", "wall time [s]", 1, "{:.3f}",
     "client-side time from submitting the graph to having the result"),
    ("tasks_per_s", "tasks/s", 1, "{:,.0f}", "n_tasks / wall time"),
    ("transfer_bytes", "worker-to-worker transfer", None, "bytes",
     "sum over workers of the delta of Worker.transfer_outgoing_bytes_total"),
    ("worker_peak_rss_sum_bytes", "peak worker RSS, sum of 4 [MiB]", MiB, "{:.0f}",
     "max over 50 ms psutil samples of the sum of the 4 workers' RSS"),
    ("worker_peak_rss_increase_bytes", "peak worker RSS above pre-run baseline, sum of 4 [MiB]", MiB, "{:.0f}",
     "peak of the sum of the 4 workers' RSS minus that sum just before the run (after warm-up)"),
    ("worker_peak_rss_max_bytes", "peak worker RSS, largest worker [MiB]", MiB, "{:.0f}",
     "max over workers of each worker's own peak RSS"),
    ("scheduler_cpu_s", "scheduler CPU [s]", 1, "{:.3f}",
     "delta of user+system CPU of the scheduler process + all its children"),
    ("scheduler_cpu_self_s", "  of which the scheduler process itself [s]", 1, "{:.3f}",
     "the same, scheduler process only; the rest is its children (the Rust scheduler's Python "
     "graph materializers)"),
    ("scheduler_cpu_us_per_task", "scheduler CPU per task [us]", 1, "{:.0f}",
     "scheduler CPU / n_tasks"),
    ("scheduler_peak_rss_bytes", "scheduler peak RSS incl. children [MiB]", MiB, "{:.0f}",
     "max over 50 ms samples of RSS of the scheduler + its children (materializer helpers)"),
    ("scheduler_peak_rss_self_bytes", "  of which the scheduler process itself [MiB]", MiB, "{:.0f}",
     "max over samples of the scheduler process's own RSS (without children)"),
    ("scheduler_peak_pss_bytes", "scheduler peak PSS incl. children [MiB]", MiB, "{:.0f}",
     "max over 200 ms samples of the proportional set size (/proc/PID/smaps_rollup) of the "
     "scheduler + its children: pages they share, such as a helper's with its forked "
     "dask.order child, count once"),
    ("worker_cpu_s", "worker CPU, sum of 4 [s]", 1, "{:.2f}",
     "delta of user+system CPU of the 4 worker processes"),
    ("client_cpu_s", "client CPU [s]", 1, "{:.2f}",
     "delta of user+system CPU of the benchmark (client) process, sampler thread included"),
    ("other_cpu_s", "other processes' CPU during the run [s] (noise)", 1, "{:.2f}",
     "machine-wide busy CPU (psutil.cpu_times) minus scheduler, workers, client and the other "
     "(idle) cluster: other sessions' work on this shared machine; not a result"),
]


def metric_value(rec: dict, key: str):
    if key == "worker_peak_rss_increase_bytes":
        if rec.get("worker_peak_rss_sum_bytes") is None:
            return None
        return rec["worker_peak_rss_sum_bytes"] - rec["worker_rss_before_bytes"]
    if key == "worker_peak_rss_max_bytes":
        v = rec.get("worker_peak_rss_per_worker_bytes")
        return max(v) if v else None
    return rec.get(key)


def summarize(records: list[dict], graph_names: list[str]) -> dict:
    summary: dict[str, Any] = {}
    for g in graph_names:
        gs: dict[str, Any] = {}
        for impl in ("python", "rust"):
            recs = [r for r in records if r["graph"] == g and r["scheduler"] == impl]
            ok = [r for r in recs if r.get("ok")]
            s: dict[str, Any] = {"runs": len(recs), "ok_runs": len(ok),
                                 "errors": [r.get("error") for r in recs if not r.get("ok")]}
            for key, *_ in METRICS:
                vals = [metric_value(r, key) for r in ok]
                vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
                s[key] = statistics.median(vals) if vals else None
                s[key + "_all"] = vals
            s["n_tasks"] = ok[0]["n_tasks"] if ok else (recs[0].get("n_tasks") if recs else None)
            s["executed_tasks_median"] = (
                statistics.median([r["executed_tasks"] for r in ok]) if ok else None
            )
            gs[impl] = s
        summary[g] = gs
    return summary


def fmt(v, scale, f):
    if v is None:
        return "—"
    if f == "bytes":
        for unit, sc in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(v) >= sc:
                return f"{v / sc:.2f} {unit}"
        return f"{v:.0f} B"
    return f.format(v / scale)


def ratio(py, rs):
    if py is None or rs is None:
        return "—"
    if py == 0:
        return "= (both 0)" if rs == 0 else "∞ (python 0)"
    return f"{rs / py:.2f}"


def markdown(summary: dict, meta: dict) -> str:
    lines = []
    lines.append(f"# Python vs Rust dask scheduler — {meta['started']}")
    lines.append("")
    lines.append(
        f"Mode: **{meta['mode']}**, {meta['repeat']} repeat(s) per (scheduler, graph), median shown; "
        f"4 workers `--nthreads 1 --no-nanny --memory-limit 0`; machine: {meta['machine']}; "
        f"distributed {meta['distributed']}; rust binary {meta['rust_bin']} "
        f"(git {meta['git_head'][:10]}{' + uncommitted changes' if meta['git_dirty'] else ''}). "
        f"Total benchmark time {meta['elapsed_s']:.0f} s."
    )
    lines.append("")
    lines.append("Ratio = rust / python: below 1 is better for Rust on every metric except tasks/s "
                 "(above 1 is better there). Wall time shows the median and (min–max) of the repeats.")
    lines.append("")
    lines.append("| graph | metric | python | rust | rust/python |")
    lines.append("|---|---|---:|---:|---:|")
    for g, gs in summary.items():
        title = next((x.title for x in GRAPHS if x.name == g), g)
        py, rs = gs["python"], gs["rust"]
        ntask = rs.get("n_tasks") or py.get("n_tasks")
        first = True
        for key, label, scale, f, _how in METRICS:
            name = f"**{title}** ({ntask} tasks)" if first else ""
            first = False
            pv, rv = fmt(py[key], scale, f), fmt(rs[key], scale, f)
            if key == "wall_s":  # show the spread of the repeats too
                for impl_s, which in ((py, "p"), (rs, "r")):
                    vals = impl_s.get(key + "_all") or []
                    if len(vals) > 1:
                        spread = f" ({min(vals):.2f}–{max(vals):.2f})"
                        if which == "p":
                            pv += spread
                        else:
                            rv += spread
            lines.append(f"| {name} | {label} | {pv} | {rv} | {ratio(py[key], rs[key])} |")
        for impl, s in (("python", py), ("rust", rs)):
            if s["ok_runs"] < s["runs"]:
                errs = "; ".join(sorted({(e or "").strip().splitlines()[0][:300] for e in s["errors"] if e}))
                lines.append(f"| | **{impl} FAILED {s['runs'] - s['ok_runs']}/{s['runs']} runs** | "
                             f"{errs.replace('|', '/')} | | |")
    lines.append("")
    lines.append("Graphs:")
    for g in summary:
        spec = next(x for x in GRAPHS if x.name == g)
        lines.append(f"- `{g}`: {meta['descriptions'].get(g, spec.title)}")
    lines.append("")
    lines.append("How each metric is measured:")
    for key, label, _s, _f, how in METRICS:
        lines.append(f"- {label}: {how}.")
    lines.append(
        "- n_tasks: `len(FinalizeCompute(collections_to_expr([x])).optimize().__dask_graph__())`, "
        "i.e. what `client.compute` sends and the scheduler materializes; for `client.map` graphs "
        "the number of futures (+1 for the final `submit`)."
    )
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# main


def git(*a) -> str:
    try:
        return subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller graphs, 1 repeat (< 3 minutes)")
    ap.add_argument("--repeat", type=int, default=None, help="repeats per (scheduler, graph); default 3, 1 with --quick")
    ap.add_argument("--out", default=None, help="JSON output (default benches/results/compare-{full,quick}.json)")
    ap.add_argument("--md", default=str(BENCH_DIR / "results" / "latest.md"), help="Markdown table output")
    ap.add_argument("--graphs", default=None, help="comma-separated subset of: " + ",".join(g.name for g in GRAPHS)
                    + "; or 'issue4' for " + ",".join(ISSUE4_GRAPHS))
    ap.add_argument("--schedulers", default="python,rust", help="comma-separated subset of python,rust")
    ap.add_argument("--python", default="/work/venv/bin/python" if Path("/work/venv/bin/python").exists() else sys.executable,
                    help="python of the pinned env, for workers, the Python scheduler and the Rust materializer")
    ap.add_argument("--rust-bin", default=str(REPO_ROOT / "target" / "release" / "dask-scheduler"))
    ap.add_argument("--materializer-pool-size", type=int, default=None,
                    help="passed to the Rust scheduler (default: its own default, number of CPUs)")
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="before each run wait up to this many seconds for the machine to be idle "
                         "(default 3, 1 with --quick)")
    ap.add_argument("--set", action="append", default=[], metavar="GRAPH.PARAM=VALUE",
                    help="override a graph parameter, e.g. --set map_inc.n=20000 (repeatable)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary log directory")
    args = ap.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    if args.quiet_wait is None:
        args.quiet_wait = 1.0 if args.quick else 3.0
    # the default set is the original one; the issue-4 workloads are ``--graphs issue4``
    graphs = [g for g in GRAPHS if not g.name.startswith("e2e_")]
    if args.graphs:
        wanted = ISSUE4_GRAPHS if args.graphs == "issue4" else args.graphs.split(",")
        unknown = set(wanted) - {g.name for g in GRAPHS}
        if unknown:
            ap.error(f"unknown graphs {sorted(unknown)}")
        graphs = [g for g in GRAPHS if g.name in wanted]
    impls = args.schedulers.split(",")
    for item in args.set:
        try:
            lhs, value = item.split("=", 1)
            gname, param = lhs.split(".", 1)
            spec = next(g for g in GRAPHS if g.name == gname)
        except (ValueError, StopIteration):
            ap.error(f"bad --set {item!r}: expected GRAPH.PARAM=VALUE with a known graph")
        try:
            value = json.loads(value)
        except ValueError:
            pass  # keep it a string
        (spec.quick if args.quick else spec.full)[param] = value
    out = Path(args.out or BENCH_DIR / "results" / f"compare-{'quick' if args.quick else 'full'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)

    signal.signal(signal.SIGTERM, _on_signal)

    tmp = Path(tempfile.mkdtemp(prefix="dask-sched-bench-"))
    meta: dict[str, Any] = {"started": _dt.datetime.now().isoformat(timespec="seconds")}
    if "rust" in impls:
        if not Path(args.rust_bin).exists():
            ap.error(f"{args.rust_bin} not found: cargo build --release -p dask-scheduler")
        # a private copy, so that a concurrent rebuild cannot change it mid-run
        args.rust_bin_copy = str(tmp / "dask-scheduler")
        shutil.copy2(args.rust_bin, args.rust_bin_copy)
        meta["rust_bin_sha256"] = hashlib.sha256(Path(args.rust_bin_copy).read_bytes()).hexdigest()
        meta["rust_bin_mtime"] = _dt.datetime.fromtimestamp(Path(args.rust_bin).stat().st_mtime).isoformat(timespec="seconds")
    import dask
    import distributed

    meta.update(
        mode="quick" if args.quick else "full",
        repeat=repeat,
        machine=f"{platform.node()} {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
                f"{platform.platform()}",
        python=sys.version.split()[0],
        dask=dask.__version__,
        distributed=distributed.__version__,
        rust_bin=os.path.relpath(args.rust_bin, REPO_ROOT),
        git_head=git("rev-parse", "HEAD"),
        git_dirty=bool(git("status", "--porcelain", "--untracked-files=no")),
        materializer_pool_size=args.materializer_pool_size,
        overrides=args.set,
        params={g.name: (g.quick if args.quick else g.full) for g in graphs},
        sample_interval_s=SAMPLE_INTERVAL,
        n_workers=N_WORKERS,
        worker_env=WORKER_ENV,
        tmp_dir=str(tmp),
    )
    t_start = time.perf_counter()
    records: list[dict] = []
    descriptions: dict[str, str] = {}
    # Quiet the client's own logging of expected shutdown noise
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    try:
        log("building graphs and local reference results (untimed) ...")
        works = {}
        for g in graphs:
            works[g.name] = g.build(dict(g.quick if args.quick else g.full))
            descriptions[g.name] = works[g.name].description

        def on_record(rec: dict) -> None:
            records.append(rec)
            if rec.get("ok"):
                log(f"   ok wall {rec['wall_s']:.3f}s  sched cpu {rec['scheduler_cpu_s']:.3f}s  "
                    f"xfer {rec['transfer_bytes'] / MiB:.1f} MiB  "
                    f"wpeak {rec['worker_peak_rss_sum_bytes'] / MiB:.0f} MiB  "
                    f"speak {rec['scheduler_peak_rss_bytes'] / MiB:.0f} MiB  "
                    f"other cpu {rec['other_cpu_s']:.1f}s")
            else:
                log(f"   FAILED ({rec['scheduler']} {rec['graph']}): {rec.get('error')}")
                if rec.get("scheduler_log_tail"):
                    log("   scheduler log tail:\n" + "\n".join(
                        "     | " + ln for ln in rec["scheduler_log_tail"].splitlines()[-25:]))
            # write partial results as we go
            meta["elapsed_s"] = time.perf_counter() - t_start
            out.write_text(json.dumps({"meta": meta, "records": records}, indent=1, default=str))

        for gi, g in enumerate(graphs):
            bench_graph(g, works[g.name], impls, repeat, args, tmp, gi, records, on_record)
    finally:
        _kill_leftovers()
        if not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
    meta["elapsed_s"] = time.perf_counter() - t_start
    meta["descriptions"] = descriptions
    summary = summarize(records, [g.name for g in graphs])
    out.write_text(json.dumps({"meta": meta, "summary": summary, "records": records}, indent=1, default=str))
    md = markdown(summary, meta)
    Path(args.md).write_text(md)
    print(md)
    log(f"raw results: {out}; table: {args.md}; {meta['elapsed_s']:.0f} s")

    wrong = [r for r in records if r.get("wrong_result")]
    failed = [r for r in records if not r.get("ok")]
    if wrong:
        print("\n" + "!" * 70, file=sys.stderr)
        for r in wrong:
            print(f"WRONG RESULT: {r['scheduler']} {r['graph']} repeat {r['repeat']}: {r['error']}", file=sys.stderr)
        print("!" * 70, file=sys.stderr)
        return 2
    if failed:
        print("\n" + "!" * 70, file=sys.stderr)
        for r in failed:
            print(f"FAILED: {r['scheduler']} {r['graph']} repeat {r['repeat']}: {r['error']}", file=sys.stderr)
        print("!" * 70, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

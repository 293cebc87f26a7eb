#!/usr/bin/env python
"""Scheduler benchmarks with simulated workers (``dask-loaddriver``).

Three parts, each run against the Rust ``dask-scheduler`` AND the Python
scheduler (``distributed==2026.8.0``) in the same invocation, on the same
machine, with the same simulated workers:

* ``throughput`` (issue point 2): W simulated workers (W = 8, 64, 512) that
  answer every ``compute-task`` at once; a real Python ``Client`` submits
  ``client.map`` of N tasks, an N-task array reduction and a wide
  butterfly ("shuffle-like") graph, and waits for the futures.  Reported:
  tasks/s over the scheduler's dispatch window (first to last
  ``compute-task`` seen by the workers), end-to-end tasks/s (client submit
  to ``wait`` returning), and scheduler CPU per task (process tree: the Rust
  scheduler's materializer helpers included).
* ``scale`` (point 4): a graph of N tasks (``da.ones(N, chunks=1)``,
  persisted): scheduler RSS per task once all are in memory, time from the
  submission to the first ``compute-task``, and time to release it all
  (client drops the futures until the workers got every ``free-keys``).
* ``manyworkers`` (point 5): 2,000 simulated workers connecting at once, with
  heartbeats: time until all are registered, then the scheduler's CPU while
  idle over a window of ``--idle-s`` seconds.

The simulated workers never transfer data: a task whose dependencies live on
another worker is simply reported finished.  Results go to
``benches/results/simbench-<mode>.json`` and a Markdown table.

Usage::

    .venv/bin/python benches/simbench.py [--quick] [--parts throughput,scale,manyworkers]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_funcs as bf  # noqa: E402
import compare as cmp  # noqa: E402  (process helpers)

HOST = cmp.HOST
log = cmp.log


class Driver:
    """A ``dask-loaddriver`` process, controlled over its stdin/stdout."""

    def __init__(self, binary: str, address: str, workers: int, nthreads: int, base_port: int,
                 log_path: Path, threads: int = 1):
        argv = [binary, address, "-w", str(workers), "--nthreads", str(nthreads),
                "--base-port", str(base_port), "--threads", str(threads)]
        self.log_file = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self.log_file, text=True, bufsize=1,
                                      start_new_session=True)
        self.ps = psutil.Process(self.popen.pid)
        self.lock = threading.Lock()
        self.registered: dict | None = None
        self._lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.popen.stdout:
            with self._cv:
                self._lines.append(line)
                self._cv.notify_all()

    def _next_line(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._lines:
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    raise TimeoutError("load driver did not answer")
                self._cv.wait(min(left, 0.2))
            return json.loads(self._lines.pop(0))

    def wait_registered(self, timeout: float) -> dict:
        msg = self._next_line(timeout)
        if msg.get("event") != "registered":
            raise RuntimeError(f"simulated workers failed to register: {msg}")
        self.registered = msg
        return msg

    def cmd(self, c: str, timeout: float = 10) -> dict:
        with self.lock:
            self.popen.stdin.write(c + "\n")
            self.popen.stdin.flush()
            return self._next_line(timeout)

    def stats(self) -> dict:
        return self.cmd("stats")

    def wait_for(self, field: str, n: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if s[field] >= n:
                return s
            if time.monotonic() > deadline:
                raise TimeoutError(f"{field} = {s[field]} < {n} after {timeout}s")
            time.sleep(0.02)

    def close(self):
        try:
            os.killpg(self.popen.pid, 9)
        except ProcessLookupError:
            pass
        self.popen.wait(5)
        self.log_file.close()


class Sched:
    """A scheduler of either implementation, no real workers."""

    def __init__(self, impl: str, args, tmp: Path, tag: str, env_extra=None):
        self.impl = impl
        self.port = cmp.free_port()
        self.address = f"tcp://{HOST}:{self.port}"
        dash = cmp.free_port()
        if impl == "python":
            argv = [args.python, "-m", "distributed.cli.dask_scheduler"]
        else:
            argv = [args.rust_bin_copy]
        argv += ["--host", HOST, "--port", str(self.port), "--dashboard-address", f"{HOST}:{dash}"]
        if impl == "rust":
            argv += ["--python", args.python]
        self.proc = cmp.Proc(argv, tmp / f"{tag}-{impl}-scheduler.log", cmp.child_env(env_extra))
        deadline = time.monotonic() + cmp.STARTUP_TIMEOUT
        while not cmp.port_open(self.port):
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{impl} scheduler did not start:\n{self.proc.log_tail(20)}")
            time.sleep(0.05)

    def cpu(self) -> float:
        return cmp.process_tree_cpu(self.proc.ps)

    def cpu_split(self) -> tuple[float, float]:
        """(scheduler process itself, its descendants: materializer helpers)."""
        return cmp.process_tree_cpu(self.proc.ps, split=True)

    def rss(self) -> tuple[int, int]:
        """(scheduler process alone, scheduler + descendants)."""
        own = cmp.rss(self.proc.ps)
        try:
            kids = sum(cmp.rss(k) for k in self.proc.ps.children(recursive=True))
        except psutil.Error:
            kids = 0
        return own, own + kids

    def close(self):
        cmp.stop_procs([self.proc])


# ---------------------------------------------------------------------------
# graphs (all submitted without gathering results: the simulated workers hold no data)


def butterfly(p: int, layers: int) -> tuple[dict, list]:
    """A shuffle-like graph: ``p`` tasks per layer; task (l, j) depends on
    (l-1, j) and (l-1, j xor 2^((l-1) mod log2 p)): after log2(p) layers every
    output depends on every input (an FFT/butterfly all-to-all)."""
    bits = max(1, (p - 1).bit_length())
    dsk = {("bfly", 0, j): (bf.ident, j) for j in range(p)}
    for layer in range(1, layers + 1):
        b = 1 << ((layer - 1) % bits)
        for j in range(p):
            dsk[("bfly", layer, j)] = (bf.add, ("bfly", layer - 1, j), ("bfly", layer - 1, j ^ b))
    return dsk, [("bfly", layers, j) for j in range(p)]


def submit(client, kind: str, n: int):
    """Submit a graph; returns (futures or collection to wait on, n_tasks, description)."""
    if kind == "map":
        futs = client.map(bf.noop, range(n), pure=False)
        return futs, n, f"client.map(noop, range({n}))"
    if kind == "array":
        import dask.array as da

        # the per-chunk ``ones`` and ``sum`` fuse into one task: ~1.03 tasks per chunk
        chunks = max(2, n)
        x = da.ones((chunks,), chunks=1).sum(split_every=32)
        ntask = cmp.graph_len(x)
        fut = client.compute(x)
        return [fut], ntask, f"da.ones(({chunks},), chunks=1).sum(split_every=32)"
    if kind == "shuffle":
        p = 1 << max(1, (n // 13).bit_length())  # 13 layers of p >= n/13 tasks
        dsk, keys = butterfly(p, 12)
        futs = client.get(dsk, keys, sync=False)
        return futs, len(dsk), f"butterfly all-to-all, {p} tasks x 13 layers, 2 deps each"
    raise ValueError(kind)


def fmt_opt(x, spec: str) -> str:
    """``x`` formatted, or ``?`` when it could not be measured."""
    return "?" if x is None else format(x, spec)


class CpuSampler:
    """Samples CPU seconds of several sources (callables: a process, a
    process tree, the whole machine's busy time) every ``period`` seconds in
    a thread, so the CPU spent between two instants known only afterwards
    (the dispatch window's first and last ``compute-task``) can be read off
    by linear interpolation. psutil's CPU times tick at 10 ms, so over a
    window of a second or more the error is a few per cent."""

    def __init__(self, sources: dict, period: float = 0.01):
        self.sources, self.period = sources, period
        self.times: list[float] = []
        self.values: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        row = {}
        for name, read in self.sources.items():
            try:
                row[name] = read()
            except psutil.Error:
                row[name] = float("nan")
        self.times.append(time.time())
        self.values.append(row)

    def _run(self):
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def at(self, name: str, when: float) -> float | None:
        """``name``'s CPU seconds by ``when``, interpolated between samples."""
        t = self.times
        if not t or when < t[0] or when > t[-1]:
            return None
        i = bisect.bisect_left(t, when)
        if t[i] == when or i == 0:
            return self.values[i][name]
        a, b = self.values[i - 1][name], self.values[i][name]
        return a + (b - a) * (when - t[i - 1]) / (t[i] - t[i - 1])

    def between(self, name: str, start: float | None, end: float | None) -> float | None:
        """``name``'s CPU seconds from ``start`` to ``end``, if both were sampled."""
        if start is None or end is None:
            return None
        a, b = self.at(name, start), self.at(name, end)
        return None if a is None or b is None else b - a


def machine_busy_cpu() -> float:
    """Busy CPU seconds of the whole machine (every core, every process)."""
    m = psutil.cpu_times()
    return m.user + m.nice + m.system + getattr(m, "irq", 0) + getattr(m, "softirq", 0)


def own_cpu(ps: "psutil.Process") -> float:
    t = ps.cpu_times()
    return t.user + t.system


def run_graph(client, driver: Driver, sched: Sched, kind: str, n: int, timeout: float) -> dict:
    from distributed import wait

    driver.cmd("reset")
    own0, kids0 = sched.cpu_split()
    cpu0 = own0 + kids0
    t0 = time.time()
    me = psutil.Process()
    # the materializer helpers (a pool: listed once, not per sample, which
    # would scan /proc 100 times a second) with their reaped children (each
    # graph's ordering runs in a forked child), plus reaped helpers
    try:
        helpers = sched.proc.ps.children()
    except psutil.Error:
        helpers = []

    def helpers_cpu() -> float:
        t = sched.proc.ps.cpu_times()
        total = t.children_user + t.children_system
        for h in helpers:
            try:
                ht = h.cpu_times()
            except psutil.Error:
                continue
            total += ht.user + ht.system + ht.children_user + ht.children_system
        return total

    sources = {
        "scheduler": lambda: own_cpu(sched.proc.ps),
        "helpers": helpers_cpu,
        "driver": lambda: own_cpu(driver.ps),
        "client": lambda: own_cpu(me),
        "machine": machine_busy_cpu,
    }
    with CpuSampler(sources) as sampler:
        futs, ntask, desc = submit(client, kind, n)
        t_submitted = time.time()
        wait(futs, timeout=timeout)
        t1 = time.time()
    own1, kids1 = sched.cpu_split()
    cpu1 = own1 + kids1
    s = driver.stats()
    own, tree = sched.rss()
    # release and wait until the workers were told to free everything
    n_computed = s["computed"]
    del futs
    try:
        driver.wait_for("freed", n_computed, timeout)
    except TimeoutError as e:
        log(f"   release incomplete: {e}")
    window = (s["last_compute"] or t1) - (s["first_compute"] or t0)
    # CPU between the first and the last compute-task the workers saw: the
    # dispatch phase the window tasks/s measure (graph ingestion still
    # overlaps its start where a graph arrives in parts). The machine's and
    # the other processes' show whether the window was bounded by the
    # 2-core machine rather than by the scheduler.
    window_cpu = {name: sampler.between(name, s["first_compute"], s["last_compute"])
                  for name in sources}
    # the same sources over the whole run (submission to `wait` returning)
    run_cpu = {name: sampler.between(name, max(t0, sampler.times[0]), t1) for name in sources}
    return {
        "graph": kind, "description": desc, "n_tasks": ntask, "computed": n_computed,
        "wall_s": t1 - t0, "client_submit_s": t_submitted - t0,
        "dispatch_window_s": window,
        "tasks_per_s_window": ntask / window if window > 0 else None,
        "tasks_per_s_e2e": ntask / (t1 - t0),
        "sched_cpu_s": cpu1 - cpu0, "sched_cpu_us_per_task": (cpu1 - cpu0) / ntask * 1e6,
        "sched_self_cpu_us_per_task": (own1 - own0) / ntask * 1e6,
        "window_cpu_s": window_cpu,
        "run_cpu_s": run_cpu,
        "sched_self_cpu_us_per_task_window": (
            window_cpu["scheduler"] / ntask * 1e6 if window_cpu["scheduler"] is not None else None),
        "window_busy_cores": {
            name: (c / window if c is not None and window > 0 else None)
            for name, c in window_cpu.items()},
        "sched_rss_mib": own / 2**20, "sched_tree_rss_mib": tree / 2**20,
        "steals": s["steals"],
    }


def part_throughput(args, impls, tmp) -> list[dict]:
    from distributed import Client

    out = []
    for w in args.workers:
        for impl in impls:
            sched = Sched(impl, args, tmp, f"tp{w}")
            drv = None
            client = None
            try:
                drv = Driver(args.driver_copy, sched.address, w, args.nthreads, 20000, tmp / f"drv-{impl}-{w}.log")
                reg = drv.wait_registered(120)
                client = Client(sched.address, timeout=30, set_as_default=True)
                client.wait_for_workers(w, timeout=60)
                # warm-up: small graphs of each kind (imports in helpers, code paths)
                for kind in args.graphs:
                    run_graph(client, drv, sched, kind, 2000, args.timeout)
                for rep in range(args.repeat):
                    for kind in args.graphs:
                        log(f"throughput {impl} W={w} {kind} n={args.n} rep {rep}")
                        try:
                            r = run_graph(client, drv, sched, kind, args.n, args.timeout)
                            r.update(scheduler=impl, workers=w, nthreads=args.nthreads, repeat=rep,
                                     registration_s=reg["elapsed_s"], ok=True)
                            log(f"   {r['tasks_per_s_window']:.0f} tasks/s (window), "
                                f"{r['tasks_per_s_e2e']:.0f} e2e, {r['sched_cpu_us_per_task']:.1f} us/task "
                                f"({r['sched_self_cpu_us_per_task']:.1f} in the scheduler process; "
                                f"{fmt_opt(r['sched_self_cpu_us_per_task_window'], '.1f')} in it during the window; "
                                "busy cores in the window: " + ", ".join(
                                    f"{k} {fmt_opt(v, '.2f')}" for k, v in r["window_busy_cores"].items())
                                + ")")
                        except Exception as e:  # recorded, never retried silently
                            r = dict(graph=kind, scheduler=impl, workers=w, repeat=rep, ok=False,
                                     error=f"{type(e).__name__}: {e}")
                            log(f"   FAILED {r['error']}")
                        out.append(r)
            finally:
                if client is not None:
                    try:
                        client.close(timeout=10)
                    except Exception:
                        pass
                if drv is not None:
                    drv.close()
                sched.close()
    return out


def part_scale(args, impls, tmp) -> list[dict]:
    import dask.array as da
    from distributed import Client, wait

    out = []
    for impl in impls:
        sizes = args.scale_n if impl == "rust" else args.scale_n_python
        for n in sizes:
            sched = Sched(impl, args, tmp, f"scale{n}")
            drv = client = None
            rec = dict(part="scale", scheduler=impl, n=n)
            try:
                drv = Driver(args.driver_copy, sched.address, 8, args.nthreads, 20000, tmp / f"drv-scale-{impl}.log")
                drv.wait_registered(60)
                client = Client(sched.address, timeout=30, set_as_default=True)
                client.wait_for_workers(8, timeout=60)
                run_graph(client, drv, sched, "array", 2000, args.timeout)  # warm-up
                time.sleep(1)
                drv.cmd("reset")
                rss0 = sched.rss()
                cpu0 = sched.cpu()
                x = da.ones((n,), chunks=1)
                scale_timeout = args.scale_timeout or max(400.0, 9e-4 * n)
                t0 = time.time()
                x = client.persist(x)
                s = drv.wait_for("computed", n, scale_timeout)
                t_done = time.time()
                wait(x, timeout=scale_timeout)
                time.sleep(1)
                rss1 = sched.rss()
                cpu1 = sched.cpu()
                t_rel = time.time()
                del x
                s2 = drv.wait_for("freed", n, scale_timeout)
                t_rel_done = s2["last_free"]
                rec.update(
                    ok=True,
                    first_compute_after_submit_s=s["first_compute"] - t0,
                    all_computed_s=t_done - t0,
                    rss_per_task_bytes=(rss1[0] - rss0[0]) / n,
                    tree_rss_per_task_bytes=(rss1[1] - rss0[1]) / n,
                    rss_before_mib=rss0[0] / 2**20, rss_held_mib=rss1[0] / 2**20,
                    release_s=t_rel_done - t_rel,
                    sched_cpu_s=cpu1 - cpu0,
                )
                log(f"scale {impl} n={n}: {rec}")
            except Exception as e:
                rec.update(ok=False, error=f"{type(e).__name__}: {e}")
                log(f"scale {impl} n={n} FAILED: {rec['error']}")
            finally:
                if client is not None:
                    try:
                        client.close(timeout=10)
                    except Exception:
                        pass
                if drv is not None:
                    drv.close()
                sched.close()
            out.append(rec)
    return out


def run_spec_bytes(n_sample: int = 2000) -> float:
    """Mean pickled size of one task of ``da.ones(n, chunks=1)`` (what each
    run_spec costs the scheduler to hold, outside the per-task state)."""
    import pickle

    import dask.array as da

    g = dict(da.ones((n_sample,), chunks=1).__dask_graph__())
    return sum(len(pickle.dumps(v)) for v in g.values()) / len(g)


def part_manyworkers(args, impls, tmp) -> list[dict]:
    out = []
    for impl in impls:
        sched = Sched(impl, args, tmp, "many")
        drv = None
        rec = dict(part="manyworkers", scheduler=impl, workers=args.many)
        try:
            time.sleep(1)
            cpu_start = sched.cpu()
            t0 = time.time()
            drv = Driver(args.driver_copy, sched.address, args.many, 1, 30000, tmp / f"drv-many-{impl}.log",
                         threads=1)
            reg = drv.wait_registered(args.timeout)
            t_reg = time.time()
            cpu_reg = sched.cpu()
            time.sleep(3)  # let the first heartbeat round start
            cpu0, t1 = sched.cpu(), time.time()
            time.sleep(args.idle_s)
            cpu1, t2 = sched.cpu(), time.time()
            s = drv.stats()
            rec.update(ok=True, registration_s=reg["elapsed_s"], registration_wall_s=t_reg - t0,
                       registration_cpu_s=cpu_reg - cpu_start,
                       idle_window_s=t2 - t1, idle_cpu_s=cpu1 - cpu0,
                       idle_cpu_pct_of_core=100 * (cpu1 - cpu0) / (t2 - t1),
                       heartbeats=s["heartbeats"], driver_errors=s["errors"][:3],
                       sched_rss_mib=sched.rss()[0] / 2**20)
            log(f"manyworkers {impl}: {rec}")
        except Exception as e:
            rec.update(ok=False, error=f"{type(e).__name__}: {e}")
            log(f"manyworkers {impl} FAILED: {rec['error']}")
        finally:
            if drv is not None:
                drv.close()
            sched.close()
        out.append(rec)
    return out


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def markdown(res: dict) -> str:
    L = []
    tp = [r for r in res.get("throughput", []) if r.get("ok")]
    if tp:
        L.append("| graph | W | tasks | python tasks/s (dispatch window) | rust tasks/s | ratio | python e2e tasks/s | rust e2e tasks/s | python sched CPU µs/task | rust sched CPU µs/task | rust/python CPU |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        keys = sorted({(r["graph"], r["workers"]) for r in tp}, key=lambda k: (k[0], k[1]))
        for g, w in keys:
            def m(impl, f):
                return med([r[f] for r in tp if r["graph"] == g and r["workers"] == w and r["scheduler"] == impl])
            py_t, rs_t = m("python", "tasks_per_s_window"), m("rust", "tasks_per_s_window")
            py_c, rs_c = m("python", "sched_cpu_us_per_task"), m("rust", "sched_cpu_us_per_task")
            n = m("rust", "n_tasks") or m("python", "n_tasks")
            f0 = lambda v: "—" if v is None else f"{v:,.0f}"  # noqa: E731
            f1 = lambda v: "—" if v is None else f"{v:,.1f}"  # noqa: E731
            rt = "—" if not (py_t and rs_t) else f"{rs_t / py_t:.1f}×"
            rc = "—" if not (py_c and rs_c) else f"{rs_c / py_c:.3f}"
            L.append(f"| {g} | {w} | {f0(n)} | {f0(py_t)} | {f0(rs_t)} | {rt} | {f0(m('python', 'tasks_per_s_e2e'))} | "
                     f"{f0(m('rust', 'tasks_per_s_e2e'))} | {f1(py_c)} | {f1(rs_c)} | {rc} |")
        L.append("")
    for r in res.get("throughput", []):
        if not r.get("ok"):
            L.append(f"- FAILED: {r['scheduler']} W={r['workers']} {r['graph']}: {r['error']}")
    sc = res.get("scale", [])
    if sc:
        L.append("| scale | tasks | RSS/task (scheduler process) | RSS/task incl. helpers | submit → first compute-task | all computed | release all | scheduler CPU |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in sc:
            if r.get("ok"):
                L.append(f"| {r['scheduler']} | {r['n']:,} | {r['rss_per_task_bytes']:.0f} B | {r['tree_rss_per_task_bytes']:.0f} B | "
                         f"{r['first_compute_after_submit_s']:.2f} s | {r['all_computed_s']:.2f} s | {r['release_s']:.2f} s | {r['sched_cpu_s']:.1f} s |")
            else:
                L.append(f"| {r['scheduler']} | {r['n']:,} | FAILED: {r['error']} | | | | | |")
        if res.get("run_spec_bytes"):
            L.append(f"\nrun_spec bytes per task of that graph (pickled `da.ones` chunk task, mean): {res['run_spec_bytes']:.0f} B — counted in the RSS above.")
        L.append("")
    mw = res.get("manyworkers", [])
    if mw:
        L.append("| many workers | workers | all registered after | scheduler CPU to register | idle CPU (% of one core) | heartbeats seen |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for r in mw:
            if r.get("ok"):
                L.append(f"| {r['scheduler']} | {r['workers']:,} | {r['registration_s']:.2f} s | {r['registration_cpu_s']:.2f} s | "
                         f"{r['idle_cpu_pct_of_core']:.2f} % over {r['idle_window_s']:.0f} s | {r['heartbeats']} |")
            else:
                L.append(f"| {r['scheduler']} | {r['workers']} | FAILED: {r['error']} | | | |")
        L.append("")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="throughput,scale,manyworkers")
    ap.add_argument("--schedulers", default="python,rust")
    ap.add_argument("--workers", default=None, help="W list, default 8,64,512")
    ap.add_argument("--nthreads", type=int, default=4,
                    help="threads each simulated worker advertises (tasks in flight per worker; default 4)")
    ap.add_argument("--n", type=int, default=None, help="tasks per throughput graph (default 100000; quick 20000)")
    ap.add_argument("--graphs", default="map,array,shuffle")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--scale-n", default=None,
                    help="rust sizes (default 100000; quick 50000). 1000000: extrapolated from 100k, ~7-10 min and "
                         "~12 GB with the materializer helpers at today's ~0.2 ms/task materialization")
    ap.add_argument("--scale-n-python", default=None, help="python sizes (default 100000; quick 50000)")
    ap.add_argument("--scale-timeout", type=float, default=None,
                    help="seconds per wait in the scale part (default: 400, or 0.9 ms per task "
                         "above that: the Python scheduler needed up to ~500 s at 1M tasks on a "
                         "slow day of the 2-core VM)")
    ap.add_argument("--many", type=int, default=2000)
    ap.add_argument("--idle-s", type=float, default=None, help="idle window (default 30; quick 15)")
    ap.add_argument("--python", default=str(REPO_ROOT / ".venv" / "bin" / "python"))
    ap.add_argument("--rust-bin", default=str(REPO_ROOT / "target" / "release" / "dask-scheduler"))
    ap.add_argument("--driver", default=str(REPO_ROOT / "target" / "release" / "dask-loaddriver"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    q = args.quick
    args.workers = [int(x) for x in (args.workers or ("8,64" if q else "8,64,512")).split(",")]
    args.n = args.n or (20000 if q else 100000)
    args.repeat = args.repeat or (1 if q else 3)
    args.graphs = args.graphs.split(",")
    args.scale_n = [int(x) for x in (args.scale_n or ("50000" if q else "100000")).split(",")]
    args.scale_n_python = [int(x) for x in (args.scale_n_python or ("50000" if q else "100000")).split(",")]
    args.idle_s = args.idle_s or (15 if q else 30)
    impls = args.schedulers.split(",")
    parts = args.parts.split(",")
    import shutil
    import tempfile

    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="dask-simbench-"))
    args.rust_bin_copy = str(tmp / "dask-scheduler")
    shutil.copy2(args.rust_bin, args.rust_bin_copy)
    args.driver_copy = str(tmp / "dask-loaddriver")
    shutil.copy2(args.driver, args.driver_copy)
    out = Path(args.out or BENCH_DIR / "results" / f"simbench-{'quick' if q else 'full'}.json")
    res: dict = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": "quick" if q else "full",
                          "workers": args.workers, "n": args.n, "nthreads": args.nthreads,
                          "repeat": args.repeat, "machine": f"{os.cpu_count()} CPUs, "
                          f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
                          "loadavg_at_start": os.getloadavg()}}
    t_start = time.time()
    try:
        if "throughput" in parts:
            res["throughput"] = part_throughput(args, impls, tmp)
            out.write_text(json.dumps(res, indent=1, default=str))
        if "scale" in parts:
            res["scale"] = part_scale(args, impls, tmp)
            res["run_spec_bytes"] = run_spec_bytes()
            out.write_text(json.dumps(res, indent=1, default=str))
        if "manyworkers" in parts:
            res["manyworkers"] = part_manyworkers(args, impls, tmp)
    finally:
        cmp._kill_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)
    res["meta"]["elapsed_s"] = time.time() - t_start
    res["meta"]["loadavg_at_end"] = os.getloadavg()
    out.write_text(json.dumps(res, indent=1, default=str))
    md = markdown(res)
    out.with_suffix(".md").write_text(md)
    print(md)
    failed = [r for k in ("throughput", "scale", "manyworkers") for r in res.get(k, []) if not r.get("ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Run every benchmark of issue 4 and rewrite the results table in README.md.

    .venv/bin/python benches/run_all.py            # full (~60 min on a fast host, ~2 h on a slow one)
    .venv/bin/python benches/run_all.py --quick    # smaller sizes, 1 repetition (~12 min)
    .venv/bin/python benches/run_all.py --only core,wire,sim,e2e --no-readme

Steps (each bounded; a failing step is reported, the others still run):

1. ``core``: ``cargo bench -p dask-core --bench scale`` (1M-task graphs of 4
   shapes, transitions/s) -- pure state machine.
2. ``wire``: ``cargo bench -p dask-wire --bench codec`` (criterion; encode and
   decode rates of compute-task / task-finished, single and batches of 1000).
3. ``sim``: ``benches/simbench.py`` (simulated workers through
   ``dask-loaddriver``: throughput at W = 8, 64, 512; 1M-task scale (both
   schedulers; ``--sim-args "--scale-n N --scale-n-python N"`` for another size); 2,000
   workers), Rust and Python schedulers in the same run.
4. ``e2e``: ``benches/compare.py --graphs issue4`` (real ``dask worker``
   processes; map 20k, array sum 10k chunks, delayed tree 8k, split_every
   20k chunks, dataframe groupby), Rust and Python schedulers in the same run.

``dask-machine-probe`` (memory latency, integer speed, TCP loopback round
trip) runs before the first step and after the last, and the table's header
gives both, because this shared VM's speed changes between days.

Then the targets of the issue are evaluated (pass / falls short, never as
tests) and the table between ``<!-- bench-results:start -->`` and
``<!-- bench-results:end -->`` in README.md is replaced.  Raw outputs land in
``benches/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
START = "<!-- bench-results:start -->"
END = "<!-- bench-results:end -->"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], timeout: float, out: Path | None = None) -> tuple[int, str]:
    log("$ " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        text = p.stdout + p.stderr
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        text += f"\nTIMEOUT after {timeout}s"
        rc = 124
    if out:
        out.write_text(text)
    return rc, text


def core_results(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("JSON ")]


def run_stamp(text: str) -> str | None:
    """The `RUN ...` line `stamp` put at the top of a raw output file."""
    first = text.split("\n", 1)[0]
    return first[4:] if first.startswith("RUN ") else None


def stamp() -> str:
    """When and from which commit a step ran, for its raw output file: a
    table rebuilt with `--from-results` can mix runs, and says which."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        rev = "unknown"
    return f"RUN {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {rev}"


def machine_probe(label: str) -> dict | None:
    """Run `dask-machine-probe` (memory latency, integer speed, loopback round
    trip; see crates/loaddriver/src/probe.rs) and return its JSON, or None if
    it is not built or fails: the machine's speed changes between days, and the
    table says how fast it was at the start and the end of this run."""
    exe = REPO / "target" / "release" / "dask-machine-probe"
    if not exe.exists():
        log(f"machine probe ({label}): {exe} not built, skipped")
        return None
    rc, text = run([str(exe)], 300)
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                break
            res["when"] = label
            res["at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            return res
    log(f"machine probe ({label}) failed (exit {rc}): {text[-500:]}")
    return None


def probe_line(probes: list[dict]) -> str | None:
    """One sentence for the table's header from the start and end probes."""
    if not probes:
        return None

    def both(field, d):
        vals = [p.get(field) for p in probes]
        return " / ".join("—" if not v else f"{v['median']:.{d}f}" for v in vals)

    whens = " / ".join(p.get("when", "?") for p in probes)
    return (f"Machine probe (`dask-machine-probe`, medians of {probes[0].get('reps', '?')}; {whens}): "
            f"memory latency {both('mem_latency_ns', 0)} ns per dependent load over "
            f"{probes[0].get('mem_array_mib', '?')} MiB, integer {both('int_op_ns', 2)} ns per dependent "
            f"multiply-rotate-xor, TCP loopback round trip {both('loopback_rtt_us', 1)} µs "
            f"({both('loopback_cpu_us', 1)} µs of CPU, both ends); CPU "
            f"{probes[0].get('cpu', '?')}. The same code's absolute numbers move with these "
            "(benches/README.md, \"Repetitions, medians, noise\").")


def wire_results(text: str) -> list[dict]:
    """Parse criterion's text output: name, then a `thrpt:` line [lo mid hi]."""
    res, name = [], None
    for line in text.splitlines():
        m = re.match(r"^(codec/\S+)", line.strip())
        if m and "Benchmarking" not in line:
            name = m.group(1)
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)", line)
        if m and name:
            val, unit = float(m.group(1)), m.group(2)
            scale = {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}.get(unit, 1)
            res.append({"bench": name, "ops_per_s": val * scale})
            name = None
    return res


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_n(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"


def build_table(core, wire, sim, e2e, meta) -> tuple[str, list[tuple[str, str, str]]]:
    L: list[str] = []
    targets: list[tuple[str, str, str]] = []
    L.append(f"Measured {meta['date']} on {meta['machine']} ({meta['mode']} mode; load average "
             f"{meta['load_start']} at start, {meta['load_end']} at the end: the machine is shared, "
             "numbers are noisy). Regenerate with `.venv/bin/python benches/run_all.py` "
             "(`--quick` for a shorter run); method in `benches/README.md`.")
    if meta.get("probe_line"):
        L.append("")
        L.append(meta["probe_line"])
    L.append("")
    if core:
        ran = f"; run {meta['core_run']}" if meta.get("core_run") else ""
        L.append("**1. Core state machine** (`cargo bench -p dask-core --bench scale`, no I/O, 64 simulated workers, "
                 f"median of the repetitions{ran})")
        L.append("")
        mem_key = "rss_bytes_per_task_after_update_graph"
        L.append("| graph | tasks | transitions | transitions/s | tasks/s | resident B/task after `update_graph` (no run_spec) |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for r in core:
            L.append(f"| {r['shape']} | {r['tasks']:,} | {r['transitions']:,} | {fmt_n(r['transitions_per_s_median'])} "
                     f"({fmt_n(r['transitions_per_s_min'])}–{fmt_n(r['transitions_per_s_max'])}) | "
                     f"{fmt_n(r['tasks'] / r['seconds_median'])} | {fmt_n(r.get(mem_key))} |")
        worst = min(r["transitions_per_s_median"] for r in core)
        best = max(r["transitions_per_s_median"] for r in core)
        targets.append(("core ≥ 2,000,000 transitions/s",
                        f"{worst:,.0f}–{best:,.0f} transitions/s",
                        "pass" if worst >= 2e6 else "falls short"))
        L.append("")
    if wire:
        L.append("**1b. Wire codec** (`cargo bench -p dask-wire --bench codec`, criterion median)")
        L.append("")
        L.append("| message | ops/s |")
        L.append("|---|---:|")
        for r in wire:
            L.append(f"| {r['bench'].removeprefix('codec/')} | {fmt_n(r['ops_per_s'])} |")
        L.append("")
    tp = [r for r in (sim or {}).get("throughput", []) if r.get("ok")]
    if sim and sim.get("meta", {}).get("note"):
        L.append(f"Note on the simulated-worker results: {sim['meta']['note']}.")
        L.append("")
    if tp:
        L.append(f"**2. Scheduler throughput, simulated workers** (`dask-loaddriver`, {sim['meta']['nthreads']} thread(s) per worker; "
                 "tasks/s over the dispatch window = first to last `compute-task`; CPU = scheduler process tree incl. materializer helpers; medians)")
        L.append("")
        L.append("| graph | W | tasks | Python tasks/s | Rust tasks/s | Rust/Python | Python CPU µs/task | Rust CPU µs/task | Rust/Python CPU |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for g, w in sorted({(r["graph"], r["workers"]) for r in tp}):
            def m(impl, f):
                return med([r[f] for r in tp if r["graph"] == g and r["workers"] == w and r["scheduler"] == impl])
            pt, rt = m("python", "tasks_per_s_window"), m("rust", "tasks_per_s_window")
            pc, rc = m("python", "sched_cpu_us_per_task"), m("rust", "sched_cpu_us_per_task")
            L.append(f"| {g} | {w} | {fmt_n(m('rust', 'n_tasks') or m('python', 'n_tasks'))} | {fmt_n(pt)} | {fmt_n(rt)} | "
                     f"{'—' if not (pt and rt) else f'{rt / pt:.1f}×'} | {fmt_n(pc, 1)} | {fmt_n(rc, 1)} | "
                     f"{'—' if not (pc and rc) else f'{rc / pc:.3f}'} |")
        busy = [r for r in tp if r["workers"] == 64 and r.get("window_busy_cores")]
        if busy:
            L.append("")
            L.append("Where the CPU goes during the W = 64 dispatch windows (medians; sampled every 10 ms, "
                     "interpolated at the first and last `compute-task`): the scheduler process's own CPU "
                     "per task then, and the busy cores of each process and of the whole 2-core machine.")
            L.append("")
            L.append("| graph | scheduler | its CPU µs/task in the window | scheduler cores | helpers | simulated workers | client | machine |")
            L.append("|---|---|---:|---:|---:|---:|---:|---:|")
            for g, impl in sorted({(r["graph"], r["scheduler"]) for r in busy}):
                rows = [r for r in busy if r["graph"] == g and r["scheduler"] == impl]

                def mb(name):
                    vals = [r["window_busy_cores"].get(name) for r in rows]
                    return med([v for v in vals if v is not None])

                us = med([r["sched_self_cpu_us_per_task_window"] for r in rows
                          if r.get("sched_self_cpu_us_per_task_window") is not None])
                L.append(f"| {g} | {impl} | {fmt_n(us, 1)} | " + " | ".join(
                    "—" if mb(n) is None else f"{mb(n):.2f}"
                    for n in ("scheduler", "helpers", "driver", "client", "machine")) + " |")
        w64 = [r["tasks_per_s_window"] for r in tp if r["scheduler"] == "rust" and r["workers"] == 64]
        if w64:
            by_g = {}
            for r in tp:
                if r["scheduler"] == "rust" and r["workers"] == 64:
                    by_g.setdefault(r["graph"], []).append(r["tasks_per_s_window"])
            vals = {g: med(v) for g, v in by_g.items()}
            worst = min(vals.values())
            targets.append(("simulated-worker throughput ≥ 300,000 tasks/s at W = 64",
                            ", ".join(f"{g} {v:,.0f}" for g, v in sorted(vals.items())),
                            "pass" if worst >= 3e5 else "falls short"))
        L.append("")
    for r in (sim or {}).get("throughput", []):
        if not r.get("ok"):
            L.append(f"- FAILED: {r['scheduler']} W={r['workers']} {r['graph']}: {r['error']}")
    sc = (sim or {}).get("scale", [])
    if sc:
        L.append("**4. Scale** (`da.ones(N, chunks=1)` persisted on 8 simulated workers)")
        L.append("")
        L.append("| scheduler | tasks | RSS per task (process) | RSS per task (incl. helpers) | submit → first compute-task | all computed | release all |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in sc:
            if r.get("ok"):
                L.append(f"| {r['scheduler']} | {r['n']:,} | {r['rss_per_task_bytes']:.0f} B | {r['tree_rss_per_task_bytes']:.0f} B | "
                         f"{r['first_compute_after_submit_s']:.2f} s | {r['all_computed_s']:.2f} s | {r['release_s']:.2f} s |")
            else:
                L.append(f"| {r['scheduler']} | {r['n']:,} | FAILED: {r.get('error', '')[:200]} | | | | |")
        rsb0 = sim.get("run_spec_bytes")
        if rsb0:
            L.append("")
            L.append(f"RSS includes the run_specs: {rsb0:.0f} B per task for this graph on the wire (mean pickled "
                     "task, measured client-side). The Rust scheduler's materializer helpers are the difference "
                     "between the two RSS columns. The Rust scheduler stores the pickles packed (a layer's nearly "
                     "identical pickles share one copy and keep only the bytes they differ in, "
                     "`crates/core/src/runspec.rs`) and rebuilds each one exactly when it sends it; the Python "
                     "scheduler keeps unpickled task objects that share their function objects.")
        if all(r["n"] < 1_000_000 for r in sc):
            L.append("")
            L.append("Not measured at 1M tasks in this run (`--scale-n` / `--scale-n-python`): see benches/README.md.")
        rs = [r for r in sc if r.get("ok") and r["scheduler"] == "rust"]
        if rs:
            big = max(rs, key=lambda r: r["n"])
            rsb = sim.get("run_spec_bytes") or 0
            total = big["rss_per_task_bytes"]
            # The RSS counts the run_specs as stored. When even that total is
            # within 1 KiB, nothing needs subtracting; otherwise subtract the
            # pickled size (an upper bound of what they take when stored).
            per = total if total <= 1024 else total - rsb
            what = ("including the stored run_specs" if total <= 1024
                    else f"{per:.0f} B without the {rsb:.0f} B run_spec")
            targets.append((f"≤ 1 KiB resident per task at 1M tasks, without run_spec bytes ({rsb:.0f} B/task pickled)",
                            f"{total:.0f} B/task at {big['n']:,} tasks, {what}",
                            "pass" if per <= 1024 and big["n"] >= 1_000_000 else
                            ("falls short" if per > 1024 else "not measured at 1M")))
        L.append("")
    mw = (sim or {}).get("manyworkers", [])
    if mw:
        L.append("**5. Many workers** (2,000 simulated workers connecting at once, heartbeats on)")
        L.append("")
        L.append("| scheduler | workers | all registered after | idle CPU (% of one core) |")
        L.append("|---|---:|---:|---:|")
        for r in mw:
            if r.get("ok"):
                L.append(f"| {r['scheduler']} | {r['workers']:,} | {r['registration_s']:.2f} s | {r['idle_cpu_pct_of_core']:.2f} % |")
            else:
                L.append(f"| {r['scheduler']} | {r['workers']:,} | FAILED: {r.get('error', '')[:200]} | |")
        rs = [r for r in mw if r.get("ok") and r["scheduler"] == "rust"]
        if rs:
            targets.append(("idle CPU with 2,000 workers ≤ 5 % of one core", f"{rs[0]['idle_cpu_pct_of_core']:.2f} %",
                            "pass" if rs[0]["idle_cpu_pct_of_core"] <= 5 else "falls short"))
        L.append("")
    summ = (e2e or {}).get("summary") or {}
    if summ:
        L.append(f"**3. End to end, real `dask worker`s** (`benches/compare.py --graphs issue4`, 4 workers × 1 thread, "
                 f"{e2e['meta']['repeat']} repetition(s), medians)")
        L.append("")
        L.append("| workload | tasks | Python wall | Rust wall | Rust/Python wall | Python sched CPU µs/task | Rust sched CPU µs/task | Rust/Python CPU |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        wall_ratios, cpu_ratios = [], []
        for g, gs in summ.items():
            py, rs = gs["python"], gs["rust"]
            pw, rw = py.get("wall_s"), rs.get("wall_s")
            pc, rc = py.get("scheduler_cpu_us_per_task"), rs.get("scheduler_cpu_us_per_task")
            pc, rc = (pc and pc / 1e6), (rc and rc / 1e6)
            wr = rw / pw if pw and rw else None
            cr = rc / pc if pc and rc else None
            if wr:
                wall_ratios.append((g, wr))
            if cr:
                cpu_ratios.append((g, cr))
            L.append(f"| {g} | {fmt_n(rs.get('n_tasks') or py.get('n_tasks'))} | {fmt_n(pw, 2)} s | {fmt_n(rw, 2)} s | "
                     f"{'—' if wr is None else f'{wr:.2f}'} | {fmt_n(pc and pc * 1e6, 0)} | {fmt_n(rc and rc * 1e6, 0)} | "
                     f"{'—' if cr is None else f'{cr:.3f}'} |")
        if wall_ratios:
            worst = max(r for _, r in wall_ratios)
            targets.append(("end-to-end wall ≤ 0.7× Python on every workload, never slower",
                            ", ".join(f"{g} {r:.2f}" for g, r in wall_ratios),
                            "pass" if worst <= 0.7 else "falls short"))
        if cpu_ratios:
            worst = max(r for _, r in cpu_ratios)
            targets.append(("scheduler CPU per task with real workers ≤ 1/50 (0.02) of Python's",
                            ", ".join(f"{g} {r:.3f}" for g, r in cpu_ratios),
                            "pass" if worst <= 0.02 else "falls short"))
        L.append("")
    if targets:
        L.append("**Targets** (evaluated by the benchmark, not by tests)")
        L.append("")
        L.append("| target | measured | verdict |")
        L.append("|---|---|---|")
        for t, m, v in targets:
            L.append(f"| {t} | {m} | {'✅ pass' if v == 'pass' else '❌ ' + v} |")
        L.append("")
    return "\n".join(L), targets


def rewrite_readme(table: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


def sim_options(quick: bool, sim_args: str) -> list[str]:
    """simbench.py's options: ``--quick``, or in a full run the scale part at
    1M tasks for both schedulers (the memory target is measured there),
    unless ``--sim-args`` sets a size itself; then ``--sim-args``."""
    extra = sim_args.split()
    opts = ["--quick"] if quick else []
    if not quick:
        for flag in ("--scale-n", "--scale-n-python"):
            if not any(a == flag or a.startswith(flag + "=") for a in extra):
                opts += [flag, "1000000"]
    return opts + extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="core,wire,sim,e2e")
    ap.add_argument("--no-readme", action="store_true", help="do not touch README.md")
    ap.add_argument("--sim-timeout", type=float, default=10800,
                    help="seconds the simulated-worker step may take (default 3 h)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--from-results", action="store_true",
                    help="do not run anything: rebuild the table from benches/results/*")
    ap.add_argument("--e2e-repeat", type=int, default=None, help="repetitions of compare.py (default 3; quick 1)")
    ap.add_argument("--sim-args", default="", help="extra arguments for simbench.py")
    args = ap.parse_args()
    only = set(args.only.split(","))
    py = str(REPO / ".venv" / "bin" / "python")
    mode = "quick" if args.quick else "full"
    RESULTS.mkdir(exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mode": mode,
            "machine": f"{platform.node() or 'vm'}: {os.cpu_count()} CPUs, "
                       f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
                       f"{platform.platform()}",
            "load_start": " / ".join(f"{x:.1f}" for x in os.getloadavg())}
    core = wire = sim = e2e = None
    failures = []
    core_out, wire_out = RESULTS / f"core-scale-{mode}.txt", RESULTS / f"wire-codec-{mode}.txt"
    sim_out, e2e_out = RESULTS / f"simbench-{mode}.json", RESULTS / f"e2e-issue4-{mode}.json"
    probe_out = RESULTS / f"machine-probe-{mode}.json"
    if not args.from_results:
        if not args.no_build:
            rc, text = run(["cargo", "build", "--release", "-p", "dask-scheduler", "-p", "dask-loaddriver"], 1800)
            if rc:
                print(text[-3000:], file=sys.stderr)
                return 1
        probes = [p for p in [machine_probe("start")] if p]
        q = ["--", "--quick"] if args.quick else []
        if "core" in only:
            started = stamp()
            rc, text = run(["cargo", "bench", "-p", "dask-core", "--bench", "scale", *q], 1200)
            core_out.write_text(f"{started}\n{text}")
            if rc:
                failures.append(f"core bench exit {rc}")
        if "wire" in only:
            rc, text = run(["cargo", "bench", "-p", "dask-wire", "--bench", "codec", *(q or ["--"])], 900, wire_out)
            if rc:
                failures.append(f"wire bench exit {rc}")
        if "sim" in only:
            cmd = [py, "benches/simbench.py", "--out", str(sim_out)] + sim_options(args.quick, args.sim_args)
            # ~40 min with 3 repetitions, ~12 more with the 1M-task scale part
            # on a fast host; the throughput part alone took 77 min on the
            # twenty-sixth session's host, so the limit is an option
            rc, text = run(cmd, args.sim_timeout)
            (RESULTS / f"simbench-{mode}.log").write_text(text)
            if rc:
                failures.append(f"simbench exit {rc}")
        if "e2e" in only:
            rep = args.e2e_repeat or (1 if args.quick else 3)
            cmd = [py, "benches/compare.py", "--graphs", "issue4", "--repeat", str(rep),
                   "--out", str(e2e_out), "--md", str(RESULTS / f"e2e-issue4-{mode}.md")]
            if args.quick:
                cmd.append("--quick")
            rc, text = run(cmd, 3600)
            (RESULTS / f"e2e-issue4-{mode}.log").write_text(text[-20000:])
            if rc:
                failures.append(f"compare.py exit {rc}")
        probes += [p for p in [machine_probe("end")] if p]
        probe_out.write_text(json.dumps(probes, indent=1))
    if "core" in only and core_out.exists():
        core = core_results(core_out.read_text())
        meta["core_run"] = run_stamp(core_out.read_text())
    if "wire" in only and wire_out.exists():
        wire = wire_results(wire_out.read_text())
    if "sim" in only and sim_out.exists():
        sim = json.loads(sim_out.read_text())
    if "e2e" in only and e2e_out.exists():
        e2e = json.loads(e2e_out.read_text())
    meta["load_end"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    if probe_out.exists():
        meta["probe_line"] = probe_line(json.loads(probe_out.read_text()))
    if args.from_results:
        starts = [x["meta"]["started"] for x in (sim, e2e) if x and x.get("meta", {}).get("started")]
        meta["date"] += (" (table rebuilt from benches/results/; the load averages are of the rebuild"
                         + (f"; benchmark runs started {', '.join(starts)} local time" if starts else "")
                         + (f"; load average when the simulated-worker run started: "
                            f"{' / '.join(f'{x:.1f}' for x in sim['meta']['loadavg_at_start'])}"
                            if sim and sim.get("meta", {}).get("loadavg_at_start") else "") + ")")
    table, targets = build_table(core, wire, sim, e2e, meta)
    if failures:
        table += "\nSteps that failed in this run: " + "; ".join(failures) + "\n"
    (RESULTS / f"run-all-{mode}.md").write_text(table)
    print(table)
    if not args.no_readme:
        rewrite_readme(table)
        log("README.md results table rewritten")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

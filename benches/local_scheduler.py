"""Start either scheduler on a free local port, for the small side-by-side
benchmarks (``run_on_scheduler_latency.py``, ``scheduler_plugin_overhead.py``)."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
RUST_BIN = REPO / "target" / "release" / "dask-scheduler"
IMPLS = ("rust", "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(impl: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``impl`` ("rust" or "python") listening on 127.0.0.1 without a
    dashboard, its output discarded, with ``env`` added to its environment;
    returns the process and its address."""
    port = free_port()
    common = ["--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    if impl == "rust":
        argv = [str(RUST_BIN), *common]
    else:
        argv = [str(PYTHON), "-m", "distributed.cli.dask_scheduler", *common]
    kwargs = quiet()
    kwargs["env"].update(env or {})
    proc = subprocess.Popen(argv, **kwargs)
    return proc, f"tcp://127.0.0.1:{port}"


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate ``procs`` together, then wait up to 30 s for each; one that
    does not exit by then is killed."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def quiet() -> dict:
    """``Popen`` arguments: output discarded, the materializer's Python set."""
    env = dict(os.environ, DASK_SCHEDULER_PYTHON=str(PYTHON))
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}


def alternate(rounds: int, run, describe, impls=IMPLS) -> list[dict]:
    """``run(impl)`` for each scheduler of ``impls`` in turn, ``rounds``
    times; each row (a dict with ``"scheduler"``) is printed with
    ``describe(row)`` as it comes. Returns the rows."""
    rows = []
    for _ in range(rounds):
        for impl in impls:
            row = run(impl)
            rows.append(row)
            print(f"{impl:6s} {describe(row)}", flush=True)
    return rows


def median_of(rows: list[dict], impl: str, field: str) -> float:
    """The median of ``field`` over the rows of scheduler ``impl``."""
    return statistics.median(r[field] for r in rows if r["scheduler"] == impl)

"""Process management for the end-to-end tests.

Starts the scheduler under test (the Rust ``dask-scheduler`` binary, or with
``DASK_SCHEDULER_IMPL=python`` the reference Python scheduler), real
``dask worker`` processes and real ``distributed.Client`` objects, and makes
sure every process is gone afterwards, whatever happened in the test.

Environment variables:

``DASK_SCHEDULER_IMPL``
    ``rust`` (default) or ``python``.
``DASK_SCHEDULER_BIN``
    path of the Rust binary (default ``target/release/dask-scheduler``).
``DASK_E2E_PYTHON``
    the Python of the pinned environment used for workers, helper client
    processes and the scheduler's materializer (default: the Python running
    pytest, i.e. ``.venv/bin/python``).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
IMPL = os.environ.get("DASK_SCHEDULER_IMPL", "rust").strip().lower()
if IMPL not in ("rust", "python"):
    raise RuntimeError(f"DASK_SCHEDULER_IMPL must be 'rust' or 'python', not {IMPL!r}")
PYTHON = os.environ.get("DASK_E2E_PYTHON") or sys.executable
RUST_BIN = Path(
    os.environ.get("DASK_SCHEDULER_BIN") or REPO_ROOT / "target" / "release" / "dask-scheduler"
)
HOST = "127.0.0.1"

# Default bounds (seconds). Generous for a loaded 2-core CI machine; every
# test is additionally bounded by pytest-timeout.
SCHEDULER_START_TIMEOUT = 30
WORKER_START_TIMEOUT = 60
CLIENT_TIMEOUT = 30

# Sentinel for "pass --python with the default interpreter".
DEFAULT_PYTHON = object()


# --------------------------------------------------------------------------
# small utilities


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.1,
    context: Callable[[], str] | None = None,
):
    """Poll ``predicate`` until it returns something truthy; return that.

    On timeout raise AssertionError naming ``what`` (plus ``context()``, e.g.
    a scheduler log tail, when given).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling, remember why
            last_exc = exc
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            if context is not None:
                msg += "\n" + context()
            raise AssertionError(msg)
        time.sleep(interval)


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # Task functions live in this test package (``e2e.*``) and are pickled by
    # reference, as for any user module: workers and the scheduler's graph
    # materializer import them from here (same software environment).
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p
    )
    # Keep our own harness settings out of the processes under test.
    for var in ("DASK_SCHEDULER_IMPL", "PYTEST_CURRENT_TEST"):
        env.pop(var, None)
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------
# processes


_LIVE: list["ManagedProcess"] = []


class ManagedProcess:
    """A child process in its own session, logging to a file."""

    kind = "process"

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            cwd=str(REPO_ROOT),
            start_new_session=True,  # own process group: killpg reaches helpers/nanny children
        )
        self.pid = self.proc.pid
        _LIVE.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self):
        return self.proc.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def describe(self, lines: int = 60) -> str:
        state = "running" if self.alive() else f"exited with {self.returncode}"
        return (
            f"--- {self.kind} pid {self.pid} ({state}), log {self.log_path}, last {lines} lines:\n"
            f"{self.log_tail(lines)}\n--- end of {self.kind} log"
        )

    def send_signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL of the whole process group after ``grace``."""
        if self.alive():
            self.send_signal(signal.SIGTERM)
            self.wait(grace)
        self.kill_group(signal.SIGKILL)  # also reaps helpers/children left behind
        self.wait(5)
        self._log.close()
        if self in _LIVE:
            _LIVE.remove(self)


def stop_all(procs: Iterable[ManagedProcess], grace: float = 5.0) -> None:
    """Stop several processes in parallel: SIGTERM all, wait, SIGKILL the rest."""
    procs = [p for p in procs if p in _LIVE]
    for p in procs:
        if p.alive():
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        p.wait(max(0.0, deadline - time.monotonic()))
    for p in procs:
        p.stop(grace=0)


def live_processes(kind: str | None = None) -> list[ManagedProcess]:
    return [p for p in _LIVE if kind is None or p.kind == kind]


@atexit.register
def kill_leftovers() -> None:  # belt and braces: never leave processes behind
    for p in list(_LIVE):
        p.kill_group(signal.SIGKILL)


# --------------------------------------------------------------------------
# scheduler


def scheduler_command() -> list[str]:
    """The scheduler program, without arguments."""
    if IMPL == "python":
        return [PYTHON, "-m", "distributed.cli.dask_scheduler"]
    return [str(RUST_BIN)]


def scheduler_argv(
    port: int | str,
    dashboard_port: int | None,
    host: str | None = HOST,
    extra: list[str] = (),
    python=DEFAULT_PYTHON,
) -> list[str]:
    """Command line for the scheduler under test.

    ``python``: DEFAULT_PYTHON -> ``--python <the venv python>``; None -> no
    ``--python`` flag; a string -> ``--python <that>``. Ignored for the Python
    scheduler.
    """
    argv = scheduler_command()
    if host is not None:
        argv += ["--host", host]
    argv += ["--port", str(port)]
    if dashboard_port is not None:
        argv += ["--dashboard-address", f"{HOST}:{dashboard_port}"]
    argv += list(extra)
    if IMPL == "rust" and python is not None:
        argv += ["--python", PYTHON if python is DEFAULT_PYTHON else str(python)]
    return argv


def check_rust_binary() -> None:
    if IMPL == "rust" and not RUST_BIN.exists():
        raise RuntimeError(
            f"scheduler binary {RUST_BIN} not found: build it with "
            "`cargo build --release -p dask-scheduler`, point DASK_SCHEDULER_BIN at it, "
            "or run against the Python scheduler with DASK_SCHEDULER_IMPL=python"
        )


class Scheduler(ManagedProcess):
    kind = "scheduler"

    def __init__(
        self,
        log_dir: Path,
        *,
        extra: list[str] = (),
        python=DEFAULT_PYTHON,
        host: str | None = HOST,
        port: int | None = None,
        dashboard: bool = True,
        env: dict[str, str] | None = None,
        wait: bool = True,
        scheme: str = "tcp",
        more_ports: list[int] = (),
    ):
        """``scheme``: what the scheduler listens on (``tls`` when its
        arguments or environment ask for TLS). ``more_ports``: the ports of
        further listeners (``--protocol tcp,ws``), passed as ``--port
        port,more...``; ``port`` stays the first listener's."""
        check_rust_binary()
        self.port = port or free_port()
        self.dashboard_port = free_port() if dashboard else None
        self.address = f"{scheme}://{HOST}:{self.port}"
        port_arg = ",".join(str(p) for p in (self.port, *more_ports))
        argv = scheduler_argv(port_arg, self.dashboard_port, host, list(extra), python)
        super().__init__(argv, Path(log_dir) / f"scheduler-{self.port}.log", env)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = SCHEDULER_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if not self.alive():
                self.stop()
                raise AssertionError(
                    f"scheduler exited with {self.returncode} before listening on "
                    f"{self.port}\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                desc = self.describe()
                self.stop()
                raise AssertionError(
                    f"scheduler did not listen on {self.port} within {timeout}s\n{desc}"
                )
            time.sleep(0.05)

    def dashboard_url(self, path: str = "/") -> str:
        assert self.dashboard_port is not None, "scheduler started without a dashboard"
        return f"http://{HOST}:{self.dashboard_port}{path}"

    def rss_bytes(self) -> int:
        """Resident set size of the scheduler process (Linux /proc)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")


# --------------------------------------------------------------------------
# workers


@dataclass
class WorkerSpec:
    nthreads: int = 1
    nanny: bool = False
    name: str | None = None
    resources: str | None = None  # e.g. "GPU=1"
    memory_limit: str = "0"
    extra: list[str] = field(default_factory=list)


class Worker(ManagedProcess):
    kind = "worker"

    def __init__(self, scheduler_address: str | None, log_dir: Path, spec: WorkerSpec):
        """``scheduler_address`` None: the spec's ``extra`` says where the
        scheduler is (e.g. ``--scheduler-file F``)."""
        self.spec = spec
        self.name = spec.name
        local_dir = Path(log_dir) / f"worker-{spec.name}"
        argv = [PYTHON, "-m", "distributed.cli.dask_worker"]
        if scheduler_address is not None:
            argv.append(scheduler_address)
        argv += [
            "--nthreads", str(spec.nthreads),
            "--no-dashboard",
            "--memory-limit", spec.memory_limit,
            "--local-directory", str(local_dir),
            "--host", HOST,
            # never outlive a vanished scheduler for long
            "--death-timeout", "60",
            "--nanny" if spec.nanny else "--no-nanny",
        ]
        if spec.name:
            argv += ["--name", spec.name]
        if spec.resources:
            argv += ["--resources", spec.resources]
        argv += spec.extra
        super().__init__(argv, Path(log_dir) / f"worker-{spec.name}.log")


# --------------------------------------------------------------------------
# a whole cluster


class Cluster:
    """A scheduler, some workers and the clients connected to them."""

    def __init__(
        self,
        tmp_dir: Path,
        workers: Iterable[WorkerSpec] = (),
        security=None,
        **scheduler_kwargs,
    ):
        """``security``: the ``distributed.Security`` every client of the
        harness connects with (for a ``tls://`` scheduler)."""
        self.tmp_dir = Path(tmp_dir)
        self.security = security
        self.scheduler = Scheduler(self.tmp_dir, **scheduler_kwargs)
        self.workers: list[Worker] = []
        self.clients: list = []
        self._admin = None
        self._names = 0
        try:
            for spec in workers:
                self.add_worker(spec, wait=False)
            if self.workers:
                self.wait_for_workers(len(self.workers))
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        return self.scheduler.address

    def diagnostics(self) -> str:
        parts = [self.scheduler.describe(80)]
        parts += [w.describe(15) for w in self.workers]
        return "\n".join(parts)

    def add_worker(self, spec: WorkerSpec | None = None, wait: bool = True, **kwargs) -> Worker:
        spec = spec or WorkerSpec(**kwargs)
        if spec.name is None:
            self._names += 1
            spec.name = f"worker-{self._names}"
        worker = Worker(self.address, self.tmp_dir, spec)
        self.workers.append(worker)
        if wait:
            self.wait_for_worker_names([spec.name])
        return worker

    def client(self, timeout: float = CLIENT_TIMEOUT, **kwargs):
        from distributed import Client

        if self.security is not None:
            kwargs.setdefault("security", self.security)
        try:
            c = Client(self.address, timeout=timeout, **kwargs)
        except Exception as exc:
            raise AssertionError(f"Client could not connect: {exc!r}\n{self.diagnostics()}") from exc
        self.clients.append(c)
        return c

    def admin(self):
        """A client of the harness's own (not the default client), for polling."""
        if self._admin is None:
            from distributed import Client

            try:
                self._admin = Client(
                    self.address,
                    timeout=CLIENT_TIMEOUT,
                    set_as_default=False,
                    security=self.security,
                )
            except Exception as exc:
                raise AssertionError(
                    f"Client could not connect: {exc!r}\n{self.diagnostics()}"
                ) from exc
        return self._admin

    def info(self) -> dict:
        # Straight from the scheduler: `Client.scheduler_info()` returns the
        # client's cached copy, which its periodic refresh (n_workers=0: no
        # per-worker entries) can replace between the fetch and the return.
        admin = self.admin()
        return admin.sync(admin.scheduler.identity, n_workers=-1)

    def workers_by_name(self) -> dict[str, str]:
        """worker name -> address, as the scheduler reports it."""
        return {str(w["name"]): addr for addr, w in self.info()["workers"].items()}

    def wait_for_worker_names(self, names, timeout: float = WORKER_START_TIMEOUT):
        names = {str(n) for n in names}

        def registered():
            self._check_alive(names)
            return names <= set(self.workers_by_name())

        wait_until(registered, timeout, f"workers {sorted(names)} to register",
                   interval=0.2, context=self.diagnostics)

    def wait_for_workers(self, n: int, timeout: float = WORKER_START_TIMEOUT):
        def enough():
            self._check_alive()
            return len(self.info()["workers"]) >= n

        wait_until(enough, timeout, f"{n} workers to register", interval=0.2,
                   context=self.diagnostics)

    def _check_alive(self, names=None):
        """Fail fast (with logs) when the scheduler or a worker we wait for died."""
        if not self.scheduler.alive():
            raise AssertionError("scheduler died:\n" + self.scheduler.describe(80))
        dead = [
            w for w in self.workers
            if w in _LIVE and not w.alive() and (names is None or w.name in names)
        ]
        if dead:
            raise AssertionError("worker died:\n" + "\n".join(w.describe(30) for w in dead))

    def kill_worker(self, worker: Worker) -> None:
        """SIGKILL a worker and (if it has one) its nanny: the whole process group."""
        worker.kill_group(signal.SIGKILL)
        worker.wait(10)
        worker.stop(grace=0)

    def address_of(self, worker: Worker) -> str:
        return self.workers_by_name()[worker.name]

    def close_workers(self) -> None:
        stop_all(self.workers)

    def close(self) -> None:
        for c in self.clients:
            try:
                c.close(timeout=10)
            except Exception:
                pass
        self.clients.clear()
        if self._admin is not None:
            try:
                self._admin.close(timeout=10)
            except Exception:
                pass
            self._admin = None
        stop_all(self.workers)
        self.scheduler.stop()

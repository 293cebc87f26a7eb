"""Helpers for the deployment tests: manifests, ports, and bounded scheduler runs."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BINARY = Path(os.environ.get("DASK_SCHEDULER_BIN") or ROOT / "target" / "release" / "dask-scheduler")
SHIM = DEPLOY / "image" / "dask-shim"
INSTALL_SHIMS = DEPLOY / "image" / "install-shims.sh"
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = Path(os.environ.get("DASK_SCHEDULER_PYTHON") or VENV_BIN / "python")

#: Kubernetes manifests (not the Helm values file, which is chart input).
MANIFESTS = sorted(
    p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.parent.name != "helm"
)

DEFAULT_PORT = 8786
DEFAULT_DASHBOARD_PORT = 8787
START_TIMEOUT = 30.0


def load_docs(path: Path) -> list[dict]:
    """Every YAML document in ``path`` (empty ones dropped)."""
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def all_documents() -> list[tuple[Path, int, dict]]:
    """``(path, index, document)`` for every manifest document under deploy/."""
    return [(p, i, d) for p in MANIFESTS for i, d in enumerate(load_docs(p))]


def cluster_specs(doc: dict) -> list[dict]:
    """The DaskCluster ``spec`` bodies in a document (DaskCluster or DaskJob)."""
    if doc.get("kind") == "DaskCluster":
        return [doc["spec"]]
    if doc.get("kind") == "DaskJob":
        return [doc["spec"]["cluster"]["spec"]]
    return []


def scheduler_container(cluster_spec: dict) -> dict:
    """The container named ``scheduler`` of a DaskCluster spec."""
    (c,) = [c for c in cluster_spec["scheduler"]["spec"]["containers"] if c["name"] == "scheduler"]
    return c


def container_port(container: dict, ref: int | str) -> int:
    """Resolve a probe/service port reference (a number or a port name)."""
    if isinstance(ref, int):
        return ref
    (port,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == ref]
    return port


def option_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in argv (last one wins)."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def declared_ports(argv: list[str]) -> tuple[int, int]:
    """(scheduler port, dashboard port) the args ask for, defaults applied."""
    port = option_value(argv, "--port")
    dash = option_value(argv, "--dashboard-address")
    dash_port = DEFAULT_DASHBOARD_PORT
    if dash is not None:
        tail = dash.rsplit(":", 1)[-1]
        dash_port = int(tail)
    return (int(port) if port is not None else DEFAULT_PORT), dash_port


def localize(argv: list[str], port: int, dash_port: int) -> list[str]:
    """The same arguments with ports (and hosts) mapped to free ones on 127.0.0.1.

    Only option *values* change: ``--host X`` -> 127.0.0.1, ``--port N`` -> port,
    ``--dashboard-address [H]:N`` -> 127.0.0.1:dash_port; missing ones are
    appended so that the test never binds the real 8786/8787 or 0.0.0.0.
    """
    out: list[str] = []
    seen = set()
    mapping = {
        "--host": "127.0.0.1",
        "--port": str(port),
        "--dashboard-address": f"127.0.0.1:{dash_port}",
    }
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in mapping:
            seen.add(name)
            if "=" in a:
                out.append(f"{name}={mapping[name]}")
            else:
                out += [a, mapping[name]]
                i += 1
        else:
            out.append(a)
        i += 1
    for name in ("--host", "--port", "--dashboard-address"):
        if name not in seen:
            out += [name, mapping[name]]
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; status 0 if unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, ""


@contextlib.contextmanager
def image_path() -> Iterator[str]:
    """A PATH laid out like the image's: our bin dir first, then the Python env.

    The bin dir holds ``dask-scheduler`` (a link to the real binary) and
    ``dask`` (the shim), as the Dockerfile installs them.
    """
    with tempfile.TemporaryDirectory(prefix="deploy-bin-") as d:
        os.symlink(BINARY, os.path.join(d, "dask-scheduler"))
        shutil.copy(SHIM, os.path.join(d, "dask"))  # a copy, as the image has
        yield os.pathsep.join([d, str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"])


@contextlib.contextmanager
def running(argv: list[str], dash_port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run argv (looked up on the image-like PATH) until /health answers; kill after.

    Fails if the process exits or /health does not answer within START_TIMEOUT.
    """
    with image_path() as path, tempfile.TemporaryFile() as log:
        full_env = dict(os.environ)
        full_env.update(
            {
                "PATH": path,
                "DASK_SCHEDULER_PYTHON": str(PYTHON),
                "DASK_SCHEDULER_MATERIALIZER_POOL_SIZE": "1",
            }
        )
        full_env.update(env or {})
        proc = subprocess.Popen(
            argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise AssertionError(
                        f"{argv} exited with {proc.returncode}:\n{log.read().decode(errors='replace')}"
                    )
                if http_get(dash_port, "/health", timeout=1)[0] == 200:
                    break
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(
                        f"{argv}: /health did not answer on {dash_port}:\n"
                        f"{log.read().decode(errors='replace')}"
                    )
                time.sleep(0.1)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        cur += line.rstrip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by FROM (index 0: the global ARGs before the first FROM)."""
    groups: list[list[tuple[str, str]]] = [[]]
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            groups.append([])
        groups[-1].append(ins)
    return groups


def healthcheck_argv() -> list[str]:
    """The exec-form HEALTHCHECK command of the Dockerfile."""
    (hc,) = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    cmd = hc[hc.index("CMD ") + 4 :]
    return json.loads(cmd)


def load_kubecluster_module():
    """deploy/python/kubecluster.py imported as a module (no cluster needed)."""
    path = DEPLOY / "python" / "kubecluster.py"
    spec = importlib.util.spec_from_file_location("deploy_kubecluster", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

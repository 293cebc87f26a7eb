"""Every scheduler command line we ship starts the real binary; /health answers.

Sources of command lines: the scheduler container of every DaskCluster and
DaskJob under deploy/, the spec of deploy/python/kubecluster.py, the args the
dask/dask Helm chart renders from deploy/helm/values.yaml, the Dockerfile's
CMD, and the three forms the operator and the guides use.  Each runs as the
image runs it: looked up on a PATH whose first directory holds
`dask-scheduler` (the release binary) and `dask` (the shim), in front of the
pinned Python environment, with the container's env.

Only option values are changed, so that tests never bind the real
8786/8787 or all interfaces: `--host` -> 127.0.0.1, `--port` and the
`--dashboard-address` port -> free ports (appended when the args rely on the
defaults).  That the unmapped values bind 0.0.0.0:8786 / 0.0.0.0:8787 is
covered by the CLI unit tests in crates/server/src/cli.rs (listen_addresses,
dashboard_addresses).  Statically, the port each probe names is checked to be
the dashboard port the args ask for.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import yaml
from deploy_util import (
    BINARY,
    DEPLOY,
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_PORT,
    all_documents,
    cluster_specs,
    container_port,
    declared_ports,
    dockerfile_instructions,
    free_port,
    healthcheck_argv,
    http_get,
    load_kubecluster_module,
    localize,
    running,
    scheduler_container,
)


def _argv(container: dict) -> list[str]:
    return list(container.get("command", [])) + list(container.get("args", []))


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def _helm_case():
    with open(DEPLOY / "helm" / "values.yaml") as f:
        values = yaml.safe_load(f)
    s = values["scheduler"]
    # dask/dask chart templates/dask-scheduler-deployment.yaml: the args.
    argv = ["dask-scheduler", f"--port={s['servicePort']}", "--dashboard-address=:8787"]
    argv += list(s.get("extraArgs") or [])
    probe = s["readinessProbe"]["httpGet"]
    # The chart's container ports are unnamed 8786/8787: numeric probe ports;
    # its Service targets 8786 for the scheduler port.
    return argv, {}, probe["port"], probe["path"], 8786


def _sources():
    """(id, argv, env, probe port, probe path, comm port) of every command line."""
    out = []
    for path, index, doc in all_documents():
        for spec in cluster_specs(doc):
            c = scheduler_container(spec)
            probe = c["readinessProbe"]["httpGet"]
            out.append(
                (
                    f"{path.relative_to(DEPLOY)}#{index}",
                    _argv(c),
                    _env(c),
                    container_port(c, probe["port"]),
                    probe["path"],
                    container_port(c, "tcp-comm"),
                )
            )
    spec = load_kubecluster_module().make_spec()
    c = spec["spec"]["scheduler"]["spec"]["containers"][0]
    probe = c["readinessProbe"]["httpGet"]
    out.append(
        (
            "python/kubecluster.py",
            _argv(c),
            _env(c),
            container_port(c, probe["port"]),
            probe["path"],
            container_port(c, "tcp-comm"),
        )
    )
    out.append(("helm/values.yaml", *_helm_case()))
    (cmd,) = [rest for w, rest in dockerfile_instructions() if w == "CMD"]
    out.append(("Dockerfile CMD", json.loads(cmd), {}, DEFAULT_DASHBOARD_PORT, "/health", DEFAULT_PORT))
    for argv in (
        ["dask-scheduler"],
        ["dask-scheduler", "--host", "0.0.0.0"],
        ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address", ":8787"],
    ):
        out.append((" ".join(argv), argv, {}, DEFAULT_DASHBOARD_PORT, "/health", DEFAULT_PORT))
    return out


SOURCES = _sources()


@pytest.mark.parametrize(
    "argv,probe_port,comm_port",
    [pytest.param(a, pp, cp, id=i) for i, a, _, pp, _, cp in SOURCES],
)
def test_probe_and_service_ports_match_the_args(argv, probe_port, comm_port):
    assert argv[0] in ("dask-scheduler", "dask"), argv
    if argv[0] == "dask":
        assert argv[1] == "scheduler"
    port, dash_port = declared_ports(argv)
    assert probe_port == dash_port, "the probe must target the dashboard port the args open"
    assert comm_port == port, "tcp-comm must be the port the args listen on"


def _unique_runs():
    """One run per distinct (argv, env, probe path); ids name every source."""
    runs: dict[str, list] = {}
    for ident, argv, env, _, path, _ in SOURCES:
        key = json.dumps([argv, env, path], sort_keys=True)
        runs.setdefault(key, [argv, env, path, []])[3].append(ident)
    return [pytest.param(a, e, p, id=" | ".join(ids)) for a, e, p, ids in runs.values()]


@pytest.mark.parametrize("argv,env,probe_path", _unique_runs())
def test_scheduler_args_start_the_binary(argv, env, probe_path):
    test_port, test_dash = free_port(), free_port()
    local = localize(argv, test_port, test_dash)
    with running(local, test_dash, env) as proc:
        status, body = http_get(test_dash, probe_path)
        assert (status, body) == (200, "ok")
        # The comm port accepts connections too.
        with socket.create_connection(("127.0.0.1", test_port), timeout=5):
            pass
        assert proc.poll() is None


def test_a_client_uses_the_shim_started_scheduler():
    from distributed import Client

    port, dash = free_port(), free_port()
    argv = localize(["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address", ":8787"], port, dash)
    with running(argv, dash):
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            info = c.scheduler_info()
            assert info["address"].endswith(f":{port}")
            assert info["services"].get("dashboard") == dash


def test_dockerfile_healthcheck_command_against_the_binary():
    hc = healthcheck_argv()
    port, dash = free_port(), free_port()
    # python3 on the image's PATH; here the system one (urllib is stdlib).
    env = dict(os.environ, DASK_DASHBOARD_PORT=str(dash))
    with running(localize(["dask-scheduler"], port, dash), dash):
        ok = subprocess.run(hc, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    # Scheduler gone: the same command now reports unhealthy.
    down = subprocess.run(hc, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode != 0


def test_scrape_annotation_port_serves_metrics():
    """prometheus.io/port + path of the manifests answer on the running binary."""
    (doc,) = [d for p, _, d in all_documents() if p.name == "rapids-dask-cluster.yaml"]
    ann = doc["spec"]["scheduler"]["metadata"]["annotations"]
    c = scheduler_container(doc["spec"])
    assert int(ann["prometheus.io/port"]) == declared_ports(_argv(c))[1]
    port, dash = free_port(), free_port()
    with running(localize(_argv(c), port, dash), dash):
        status, body = http_get(dash, ann["prometheus.io/path"])
    if status == 404:
        pytest.skip("this build of the binary has no /metrics route yet")
    assert status == 200
    assert "# TYPE" in body

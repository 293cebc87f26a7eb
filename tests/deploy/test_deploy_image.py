"""The image recipe without a container engine.

No engine can build images here, so: the Dockerfile is parsed and checked for
the required pieces; its build commands are compared with
scripts/build-image.sh, which is run (without cargo) to stage the image files;
the `dask` shim and install-shims.sh are run for real against the release
binary and the pinned Python `dask` CLI; the GKE script runs in dry-run mode.
(The HEALTHCHECK command is run against a live scheduler in
test_deploy_scheduler_args.py.)
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
from deploy_util import (
    BINARY,
    DEPLOY,
    DOCKERFILE,
    INSTALL_SHIMS,
    PYTHON,
    ROOT,
    SHIM,
    VENV_BIN,
    dockerfile_instructions,
    healthcheck_argv,
    stages,
)

BUILD_SCRIPT = ROOT / "scripts" / "build-image.sh"
GKE_SCRIPT = DEPLOY / "gke" / "create-cluster.sh"

RUST_VERSION_MARK = "Rust dask-scheduler"


def _need_binary():
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: run `cargo build --release` first")


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_on_base_image():
    groups = stages()
    global_args = dict(
        rest.split("=", 1) for word, rest in groups[0] if word == "ARG" and "=" in rest
    )
    assert global_args["BASE_IMAGE"].startswith("nvcr.io/nvidia/rapidsai/base:")
    froms = [g[0][1] for g in groups[1:]]
    assert len(froms) >= 2
    assert re.fullmatch(r"\$\{RUST_IMAGE\} AS build", froms[0])
    assert froms[-1] == "${BASE_IMAGE}"
    final = groups[-1]
    copies = [rest for word, rest in final if word == "COPY"]
    assert any(c.startswith("--from=build ") for c in copies)


def test_dockerfile_final_stage_pieces():
    final = stages()[-1]
    words = [w for w, _ in final]
    expose = " ".join(rest for w, rest in final if w == "EXPOSE").split()
    assert {"8786", "8787"} <= set(expose)
    # The last USER is not root (a numeric uid: runAsNonRoot can check it).
    users = [rest for w, rest in final if w == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert words.index("USER") < words.index("RUN"), "installs need root (USER root first)"
    args = dict(rest.split("=", 1) for w, rest in final if w == "ARG" and "=" in rest)
    last_user = users[-1]
    if last_user.startswith("${"):
        assert int(args[last_user[2:-1]]) > 0
    labels = " ".join(rest for w, rest in final if w == "LABEL")
    for key in ("title", "description", "version", "licenses", "source", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels
    env = " ".join(rest for w, rest in final if w == "ENV")
    assert "PATH=/opt/dask-scheduler-rs/bin:" in env
    runs = " ".join(rest for w, rest in final if w == "RUN")
    assert "install-shims.sh /opt/dask-scheduler-rs" in runs
    assert healthcheck_argv()[0] == "python3"
    assert "/health" in " ".join(healthcheck_argv())
    (cmd,) = [rest for w, rest in final if w == "CMD"]
    assert json.loads(cmd)[0] == "dask-scheduler"


def test_dockerignore_keeps_the_context_small():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", ".venv", ".git"} <= ignored
    for needed in ("crates", "Cargo.toml", "Cargo.lock", "deploy"):
        assert needed not in ignored


def test_build_commands_match_the_script():
    build = stages()[1]
    runs = [rest for w, rest in build if w == "RUN"]
    cargo = [r for r in runs if r.startswith("cargo ")]
    assert cargo == ["cargo build --release --locked -p dask-scheduler"]
    script = BUILD_SCRIPT.read_text()
    script_lines = [line.strip() for line in script.splitlines()]
    assert cargo[0] in script_lines
    # The staging `install -D` lines: the same, with /out -> "$out".
    installs = [
        part.strip()
        for r in runs
        if r.startswith("install ")
        for part in r.split("&&")
    ]
    assert len(installs) == 3
    for line in installs:
        expected = re.sub(r"/out(/\S+)", r'"$out\1"', line)
        assert expected in script_lines, expected


def test_build_script_stages_a_working_layout(tmp_path):
    _need_binary()
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--no-cargo", "--stage", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    bin_dir = tmp_path / "opt" / "dask-scheduler-rs" / "bin"
    for argv in ([bin_dir / "dask-scheduler", "--version"], [bin_dir / "dask", "scheduler", "--version"]):
        v = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
        assert RUST_VERSION_MARK in v
    assert os.access(tmp_path / "opt" / "dask-scheduler-rs" / "libexec" / "install-shims.sh", os.X_OK)


def test_build_script_docker_fails_clearly_without_an_engine(tmp_path):
    _need_binary()
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
        pytest.skip("a container engine is reachable here")
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--no-cargo", "--stage", str(tmp_path), "--docker", "t:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "no reachable container engine" in out.stderr
    assert "docker build" in out.stderr


# ---------------------------------------------------------------------- shim


def _python_dask_version() -> str:
    return importlib.metadata.version("dask")


def test_shim_scheduler_execs_the_binary_with_args_unchanged():
    _need_binary()
    env = dict(os.environ, DASK_SCHEDULER_BIN=str(BINARY))
    v = subprocess.run([str(SHIM), "scheduler", "--version"], capture_output=True, text=True, env=env, timeout=30)
    assert v.returncode == 0 and RUST_VERSION_MARK in v.stdout
    h = subprocess.run([str(SHIM), "scheduler", "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert "--dashboard-address" in h.stdout and "--materializer-pool-size" in h.stdout
    bad = subprocess.run(
        [str(SHIM), "scheduler", "--no-such-option"], capture_output=True, text=True, env=env, timeout=30
    )
    assert bad.returncode != 0 and "--no-such-option" in bad.stderr


def test_shim_passes_everything_else_to_the_python_cli():
    path = os.pathsep.join([str(VENV_BIN), "/usr/bin", "/bin"])
    env = dict(os.environ, PATH=path)
    v = subprocess.run([str(SHIM), "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert v.returncode == 0, v.stderr
    assert v.stdout.strip().endswith(_python_dask_version())
    assert RUST_VERSION_MARK not in v.stdout
    w = subprocess.run([str(SHIM), "worker", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert w.returncode == 0 and "--nthreads" in w.stdout  # distributed's own `dask worker`


def test_shim_falls_back_to_python_m_dask(tmp_path):
    # No other `dask` on PATH: the shim runs `python -m dask` (DASK_SHIM_PYTHON).
    env = dict(os.environ, PATH=os.pathsep.join(["/usr/bin", "/bin"]), DASK_SHIM_PYTHON=str(PYTHON))
    v = subprocess.run([str(SHIM), "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert v.returncode == 0, v.stderr
    assert v.stdout.strip().endswith(_python_dask_version())


def test_shim_reports_a_missing_binary(tmp_path):
    env = dict(os.environ, DASK_SCHEDULER_BIN=str(tmp_path / "nope"))
    out = subprocess.run([str(SHIM), "scheduler"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 127 and "missing" in out.stderr


def _fake_image(tmp_path, with_python=True):
    """A prefix with the staged files and a 'base image' Python bin dir."""
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    shutil.copy(BINARY, prefix / "bin" / "dask-scheduler")
    shutil.copy(SHIM, prefix / "bin" / "dask")
    env_bin = tmp_path / "env" / "bin"
    env_bin.mkdir(parents=True)
    shutil.copy(VENV_BIN / "dask", env_bin / "dask")  # the real console script
    legacy = env_bin / "dask-scheduler"  # an older distributed's entry point
    legacy.write_text("#!/bin/sh\necho python-dask-scheduler\n")
    legacy.chmod(0o755)
    env = dict(os.environ, PATH=os.pathsep.join([str(env_bin), "/usr/bin", "/bin"]))
    env["DASK_SCHEDULER_PYTHON"] = str(PYTHON) if with_python else "/bin/false"
    return prefix, env_bin, env


def test_install_shims_rewires_the_base_image_entry_points(tmp_path):
    _need_binary()
    prefix, env_bin, env = _fake_image(tmp_path)
    run = subprocess.run(["sh", str(INSTALL_SHIMS), str(prefix)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr + run.stdout
    assert os.path.realpath(env_bin / "dask-scheduler") == str(prefix / "bin" / "dask-scheduler")
    assert os.path.realpath(env_bin / "dask") == str(prefix / "bin" / "dask")
    assert (env_bin / "dask.python").exists() and (env_bin / "dask-scheduler.python").exists()
    # Python env first on PATH (as after `conda activate`): still the Rust scheduler.
    for argv in (["dask-scheduler", "--version"], ["dask", "scheduler", "--version"]):
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        assert RUST_VERSION_MARK in out.stdout, (argv, out.stdout, out.stderr)
    # ... and every other `dask` subcommand is the original Python CLI.
    out = subprocess.run(["dask", "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and RUST_VERSION_MARK not in out.stdout
    assert out.stdout.strip().endswith(_python_dask_version())
    # Idempotent.
    again = subprocess.run(["sh", str(INSTALL_SHIMS), str(prefix)], capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "original kept" not in again.stdout
    assert (env_bin / "dask.python").read_bytes() == (VENV_BIN / "dask").read_bytes()


def test_install_shims_fails_without_the_materializer_python(tmp_path):
    _need_binary()
    prefix, _, env = _fake_image(tmp_path, with_python=False)
    run = subprocess.run(["sh", str(INSTALL_SHIMS), str(prefix)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode != 0
    assert "cannot import dask and distributed" in run.stderr


# ----------------------------------------------------------------------- GKE


def _gke(**env):
    full = dict(os.environ, DRY_RUN="1", **env)
    out = subprocess.run(["bash", str(GKE_SCRIPT)], capture_output=True, text=True, env=full, timeout=30)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line[2:]) for line in out.stdout.splitlines() if line.startswith("+ ")]


def test_gke_script_creates_the_rapids_node_pools():
    cmds = _gke()
    create, pool = cmds[0], cmds[1]
    assert create[:4] == ["gcloud", "container", "clusters", "create"]
    assert "type=nvidia-tesla-a100,count=2,gpu-driver-version=default" in create
    assert pool[:5] == ["gcloud", "container", "node-pools", "create", "scheduler-pool"]
    assert "type=nvidia-tesla-t4,count=1,gpu-driver-version=default" in pool
    assert pool[pool.index("--node-labels") + 1] == "dedicated=scheduler"
    assert pool[pool.index("--num-nodes") + 1] == "1"
    assert "--node-taints" not in pool
    assert any(c[:2] == ["helm", "install"] and "dask-kubernetes-operator" in c for c in cmds)


def test_gke_script_names_are_variables():
    cmds = _gke(CLUSTER_NAME="c1", ZONE="europe-west4-a", SCHEDULER_POOL="sp", SCHEDULER_TAINT="1")
    text = " ".join(" ".join(c) for c in cmds)
    assert "rapids-gpu" not in text and "us-central1" not in text and "scheduler-pool" not in text
    pool = cmds[1]
    assert pool[4] == "sp" and pool[pool.index("--cluster") + 1] == "c1"
    assert pool[pool.index("--node-taints") + 1] == "dedicated=scheduler:NoSchedule"

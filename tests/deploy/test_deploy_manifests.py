"""The manifests under deploy/: schema validation (offline) and their content.

Dask operator resources validate against the CRDs in the pinned
dask-kubernetes wheel; core objects (the Deployments/Services the operator
makes from our DaskClusters) against the kubernetes client's models; see
k8s_schema.py for how, and for the limits.  Every validator is shown to fail
on bad input too.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess

import pytest
import yaml
from dask_kubernetes.operator.controller.controller import (
    build_job_pod_spec,
    build_scheduler_deployment_spec,
    build_scheduler_service_spec,
    build_worker_deployment_spec,
)
from deploy_util import (
    DEPLOY,
    MANIFESTS,
    PYTHON,
    ROOT,
    all_documents,
    cluster_specs,
    container_port,
    load_docs,
    load_kubecluster_module,
    scheduler_container,
)
from k8s_schema import (
    SchemaError,
    crd_schemas,
    validate_core_object,
    validate_crd_object,
    validate_document,
    validate_model,
    validate_monitor,
)

DOCS = all_documents()
SCHEDULER_IMAGE_REPO = "ghcr.io/your-org/dask-scheduler-rs"


def _id(path, index):
    return f"{path.relative_to(DEPLOY)}#{index}"


def _docs_of_kind(kind):
    return [(p, i, d) for p, i, d in DOCS if d.get("kind") == kind]


def _dockerfile_base_image():
    text = (ROOT / "Dockerfile").read_text()
    return re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1)


# ---------------------------------------------------------------- validation


def test_crds_come_from_the_pinned_wheel():
    kinds = {kind for (_, kind) in crd_schemas()}
    assert {"DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler"} <= kinds


def test_every_kind_is_shipped():
    kinds = {d.get("kind") for _, _, d in DOCS}
    for kind in ("DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler", "PodMonitor", "ServiceMonitor"):
        assert kind in kinds, f"no {kind} under deploy/"


@pytest.mark.parametrize("path,index,doc", DOCS, ids=[_id(p, i) for p, i, _ in DOCS])
def test_manifest_validates(path, index, doc):
    used = validate_document(doc)
    if doc["apiVersion"].startswith("kubernetes.dask.org/"):
        assert used == "crd"


def _rapids():
    (doc,) = load_docs(DEPLOY / "kubernetes" / "rapids-dask-cluster.yaml")
    return doc


def _sched(doc):
    return doc["spec"]["scheduler"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    "mutate,expect",
    [
        (lambda d: _sched(d).__setitem__("imagePulPolicy", "Always"), "imagePulPolicy"),
        (lambda d: d["spec"]["scheduler"]["spec"].__setitem__("afinity", {}), "afinity"),
        (lambda d: d["spec"].__setitem__("workers", {}), "workers"),
        (lambda d: d["spec"]["worker"].__setitem__("replicas", "two"), "replicas"),
        (lambda d: _sched(d)["ports"][0].__setitem__("containerPort", "8786"), "containerPort"),
        (lambda d: _sched(d)["ports"][0].__setitem__("containerPort", 2**40), "containerPort"),
        # The operator's CRD types quantities and probe ports as strings.
        (lambda d: _sched(d)["resources"]["limits"].__setitem__("nvidia.com/gpu", 1), "nvidia.com/gpu"),
        (lambda d: d["spec"]["scheduler"].pop("service"), "service"),
        (lambda d: _sched(d).pop("name"), "name"),
        (lambda d: d["metadata"].__setitem__("lables", {}), "lables"),
        (lambda d: d.__setitem__("kind", "DaskClusterr"), "DaskClusterr"),
    ],
    ids=[
        "misspelled-container-field",
        "misspelled-podspec-field",
        "unknown-spec-field",
        "replicas-not-int",
        "port-not-int",
        "port-out-of-int32",
        "quantity-not-string",
        "missing-service",
        "missing-container-name",
        "misspelled-metadata-field",
        "unknown-kind",
    ],
)
def test_crd_validator_rejects(mutate, expect):
    doc = _rapids()
    validate_crd_object(doc)
    mutate(doc)
    with pytest.raises(SchemaError) as e:
        validate_document(doc)
    assert expect in str(e.value)


def test_crd_validator_prunes_nulls_like_the_api_server():
    doc = _rapids()
    _sched(doc)["env"] = None  # make_cluster_spec(env=None) sends this
    validate_crd_object(doc)
    doc["spec"]["worker"]["spec"] = None  # but a required object stays required
    with pytest.raises(SchemaError, match="spec"):
        validate_crd_object(doc)


def test_worker_group_and_autoscaler_validators_reject():
    (group,) = load_docs(DEPLOY / "kubernetes" / "cpu-worker-group.yaml")
    bad = copy.deepcopy(group)
    del bad["spec"]["cluster"]
    with pytest.raises(SchemaError, match="cluster"):
        validate_crd_object(bad)
    (scaler,) = load_docs(DEPLOY / "kubernetes" / "rapids-dask-autoscaler.yaml")
    bad = copy.deepcopy(scaler)
    bad["spec"]["maximum"] = "8"
    with pytest.raises(SchemaError, match="maximum"):
        validate_crd_object(bad)


def _operator_objects(path, doc):
    """The core objects the operator would create from a DaskCluster/DaskJob."""
    name = doc["metadata"]["name"]
    out = []
    for spec in cluster_specs(doc):
        sched = spec["scheduler"]
        meta = sched.get("metadata", {})
        out.append(
            build_scheduler_deployment_spec(
                name, sched["spec"], meta.get("annotations", {}), meta.get("labels", {})
            )
        )
        out.append(
            build_scheduler_service_spec(
                name, sched["service"], meta.get("annotations", {}), meta.get("labels", {})
            )
        )
        out.append(
            build_worker_deployment_spec(
                f"{name}-default", "default", name, "abcde", spec["worker"]["spec"], {}, {}
            )
        )
    if doc["kind"] == "DaskJob":
        out.append(build_job_pod_spec(name, name, "default", doc["spec"]["job"]["spec"], {}, {}))
    if doc["kind"] == "DaskWorkerGroup":
        out.append(
            build_worker_deployment_spec(
                name, "default", doc["spec"]["cluster"], "abcde", doc["spec"]["worker"]["spec"], {}, {}
            )
        )
    return out


OPERATOR_INPUTS = [(p, i, d) for p, i, d in DOCS if d["kind"] in ("DaskCluster", "DaskJob", "DaskWorkerGroup")]


@pytest.mark.parametrize(
    "path,index,doc", OPERATOR_INPUTS, ids=[_id(p, i) for p, i, _ in OPERATOR_INPUTS]
)
def test_operator_generated_core_objects_validate(path, index, doc):
    objs = _operator_objects(path, doc)
    assert objs
    for obj in objs:
        validate_core_object(obj)


def test_core_validator_rejects():
    doc = _rapids()
    dep = build_scheduler_deployment_spec("c", doc["spec"]["scheduler"]["spec"], {}, {})
    validate_core_object(dep)
    cases = [
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("imagePulPolicy", "x"), "imagePulPolicy"),
        (lambda d: d["spec"].__setitem__("replicas", "1"), "replicas"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"), "name"),
        (lambda d: d["spec"]["template"]["spec"].__setitem__("tolerations", {"key": "x"}), "tolerations"),
        (lambda d: d.__setitem__("kind", "Deploymentt"), "Deploymentt"),
    ]
    for mutate, expect in cases:
        bad = copy.deepcopy(dep)
        mutate(bad)
        with pytest.raises(SchemaError) as e:
            validate_core_object(bad)
        assert expect in str(e.value)


def test_monitor_validator_rejects():
    (pm,) = load_docs(DEPLOY / "prometheus" / "podmonitor.yaml")
    validate_monitor(pm)
    for mutate, expect in [
        (lambda d: d["spec"]["podMetricsEndpoints"][0].__setitem__("paht", "/metrics"), "paht"),
        (lambda d: d["spec"]["podMetricsEndpoints"][0].__setitem__("interval", "15 seconds"), "15 seconds"),
        (lambda d: d["spec"]["selector"].__setitem__("matchLabel", {}), "matchLabel"),
        (lambda d: d["spec"].pop("selector"), "selector"),
    ]:
        bad = copy.deepcopy(pm)
        mutate(bad)
        with pytest.raises(SchemaError) as e:
            validate_monitor(bad)
        assert expect in str(e.value)


# ------------------------------------------------------------------- content


def _preferred_scheduler_affinity(pod_spec):
    terms = pod_spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    return any(
        e["key"] == "dedicated" and e["operator"] == "In" and "scheduler" in e["values"]
        for t in terms
        for e in t["preference"]["matchExpressions"]
    )


CLUSTERS = [(p, i, s) for p, i, d in DOCS for s in cluster_specs(d)]


@pytest.mark.parametrize("path,index,spec", CLUSTERS, ids=[_id(p, i) for p, i, _ in CLUSTERS])
def test_scheduler_pod_matches_the_operator_contract(path, index, spec):
    c = scheduler_container(spec)
    assert c["image"].startswith(SCHEDULER_IMAGE_REPO + ":")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"port": "http-dashboard", "path": "/health"}
    svc = spec["scheduler"]["service"]
    assert svc["type"] == "ClusterIP"
    assert {p["name"]: p["targetPort"] for p in svc["ports"]} == {
        "tcp-comm": "tcp-comm",
        "http-dashboard": "http-dashboard",
    }
    assert svc["selector"]["dask.org/component"] == "scheduler"
    ann = spec["scheduler"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == container_port(c, "http-dashboard")
    # GPU workers: dask-cuda-worker, one GPU each, declaring GPU=1.
    (w,) = spec["worker"]["spec"]["containers"]
    assert w["args"][0] == "dask-cuda-worker"
    i = w["args"].index("--resources")
    assert w["args"][i + 1] == "GPU=1"
    assert w["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert w["image"] == _dockerfile_base_image()


def test_rapids_cluster_scheduler_gpu_and_affinity():
    doc = _rapids()
    pod = doc["spec"]["scheduler"]["spec"]
    assert _sched(doc)["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert _preferred_scheduler_affinity(pod)
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["nodeAffinity"]
    assert "tolerations" not in pod


def test_tainted_variant_only_adds_the_toleration():
    (tainted,) = load_docs(DEPLOY / "kubernetes" / "rapids-dask-cluster-tainted.yaml")
    pod = tainted["spec"]["scheduler"]["spec"]
    assert pod.pop("tolerations") == [
        {"key": "dedicated", "operator": "Equal", "value": "scheduler", "effect": "NoSchedule"}
    ]
    assert tainted == _rapids()


def test_cpu_scheduler_variant_asks_for_no_gpu():
    (doc,) = load_docs(DEPLOY / "kubernetes" / "rapids-dask-cluster-cpu-scheduler.yaml")
    c = _sched(doc)
    for kind in ("limits", "requests"):
        assert "nvidia.com/gpu" not in c["resources"].get(kind, {})
    assert "affinity" not in doc["spec"]["scheduler"]["spec"]
    assert doc["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_cpu_worker_group_joins_a_shipped_cluster():
    cluster_names = {d["metadata"]["name"] for _, _, d in _docs_of_kind("DaskCluster")}
    for _, _, group in _docs_of_kind("DaskWorkerGroup"):
        assert group["spec"]["cluster"] in cluster_names
        (c,) = group["spec"]["worker"]["spec"]["containers"]
        assert c["args"][:2] == ["dask", "worker"]
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
        assert "--resources" not in c["args"]
    for _, _, scaler in _docs_of_kind("DaskAutoscaler"):
        assert scaler["spec"]["cluster"] in cluster_names
        assert 0 <= scaler["spec"]["minimum"] <= scaler["spec"]["maximum"]


def test_daskjob_runs_against_its_own_cluster():
    ((_, _, job),) = _docs_of_kind("DaskJob")
    cluster = job["spec"]["cluster"]["spec"]
    assert cluster["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == job["metadata"]["name"]
    assert _preferred_scheduler_affinity(cluster["scheduler"]["spec"])
    (runner,) = job["spec"]["job"]["spec"]["containers"]
    compile(runner["args"][-1], "daskjob-runner", "exec")


def test_monitors_select_what_the_operator_creates():
    doc = _rapids()
    sched = doc["spec"]["scheduler"]
    dep = build_scheduler_deployment_spec("rapids-dask-cluster", sched["spec"], {}, {})
    svc = build_scheduler_service_spec("rapids-dask-cluster", sched["service"], {}, {})
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    pod_ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    ((_, _, pm),) = _docs_of_kind("PodMonitor")
    ((_, _, sm),) = _docs_of_kind("ServiceMonitor")
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    for ep in pm["spec"]["podMetricsEndpoints"]:
        assert ep["port"] == "http-dashboard" and ep["port"] in pod_ports
        assert ep["path"] == "/metrics"
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] == "http-dashboard" and ep["port"] in svc_ports
        assert ep["path"] == "/metrics"


# ------------------------------------------------------- deploy/python, helm


def test_kubecluster_spec_validates_and_carries_the_affinity():
    mod = load_kubecluster_module()
    for tolerate in (False, True):
        spec = mod.make_spec(tolerate_scheduler_taint=tolerate)
        validate_crd_object(spec)
        pod = spec["spec"]["scheduler"]["spec"]
        assert _preferred_scheduler_affinity(pod)
        assert ("tolerations" in pod) == tolerate
        c = pod["containers"][0]
        assert c["image"] == mod.SCHEDULER_IMAGE
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert c["readinessProbe"]["httpGet"] == {"port": "http-dashboard", "path": "/health"}
        w = spec["spec"]["worker"]["spec"]["containers"][0]
        assert w["args"][0] == "dask-cuda-worker"
        assert w["args"][-2:] == ["--resources", "GPU=1"]
        assert w["image"] == mod.WORKER_IMAGE == _dockerfile_base_image()
        assert c["image"].startswith(SCHEDULER_IMAGE_REPO + ":")
        for op in ("Deployment", "Service"):
            fn = build_scheduler_deployment_spec if op == "Deployment" else build_scheduler_service_spec
            part = pod if op == "Deployment" else spec["spec"]["scheduler"]["service"]
            validate_core_object(fn("rapids-dask-cluster", part, {}, {}))


def test_kubecluster_print_spec_runs_without_a_cluster():
    env = dict(os.environ, KUBECONFIG=os.devnull)
    out = subprocess.run(
        [str(PYTHON), str(DEPLOY / "python" / "kubecluster.py"), "--print-spec", "--workers", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    ).stdout
    spec = yaml.safe_load(out)
    validate_crd_object(spec)
    assert spec["spec"]["worker"]["replicas"] == 3
    assert _preferred_scheduler_affinity(spec["spec"]["scheduler"]["spec"])


def _helm_values():
    with open(DEPLOY / "helm" / "values.yaml") as f:
        return yaml.safe_load(f)


#: Keys of the dask/dask chart's values.yaml (chart appVersion 2025.11.0) that
#: our values use: a hand-kept list (the chart ships no values.schema.json).
CHART_KEYS = {
    "scheduler": {
        "name", "enabled", "image", "replicas", "serviceType", "loadBalancerIP", "servicePort",
        "serviceAnnotations", "env", "extraArgs", "resources", "tolerations", "affinity",
        "nodeSelector", "securityContext", "serviceAccountName", "metrics", "livenessProbe",
        "readinessProbe",
    },
    "worker": {
        "name", "image", "replicas", "strategy", "custom_scheduler_url", "default_resources", "env",
        "extraArgs", "resources", "mounts", "annotations", "tolerations", "affinity", "nodeSelector",
        "securityContext", "serviceAccountName", "port", "portDashboard", "threads_per_worker",
        "metrics", "livenessProbe", "readinessProbe",
    },
    "image": {"repository", "tag", "pullPolicy", "pullSecrets", "dask_worker"},
    "top": {"nameOverride", "fullnameOverride", "scheduler", "webUI", "worker", "additional_worker_groups", "jupyter"},
}


def _check_chart_group(group, keys):
    assert set(group) <= keys, set(group) - keys
    assert set(group.get("image", {})) <= CHART_KEYS["image"]
    for field, model in [
        ("resources", "V1ResourceRequirements"),
        ("affinity", "V1Affinity"),
        ("tolerations", "List[V1Toleration]"),
        ("livenessProbe", "V1Probe"),
        ("readinessProbe", "V1Probe"),
        ("env", "List[V1EnvVar]"),
        ("securityContext", "V1PodSecurityContext"),
    ]:
        if group.get(field):
            validate_model(group[field], model)


def test_helm_values_fragments_validate():
    values = _helm_values()
    assert set(values) <= CHART_KEYS["top"]
    _check_chart_group(values["scheduler"], CHART_KEYS["scheduler"])
    _check_chart_group(values["worker"], CHART_KEYS["worker"])
    for group in values["additional_worker_groups"]:
        _check_chart_group(group, CHART_KEYS["worker"] | {"name"})
    bad = copy.deepcopy(values["scheduler"]["affinity"])
    bad["nodeAfinity"] = bad.pop("nodeAffinity")
    with pytest.raises(SchemaError, match="nodeAfinity"):
        validate_model(bad, "V1Affinity")


def test_helm_values_swap_the_scheduler_and_add_a_gpu_group():
    values = _helm_values()
    img = values["scheduler"]["image"]
    (doc,) = load_docs(DEPLOY / "kubernetes" / "rapids-dask-cluster.yaml")
    assert f"{img['repository']}:{img['tag']}" == _sched(doc)["image"]
    assert _preferred_scheduler_affinity(values["scheduler"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert values["scheduler"][probe]["httpGet"] == {"path": "/health", "port": 8787}
    gpu = [g for g in values["additional_worker_groups"] if g["name"] == "gpu"]
    assert len(gpu) == 1
    (g,) = gpu
    assert g["image"]["dask_worker"] == "dask-cuda-worker"
    assert g["extraArgs"] == ["--resources", "GPU=1"]
    assert g["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert f"{g['image']['repository']}:{g['image']['tag']}" == _dockerfile_base_image()


def test_every_manifest_is_covered():
    # Every YAML file under deploy/ is either validated here or is the Helm
    # values file (checked by the helm tests above); every document is a
    # Kubernetes object with apiVersion and kind.
    files = {
        os.path.relpath(os.path.join(d, f), DEPLOY)
        for d, _, fs in os.walk(DEPLOY)
        for f in fs
        if f.endswith((".yaml", ".yml"))
    }
    validated = {p.relative_to(DEPLOY).as_posix() for p in MANIFESTS}
    assert files - validated == {"helm/values.yaml"}
    for path, index, doc in DOCS:
        assert doc.get("apiVersion") and doc.get("kind"), _id(path, index)

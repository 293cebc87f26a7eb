"""A RAPIDS cluster with the Rust dask-scheduler, started from Python.

The ``KubeCluster`` route of the RAPIDS guides: build the ``DaskCluster``
spec with the operator's :func:`make_cluster_spec`, swap in the scheduler
image, prefer the ``dedicated=scheduler`` node pool for the scheduler, then
``KubeCluster(custom_cluster_spec=spec)``, ``cluster.scale(...)`` and
``Client(cluster)``.

Needs the Dask Kubernetes operator in the cluster and a kubeconfig::

    python deploy/python/kubecluster.py              # start, run a GPU task, close
    python deploy/python/kubecluster.py --print-spec # only print the spec (no cluster)
"""

from __future__ import annotations

import argparse
import copy
import sys

import yaml
from dask_kubernetes.operator import make_cluster_spec

#: The scheduler image (Dockerfile / scripts/build-image.sh on top of WORKER_IMAGE).
SCHEDULER_IMAGE = "ghcr.io/your-org/dask-scheduler-rs:rapids-26.10-cuda12-py3.12"
#: The RAPIDS image the GPU workers run (the scheduler image's BASE_IMAGE).
WORKER_IMAGE = "nvcr.io/nvidia/rapidsai/base:26.10-cuda12-py3.12"

#: Prefer (not require) the node pool labelled dedicated=scheduler.
SCHEDULER_AFFINITY = {
    "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "preference": {
                    "matchExpressions": [
                        {"key": "dedicated", "operator": "In", "values": ["scheduler"]}
                    ]
                },
            }
        ]
    }
}


def make_spec(
    name: str = "rapids-dask-cluster",
    n_workers: int = 2,
    scheduler_image: str = SCHEDULER_IMAGE,
    worker_image: str = WORKER_IMAGE,
    tolerate_scheduler_taint: bool = False,
) -> dict:
    """The ``DaskCluster`` spec: GPU workers, Rust scheduler on the scheduler pool."""
    spec = make_cluster_spec(
        name=name,
        image=worker_image,
        n_workers=n_workers,
        # One GPU for each worker and for the scheduler (a string: the
        # operator's CRD types resource quantities as strings).
        resources={"limits": {"nvidia.com/gpu": "1"}},
        worker_command="dask-cuda-worker",
    )
    # make_cluster_spec shares one resources dict between the two pods.
    spec = copy.deepcopy(spec)
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    worker["args"] += ["--resources", "GPU=1"]

    scheduler_pod = spec["spec"]["scheduler"]["spec"]
    scheduler_pod["containers"][0]["image"] = scheduler_image
    scheduler_pod["affinity"] = SCHEDULER_AFFINITY
    if tolerate_scheduler_taint:
        scheduler_pod["tolerations"] = [
            {"key": "dedicated", "operator": "Equal", "value": "scheduler", "effect": "NoSchedule"}
        ]
    return spec


def main(argv: list[str] | None = None) -> int:
    """Start the cluster (or print its spec with ``--print-spec``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="rapids-dask-cluster")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler-image", default=SCHEDULER_IMAGE)
    p.add_argument("--worker-image", default=WORKER_IMAGE)
    p.add_argument("--tolerate-scheduler-taint", action="store_true")
    p.add_argument("--print-spec", action="store_true", help="print the DaskCluster and exit")
    args = p.parse_args(argv)

    spec = make_spec(
        name=args.name,
        n_workers=args.workers,
        scheduler_image=args.scheduler_image,
        worker_image=args.worker_image,
        tolerate_scheduler_taint=args.tolerate_scheduler_taint,
    )
    if args.print_spec:
        yaml.safe_dump(spec, sys.stdout, sort_keys=False)
        return 0

    from dask.distributed import Client
    from dask_kubernetes.operator import KubeCluster

    cluster = KubeCluster(custom_cluster_spec=spec)
    try:
        cluster.scale(args.workers)
        client = Client(cluster)
        client.wait_for_workers(1)
        print("dashboard:", cluster.dashboard_link)
        gpu = client.submit(sum, [1, 2, 3], resources={"GPU": 1}).result()
        print("a GPU worker computed", gpu)
        client.close()
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# GKE cluster for RAPIDS with a dedicated small-GPU node pool for the Dask
# scheduler (the RAPIDS "scheduler GPU optimization" guide): an A100 cluster
# for the workers plus a one-node T4 pool labelled dedicated=scheduler, then
# the Dask Kubernetes operator.
#
# Every name is a variable; override any of them in the environment:
#
#   CLUSTER_NAME=my-rapids ZONE=europe-west4-a deploy/gke/create-cluster.sh
#   DRY_RUN=1 deploy/gke/create-cluster.sh      # print the commands only
#
# SCHEDULER_TAINT=1 also taints the scheduler pool dedicated=scheduler:NoSchedule
# so that nothing but the scheduler lands there; use
# deploy/kubernetes/rapids-dask-cluster-tainted.yaml with it.
set -euo pipefail

CLUSTER_NAME=${CLUSTER_NAME:-rapids-gpu}
ZONE=${ZONE:-us-central1-c}
RELEASE_CHANNEL=${RELEASE_CHANNEL:-stable}
GPU_DRIVER_VERSION=${GPU_DRIVER_VERSION:-default}
# Worker nodes: A100s.
WORKER_ACCELERATOR=${WORKER_ACCELERATOR:-nvidia-tesla-a100}
WORKER_GPUS_PER_NODE=${WORKER_GPUS_PER_NODE:-2}
WORKER_MACHINE_TYPE=${WORKER_MACHINE_TYPE:-a2-highgpu-2g}
WORKER_NODES=${WORKER_NODES:-1}
# Scheduler pool: one node with one T4.
SCHEDULER_POOL=${SCHEDULER_POOL:-scheduler-pool}
SCHEDULER_ACCELERATOR=${SCHEDULER_ACCELERATOR:-nvidia-tesla-t4}
SCHEDULER_MACHINE_TYPE=${SCHEDULER_MACHINE_TYPE:-n1-standard-2}
SCHEDULER_NODES=${SCHEDULER_NODES:-1}
SCHEDULER_LABEL=${SCHEDULER_LABEL:-dedicated=scheduler}
SCHEDULER_TAINT=${SCHEDULER_TAINT:-0}
# The Dask Kubernetes operator.
INSTALL_OPERATOR=${INSTALL_OPERATOR:-1}
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-dask-operator}
OPERATOR_VERSION=${OPERATOR_VERSION:-2026.3.0}
DRY_RUN=${DRY_RUN:-0}

run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$DRY_RUN" != 1 ]; then
        "$@"
    fi
}

run gcloud container clusters create "$CLUSTER_NAME" \
    --accelerator "type=$WORKER_ACCELERATOR,count=$WORKER_GPUS_PER_NODE,gpu-driver-version=$GPU_DRIVER_VERSION" \
    --machine-type "$WORKER_MACHINE_TYPE" --num-nodes "$WORKER_NODES" \
    --zone "$ZONE" --release-channel "$RELEASE_CHANNEL"

taint_args=()
if [ "$SCHEDULER_TAINT" = 1 ]; then
    taint_args=(--node-taints "$SCHEDULER_LABEL:NoSchedule")
fi
run gcloud container node-pools create "$SCHEDULER_POOL" --cluster "$CLUSTER_NAME" \
    --accelerator "type=$SCHEDULER_ACCELERATOR,count=1,gpu-driver-version=$GPU_DRIVER_VERSION" \
    --machine-type "$SCHEDULER_MACHINE_TYPE" --num-nodes "$SCHEDULER_NODES" \
    --node-labels "$SCHEDULER_LABEL" "${taint_args[@]}" --zone "$ZONE"

run gcloud container clusters get-credentials "$CLUSTER_NAME" --zone "$ZONE"

if [ "$INSTALL_OPERATOR" = 1 ]; then
    run helm install --repo https://helm.dask.org --create-namespace \
        --namespace "$OPERATOR_NAMESPACE" --generate-name \
        --version "$OPERATOR_VERSION" dask-kubernetes-operator
fi

run kubectl get nodes --label-columns "${SCHEDULER_LABEL%%=*}"

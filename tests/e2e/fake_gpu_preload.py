"""Worker preload for the status-page test: makes a worker report GPU facts
the way distributed does on a machine with NVML (`startup_information["gpu"]`
at registration, `metrics["gpu"]` in every heartbeat), without a GPU."""

FAKE_GPU_NAME = "Fake GPU 80GB"
FAKE_GPU_MEMORY = 80 * 2**30


def dask_setup(worker):
    worker.startup_information["gpu"] = lambda w: {
        "name": FAKE_GPU_NAME, "memory-total": FAKE_GPU_MEMORY}
    worker.metrics["gpu"] = lambda w: {"utilization": 42, "memory-used": 2**30}

"""Issue 2, point 6: worker registration, heartbeats, clean close, and a worker
killed with SIGKILL mid-computation (rescheduling, recomputation, a worker
coming back)."""

import signal
import time
from pathlib import Path

from distributed import wait

from .cluster import WorkerSpec, wait_until
from .helpers import inc, slow_inc, unique, where_am_i


def mark_and_sleep(x, marker_dir, delay):
    """x + 1 after ``delay`` seconds; leaves a file named after the worker first."""
    from distributed import get_worker

    Path(marker_dir, f"{get_worker().name}-{x}").touch()
    time.sleep(delay)
    return x + 1


def worker_entries(client):
    return client.scheduler_info()["workers"]


def test_registration_with_and_without_nanny(make_cluster):
    c = make_cluster([WorkerSpec(name="with-nanny", nanny=True, nthreads=2),
                      WorkerSpec(name="no-nanny", nanny=False, nthreads=1)])
    client = c.client()
    by_name = {w["name"]: (addr, w) for addr, w in worker_entries(client).items()}
    assert set(by_name) == {"with-nanny", "no-nanny"}
    nanny_addr, nanny_w = by_name["with-nanny"]
    plain_addr, plain_w = by_name["no-nanny"]
    assert nanny_w["nanny"] and nanny_w["nanny"].startswith("tcp://127.0.0.1:")
    assert nanny_w["nanny"] != nanny_addr
    assert not plain_w["nanny"]
    assert (nanny_w["nthreads"], plain_w["nthreads"]) == (2, 1)
    # both take work: pin a task to each
    for addr in (nanny_addr, plain_addr):
        assert client.submit(where_am_i, addr, workers=[addr], pure=False).result(timeout=30) == addr


def test_heartbeats_keep_worker_alive(make_cluster):
    c = make_cluster([WorkerSpec(name="hb")])
    client = c.client()
    [(addr, first)] = worker_entries(client).items()
    # as Python's WorkerState.identity(), the id is the worker's name
    assert first["id"] == first["name"] == "hb", first
    t0 = time.time()
    time.sleep(12)
    entries = worker_entries(client)
    assert list(entries) == [addr], "the worker must stay registered"
    now = entries[addr]
    assert now["id"] == first["id"]
    assert now["last_seen"] > first["last_seen"], "heartbeats must refresh last_seen"
    assert now["last_seen"] > t0 + 10
    assert abs(time.time() - now["last_seen"]) < 5
    assert c.workers[0].alive()
    assert client.submit(inc, 1, pure=False).result(timeout=30) == 2


def test_clean_close_on_sigterm(make_cluster):
    c = make_cluster([WorkerSpec(name="plain", nthreads=2),
                      WorkerSpec(name="nannied", nanny=True, nthreads=2)])
    client = c.client()
    plain, nannied = c.workers
    plain_addr = c.address_of(plain)
    nannied_addr = c.address_of(nannied)
    futures = client.map(inc, range(50), key=[unique(f"close-{i}") for i in range(50)])
    wait(futures, timeout=30)

    plain.send_signal(signal.SIGTERM)
    assert plain.wait(30) is not None, "worker did not exit on SIGTERM"
    wait_until(lambda: plain_addr not in worker_entries(client), 20,
               "the closed worker to leave the scheduler")
    assert set(worker_entries(client)) == {nannied_addr}
    # results that lived on the closed worker are recomputed on the other one
    assert client.gather(futures) == list(range(1, 51))
    assert set(client.who_has(futures)) == {f.key for f in futures}
    assert all(list(client.who_has(futures)[f.key]) == [nannied_addr] for f in futures)

    nannied.send_signal(signal.SIGTERM)
    assert nannied.wait(30) is not None, "nanny did not exit on SIGTERM"
    wait_until(lambda: not worker_entries(client), 20, "the nanny worker to leave the scheduler")
    assert c.scheduler.alive()


def test_worker_killed_mid_computation(make_cluster, tmp_path):
    c = make_cluster([WorkerSpec(name="victim", nanny=True, nthreads=2),
                      WorkerSpec(name="survivor", nanny=True, nthreads=2)])
    client = c.client()
    victim, survivor = c.workers
    victim_addr = c.address_of(victim)
    survivor_addr = c.address_of(survivor)

    # results spread over both workers
    n = 40
    inputs = client.map(inc, range(n), key=[unique(f"in-{i}") for i in range(n)])
    wait(inputs, timeout=30)
    on_victim = set(client.has_what()[victim_addr]) & {f.key for f in inputs}
    assert on_victim, "precondition: some results live on the victim"

    # long tasks depending on some of them, some running on the victim when it dies
    markers = tmp_path / "markers"
    markers.mkdir()
    m = 8
    slow = client.map(mark_and_sleep, inputs[:m], marker_dir=str(markers), delay=1.5,
                      key=[unique(f"slow-{i}") for i in range(m)])
    wait_until(lambda: any(p.name.startswith("victim-") for p in markers.iterdir()), 30,
               "a long task to start on the victim", context=c.diagnostics)

    c.kill_worker(victim)  # SIGKILL to nanny and worker
    wait_until(lambda: victim_addr not in worker_entries(client), 30,
               "the scheduler to notice the dead worker", context=c.diagnostics)

    assert client.gather(slow) == [i + 2 for i in range(m)]
    assert client.gather(inputs) == [i + 1 for i in range(n)]  # lost ones recomputed
    who_has = client.who_has(inputs)
    assert all(list(who_has[f.key]) == [survivor_addr] for f in inputs)

    # a worker comes back (same name) and is used again
    c.add_worker(WorkerSpec(name="victim", nanny=True, nthreads=2))
    comeback_addr = c.workers_by_name()["victim"]
    assert comeback_addr != victim_addr
    used = set(client.gather(client.map(where_am_i, range(40), delay=0.05, pure=False)))
    assert comeback_addr in used, f"new worker never used: {used}"
    assert client.submit(slow_inc, 1, workers=[comeback_addr]).result(timeout=30) == 2

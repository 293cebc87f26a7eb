"""joblib's Dask backend (``joblib.parallel_backend("dask")``), how
scikit-learn users spread ``n_jobs`` work over a cluster: batches of calls
submitted as futures from the client, large arguments scattered to every
worker first (``scatter=[...]``), results gathered in order."""

from __future__ import annotations

import numpy as np

TIMEOUT = 120


def square(x):
    return x * x


def total(a, i):
    return float(a.sum()) + i


def test_parallel_calls_run_on_the_workers_in_order(client):
    import joblib

    with joblib.parallel_backend("dask", wait_for_workers_timeout=TIMEOUT):
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(square)(i) for i in range(300))
    assert out == [i * i for i in range(300)]


def test_a_scattered_argument_reaches_every_call(client):
    import joblib

    big = np.arange(2_000_000, dtype="float64")
    with joblib.parallel_backend("dask", scatter=[big], wait_for_workers_timeout=TIMEOUT):
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(total)(big, i) for i in range(24))
        # the array went to the workers once, as data of its own, not with each call
        assert any(str(k).startswith("ndarray-") for k in client.who_has())
    assert out == [float(big.sum()) + i for i in range(24)]

"""Issue 5, point 5: `/json/identity.json`, `/json/counts.json`,
`/info/main/workers.html` and `/sitemap.json` on the dashboard port.

The shapes are Python's (these tests, except the rust_only ones, also pass
with DASK_SCHEDULER_IMPL=python).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from .cluster import WorkerSpec
from .helpers import inc, unique

CLUSTER_WORKERS = [WorkerSpec(nthreads=2), WorkerSpec(nthreads=1)]

# `CountsJSON` keys of distributed 2026.8.0
COUNTS_KEYS = {"bytes", "clients", "cores", "erred", "hosts", "idle", "memory", "processing",
               "released", "saturated", "tasks", "unrunnable", "waiting", "waiting_data",
               "workers", "desired_workers"}


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def get_json(url: str):
    status, ctype, body = get(url)
    assert status == 200
    assert ctype.startswith("application/json")
    return json.loads(body)


def test_identity_json_matches_scheduler_info(cluster):
    ident = get_json(cluster.scheduler.dashboard_url("/json/identity.json"))
    info = cluster.info()
    assert ident["type"] == "Scheduler"
    assert ident["id"] == info["id"]
    assert ident["address"] == info["address"] == cluster.address
    assert ident["services"]["dashboard"] == cluster.scheduler.dashboard_port
    assert set(ident["workers"]) == set(info["workers"])
    for addr, w in ident["workers"].items():
        assert w["nthreads"] == info["workers"][addr]["nthreads"]
        assert w["memory_limit"] == info["workers"][addr]["memory_limit"]
        assert w["status"] == "running"
    assert ident["n_workers"] == 2
    assert ident["total_threads"] == 3


def test_counts_json(cluster):
    client = cluster.client()
    futs = client.map(inc, range(5), key=[f"{unique('countinc')}-{i}" for i in range(5)])
    client.gather(futs)
    counts = get_json(cluster.scheduler.dashboard_url("/json/counts.json"))
    assert set(counts) == COUNTS_KEYS
    assert counts["workers"] == 2
    assert counts["cores"] == 3
    assert counts["hosts"] == 1
    assert counts["tasks"] >= 5
    assert counts["memory"] >= 5
    assert counts["bytes"] >= sum(client.nbytes(summary=False)[f.key] for f in futs)
    assert counts["erred"] == 0
    assert counts["processing"] == 0
    # Python counts the fire-and-forget pseudo-client too
    assert counts["clients"] >= 2
    client.cancel(futs)


def test_workers_html_lists_workers(cluster):
    status, ctype, body = get(cluster.scheduler.dashboard_url("/info/main/workers.html"))
    assert status == 200
    assert ctype.startswith("text/html")
    info = cluster.info()
    assert cluster.address in body
    for addr in info["workers"]:
        assert addr in body


@pytest.mark.rust_only
def test_workers_html_rows(cluster):
    _, _, body = get(cluster.scheduler.dashboard_url("/info/main/workers.html"))
    info = cluster.info()
    rows = re.findall(r'<tr class="worker" data-address="([^"]+)">.*?'
                      r'<td class="nthreads">(\d+)</td>', body)
    assert {a: int(n) for a, n in rows} == {
        a: w["nthreads"] for a, w in info["workers"].items()}


def test_sitemap_lists_routes(cluster):
    paths = get_json(cluster.scheduler.dashboard_url("/sitemap.json"))["paths"]
    for p in ("/health", "/metrics", "/json/counts.json", "/json/identity.json",
              "/info/main/workers.html", "/sitemap.json", "/status"):
        assert p in paths


@pytest.mark.rust_only
def test_every_sitemap_route_answers(cluster):
    paths = get_json(cluster.scheduler.dashboard_url("/sitemap.json"))["paths"]
    for p in paths:
        if p == "/status/events":
            continue  # a never-ending event stream (tested in test_status_page)
        code = status_of(cluster.scheduler.dashboard_url(p))
        # POST-only routes answer 405 to a GET; nothing listed may be missing
        assert code in (200, 405), f"{p}: {code}"


def test_individual_plots_lists_pages_that_are_served(cluster):
    """What JupyterLab's Dask extension fetches to tell a dashboard (and
    list its panels): a JSON map of titles to pages, each served. Python's
    lists nothing without Bokeh; this scheduler's has its status page."""
    plots = get_json(cluster.scheduler.dashboard_url("/individual-plots.json"))
    assert isinstance(plots, dict)
    for title, path in plots.items():
        status, ctype, body = get(cluster.scheduler.dashboard_url(path))
        assert status == 200 and ctype.startswith("text/html") and body, title


@pytest.mark.rust_only
def test_the_status_page_is_an_individual_plot(cluster):
    plots = get_json(cluster.scheduler.dashboard_url("/individual-plots.json"))
    assert "/status" in plots.values()


def test_json_index(cluster):
    _, _, body = get(cluster.scheduler.dashboard_url("/json/index.html"))
    assert "counts.json" in body and "identity.json" in body


def test_http_routes_from_dask_config(tmp_path):
    """``distributed.scheduler.http.routes`` changed by an operator (here to
    the health probe and the JSON routes only): the other route modules'
    pages are not served, and the sitemap lists none of them."""
    from .cluster import Scheduler

    routes = '["distributed.http.health", "distributed.http.scheduler.json"]'
    s = Scheduler(tmp_path, env={"DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": routes})
    try:
        assert status_of(s.dashboard_url("/health")) == 200
        assert status_of(s.dashboard_url("/json/identity.json")) == 200
        for gone in ("/metrics", "/info/main/workers.html", "/api/v1/adaptive_target"):
            assert status_of(s.dashboard_url(gone)) == 404, gone
        paths = get_json(s.dashboard_url("/sitemap.json"))["paths"]
        assert "/json/identity.json" in paths and "/health" in paths
        assert not {"/metrics", "/info/main/workers.html"} & set(paths), paths
    finally:
        s.stop()


@pytest.mark.rust_only  # Python's scheduler imports the module and fails without it
def test_http_routes_naming_a_module_it_cannot_serve(tmp_path):
    from .cluster import Scheduler

    routes = '["distributed.http.health", "mycompany.http.routes"]'
    s = Scheduler(tmp_path, env={"DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": routes})
    try:
        assert status_of(s.dashboard_url("/health")) == 200
        assert status_of(s.dashboard_url("/metrics")) == 404
        assert "Not serving the HTTP routes of \"mycompany.http.routes\"" in s.log_text()
    finally:
        s.stop()

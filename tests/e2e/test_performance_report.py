"""``with performance_report(filename=...)``: the block's entry asks the
scheduler for its system monitor's sample count (``run_on_scheduler``), its
exit for the report, which the client writes to the file.

Rust only: the Python scheduler renders its report with Bokeh, which the
pinned environment does not install, so against it the block fails. The
report here is this scheduler's own HTML (see the README).
"""

from __future__ import annotations

import re
import time

import pytest
from distributed import performance_report

from .helpers import inc, slow_inc, unique

pytestmark = pytest.mark.rust_only

TIMEOUT = 60


def test_a_block_writes_a_report_of_what_ran_in_it(client, tmp_path):
    before = client.submit(inc, 1, key=unique("before"))
    before.result(timeout=TIMEOUT)
    path = tmp_path / "report.html"
    tag = unique("in-block")
    with performance_report(filename=str(path)):
        incs = client.map(slow_inc, range(30), delay=0.01, key=[f"inc-{tag}-{i}" for i in range(30)])
        total = client.submit(sum, incs, key=f"sum-{tag}").result(timeout=TIMEOUT)
    assert total == sum(range(1, 31))
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<h1>Dask Performance Report</h1>" in html
    # the task stream since the block started: these 31 tasks, not `before`
    assert "number of tasks: 31" in html, re.findall(r"number of tasks: \d+", html)
    assert html.count("<rect ") >= 31
    assert before.key not in html
    assert f"inc-{tag}-0" in html  # a bar's tooltip
    assert re.search(r"<li>compute time: [\d.]+ (ms|s)</li>", html)
    # the summary names the cluster and the code that ran the block
    assert f"Address: {client.scheduler.address}" in html
    assert "Workers: 2" in html
    assert "Dask.Distributed Version: 2026.8.0" in html
    assert "slow_inc" in html.split("<h2>Calling Code</h2>")[1].split("</pre>")[0]
    for section in ("task-stream", "system", "logs", "compute", "workers"):
        assert f'<section id="{section}">' in html
    assert '<section id="bandwidth-workers">' in html and '<section id="bandwidth-types">' in html


def payload(n):
    return b"x" * n


def measured_pairs(dask_scheduler):
    return list(dask_scheduler.bandwidth_workers)


def test_the_report_has_the_bandwidth_the_workers_measured(client, tmp_path):
    # Python's report has the dashboard's "Bandwidth (Workers)" and
    # "Bandwidth (Types)" charts: here, tables of the same numbers. A worker
    # measures its transfers of more than 1 MB and reports them in its
    # next heartbeat.
    workers = client.scheduler_info()["workers"]
    (a, a_info), (b, b_info) = sorted(workers.items())
    path = tmp_path / "report.html"
    with performance_report(filename=str(path)):
        x = client.submit(payload, 5_000_000, key=unique("payload"), workers=[a])
        n = client.submit(len, x, key=unique("size"), workers=[b])
        assert n.result(timeout=TIMEOUT) == 5_000_000
        deadline = time.monotonic() + TIMEOUT
        while (b, a) not in map(tuple, client.run_on_scheduler(measured_pairs)):
            assert time.monotonic() < deadline, "no heartbeat reported the transfer"
            time.sleep(0.05)
    html = path.read_text()
    table = html.split('<section id="bandwidth-workers">')[1].split("</section>")[0]
    # the receiving worker first, each by its name, as the dashboard names them
    row = rf"<tr><td>{re.escape(str(b_info['name']))}</td><td>{re.escape(str(a_info['name']))}</td>"
    assert re.search(row + r"<td>[\d.]+ [KMG]?i?B/s</td></tr>", table), table
    types = html.split('<section id="bandwidth-types">')[1].split("</section>")[0]
    assert re.search(r"<tr><td><code>bytes</code></td><td>[\d.]+ [KMG]?i?B/s</td></tr>", types), types

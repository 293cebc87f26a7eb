"""Issue 5, point 6: the live status page at `/status` (and `/`).

Driven in headless Chromium (Debian's `chromium`) through the DevTools
protocol: the page is loaded during a running computation, its numbers are
compared with `scheduler_info()` / `processing()`, it must update without a
reload (server-sent events), and a screenshot is kept in the pytest tmp dir
(with `UPDATE_DOCS_SCREENSHOT=1` it also replaces `docs/status-page.png`, the
README's picture; a test run does not modify the checkout otherwise).

Chromium is required: if it is missing the test fails (scripts/test.sh
installs it), it is never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from .cluster import REPO_ROOT, ManagedProcess, WorkerSpec, wait_until
from .helpers import slow_inc, sleep_until_file, unique

pytestmark = pytest.mark.rust_only

# The GPU worker reports GPU facts like a worker on an NVML machine does.
FAKE_GPU = Path(__file__).with_name("fake_gpu_preload.py")
CLUSTER_WORKERS = [
    WorkerSpec(nthreads=2, resources="GPU=1", memory_limit="2GiB",
               extra=["--preload", str(FAKE_GPU)]),
    WorkerSpec(nthreads=1, memory_limit="1GiB"),
]

BROWSER_TIMEOUT = 60


def chromium_path() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian's `chromium` is required for the status-page test "
                    "(scripts/test.sh installs it: apt-get install -y chromium)")
    return exe


class Browser(ManagedProcess):
    """Headless Chromium with a DevTools endpoint."""

    kind = "browser"

    def __init__(self, tmp: Path):
        self.profile = tmp / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
             f"--user-data-dir={self.profile}", "--window-size=1400,1250",
             "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
             "about:blank"],
            tmp / "chromium.log",
        )
        port_file = self.profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().count("\n") >= 1,
                   BROWSER_TIMEOUT, "Chromium's DevTools endpoint")
        self.port = int(port_file.read_text().splitlines()[0])

    def page_ws_url(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        pages = [t for t in targets if t.get("type") == "page"]
        assert pages, f"no page target in {targets}"
        return pages[0]["webSocketDebuggerUrl"]


class Page:
    """A minimal DevTools-protocol client (tornado's websocket client)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    @classmethod
    async def connect(cls, url: str) -> "Page":
        from tornado.websocket import websocket_connect

        ws = await asyncio.wait_for(websocket_connect(url, max_message_size=64 << 20), 30)
        return cls(ws)

    async def call(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        await self.ws.write_message(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            raw = await asyncio.wait_for(self.ws.read_message(), 30)
            assert raw is not None, "DevTools connection closed"
            msg = json.loads(raw)
            if msg.get("id") == my_id:
                assert "error" not in msg, msg["error"]
                return msg.get("result", {})

    async def eval(self, expression: str):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                            awaitPromise=True)
        assert "exceptionDetails" not in r, r["exceptionDetails"]
        return r["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = BROWSER_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await self.eval(expression)
            if last:
                return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what} (last value {last!r})")

    async def screenshot(self, path: Path) -> None:
        r = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(r["data"]))


READ_PAGE = """(() => {
  const num = id => Number(document.getElementById(id).getAttribute('data-value'));
  const rows = [...document.querySelectorAll('#workers tbody tr.worker')].map(tr => ({
    address: tr.dataset.address, nthreads: Number(tr.dataset.nthreads),
    memory_limit: Number(tr.dataset.memoryLimit), processing: Number(tr.dataset.processing),
    text: tr.textContent}));
  const prefixes = {};
  document.querySelectorAll('#progress .prefix').forEach(p => {
    prefixes[p.dataset.prefix] = {total: Number(p.dataset.total), memory: Number(p.dataset.memory),
                                  segments: p.querySelectorAll('.seg').length};
  });
  return {updates: Number(document.getElementById('updates').textContent),
          live: document.getElementById('live-status').textContent,
          workers: num('n-workers'), threads: num('n-threads'), memory: num('memory'),
          tasks: num('n-tasks'), processing: num('n-processing'), rows, prefixes,
          stream_legend: document.getElementById('stream-legend').textContent,
          address: document.getElementById('scheduler-address').textContent};
})()"""


def test_status_page_live_in_chromium(cluster, tmp_path):
    browser = Browser(tmp_path)
    client = cluster.client()
    stop = tmp_path / "stop"
    try:
        # Something in the task stream and in memory, then a computation
        # that keeps running.
        import dask.array as da
        from distributed import wait

        arr = (da.ones((400, 400), chunks=50) + 1).persist()
        wait(arr)
        warm = client.map(slow_inc, range(30), delay=0.05,
                          key=[f"{unique('warmup')}-{i}" for i in range(30)])
        client.gather(warm)
        n = 40
        blockers = client.map(sleep_until_file, [str(stop)] * n, pure=False,
                              key=[f"{unique('blocker')}-{i}" for i in range(n)])

        def processing_now() -> int:
            return sum(len(v) for v in client.processing().values())
        wait_until(lambda: processing_now() >= 3, 60, "the computation to start")

        async def drive():
            page = await Page.connect(browser.page_ws_url())
            await page.call("Page.enable")
            await page.call("Page.navigate", url=cluster.scheduler.dashboard_url("/status"))
            await page.wait_for("document.readyState === 'complete'", "the page to load")
            # live: several updates arrive without a reload
            await page.wait_for(
                "Number(document.getElementById('updates').textContent) >= 3",
                "live updates")
            # GPU metrics arrive with the worker's heartbeats
            await page.wait_for("document.querySelector('#workers').textContent"
                                ".includes('util 42%')", "the GPU utilisation")
            info = client.scheduler_info(n_workers=-1)
            expected_processing = processing_now()
            # the page shows what the scheduler reports (it refreshes every 0.5 s)
            await page.wait_for(
                f"Number(document.getElementById('n-processing').getAttribute('data-value'))"
                f" === {expected_processing}", "the processing count")
            seen = await page.eval(READ_PAGE)
            shot = tmp_path / "status-page.png"
            await page.screenshot(shot)

            assert seen["live"].startswith("live"), seen["live"]
            assert seen["address"] == info["address"]
            assert seen["workers"] == len(info["workers"]) == 2
            assert seen["threads"] == sum(w["nthreads"] for w in info["workers"].values()) == 3
            assert seen["memory"] == sum(w["memory_limit"] for w in info["workers"].values())
            rows = {r["address"]: r for r in seen["rows"]}
            assert set(rows) == set(info["workers"])
            procs = client.processing()
            for addr, w in info["workers"].items():
                assert rows[addr]["nthreads"] == w["nthreads"]
                assert rows[addr]["memory_limit"] == w["memory_limit"]
                assert rows[addr]["processing"] == len(procs[addr])
            gpu_rows = [r for r in rows.values() if "GPU 0/1" in r["text"]]
            assert len(gpu_rows) == 1, "GPU resources of the GPU worker are shown"
            assert "Fake GPU 80GB (80.00 GiB)" in gpu_rows[0]["text"]
            blocker = [p for p in seen["prefixes"] if p.startswith("blocker")]
            assert len(blocker) == 1
            bar = seen["prefixes"][blocker[0]]
            assert bar["total"] == n and bar["memory"] == 0 and bar["segments"] >= 1
            assert seen["tasks"] >= n
            assert "warmup" in seen["stream_legend"], "task stream shows the finished tasks"

            # the computation finishes: the page follows without a reload
            stop.touch()
            client.gather(blockers)
            await page.wait_for(
                f"(() => {{ const p = document.querySelector('#progress .prefix[data-prefix^=\"blocker\"]');"
                f" return p && Number(p.dataset.memory) === {n}; }})()",
                "the progress bar to complete")
            assert (await page.eval("Number(document.getElementById('n-processing')"
                                    ".getAttribute('data-value'))")) == 0
            page.ws.close()
            return shot

        shot = asyncio.run(drive())
        assert shot.stat().st_size > 10_000
        if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
            docs = REPO_ROOT / "docs"
            docs.mkdir(exist_ok=True)
            shutil.copyfile(shot, docs / "status-page.png")
    finally:
        stop.touch()
        browser.stop(grace=2)


def test_root_serves_the_status_page(cluster):
    for path in ("/", "/status"):
        with urllib.request.urlopen(cluster.scheduler.dashboard_url(path), timeout=10) as r:
            body = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/html")
        assert "status/status.js" in body
    # assets are embedded: no external URLs anywhere
    for asset in ("/status/status.js", "/status/status.css", "/status"):
        with urllib.request.urlopen(cluster.scheduler.dashboard_url(asset), timeout=10) as r:
            text = r.read().decode()
        assert "http://" not in text and "https://" not in text, asset


def test_events_stream_sends_snapshots(cluster):
    """`/status/events` is a server-sent events stream of status snapshots."""
    url = cluster.scheduler.dashboard_url("/status/events")
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = []
        lines = []
        while len(events) < 2:
            line = r.readline().decode()
            assert line, "stream ended"
            if line.strip() == "":
                if any(x.startswith("data:") for x in lines):
                    events.append(lines)
                lines = []
            else:
                lines.append(line.rstrip("\n"))
    for ev in events:
        assert "event: status" in ev
        data = json.loads("".join(x[5:].strip() for x in ev if x.startswith("data:")))
        assert len(data["workers"]) == 2
        assert data["total_threads"] == 3

"""Real-browser check of the dashboard: start ``streamlit run dashboards/app.py`` on 127.0.0.1,
drive headless chromium through the DevTools protocol, wait until each page has rendered, save a
full-page PNG per page and return the rendered text.

Usage: ``python3 scripts/browser_check.py [--db-url URL] [--out reports/screenshots]`` (the store
defaults to ``LPT_DB_URL``). ``tests/dashboards/test_browser.py`` imports this file as its driver.

"Rendered" means: Streamlit's status widget is gone, the main block has text, no skeleton is
left, every Vega-Lite chart has a canvas or svg, and the DOM has not changed for 1 s (a
``--virtual-time-budget`` screenshot races the websocket and is not reliable).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"": "Overview", "shift_explorer": "Shift explorer", "long_tail": "Long tail",
         "timeline": "Timeline", "data_runs": "Data and runs"}
WIDTH, VIEW_HEIGHT, MAX_HEIGHT = 1400, 2400, 6000
NOT_READY = {"running": True, "skeleton": False, "charts_ready": False, "exception": False,
             "size": 0, "height": 0, "sidebar": None, "text": ""}
READY_JS = """(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const text = main ? main.innerText.trim() : '';
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  return JSON.stringify({
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
    skeleton: !!document.querySelector('[data-testid="stSkeleton"]'),
    charts_ready: charts.every(c => c.querySelector('canvas, svg')),
    exception: !!document.querySelector('[data-testid="stException"]'),
    size: document.body.innerHTML.length,
    height: Math.max(0, ...[...document.querySelectorAll('[data-testid="stMainBlockContainer"], [data-testid="stSidebarUserContent"]')]
      .map(e => e.getBoundingClientRect().top + e.scrollHeight)),
    sidebar: (() => { const s = document.querySelector('[data-testid="stSidebar"]'); return s ? s.getBoundingClientRect().left : null; })(),
    text: text});
})()"""


@dataclass
class PageShot:
    """One rendered page: its URL path, main-block text, screenshot file and render time."""

    path: str
    text: str
    png: Path
    seconds: float
    exception: bool


def find_chromium() -> str | None:
    """The chromium executable on PATH, or None when none is installed (a lookup, not a failure)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float, what: str, proc: subprocess.Popen) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read()
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not answer at {url} within {timeout_s:.0f} s")


@contextmanager
def streamlit_server(db_url: str, log: Path, timeout_s: float = 40) -> Iterator[str]:
    """Run the dashboard against ``db_url``; yields its base URL and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "LPT_DB_URL": db_url, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboards" / "app.py"),
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_http(f"{base}/_stcore/health", timeout_s, "streamlit", proc)
            yield base
        finally:
            _stop(proc)


@contextmanager
def chromium(executable: str, profile: Path, timeout_s: float = 30) -> Iterator[ClientConnection]:
    """Headless chromium with remote debugging; yields a DevTools connection to its page."""
    cmd = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={profile}",
           f"--window-size={WIDTH},1000", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium ({executable}) did not open a DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(_wait_http(f"http://127.0.0.1:{port}/json", timeout_s, "chromium", proc))
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=timeout_s) as ws:
            yield ws
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc``; kill it if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


class DevTools:
    """Minimal synchronous DevTools-protocol client (commands in order, events ignored)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.next_id = ws, 0

    def call(self, method: str, **params: object) -> dict:
        """Send one command and return its result; raises RuntimeError on a protocol error."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method} failed: {msg['error']}")
                return msg.get("result", {})

    def state(self) -> dict:
        """The page's readiness state from ``READY_JS`` (``NOT_READY`` while a document loads)."""
        res = self.call("Runtime.evaluate", expression=READY_JS, returnByValue=True)
        value = res.get("result", {}).get("value")
        # Between documents the evaluation can fail (context destroyed): poll again.
        return json.loads(value) if isinstance(value, str) else dict(NOT_READY)


def wait_rendered(dev: DevTools, timeout_s: float = 30, stable_s: float = 1.0) -> dict:
    """Poll until the page is rendered and its DOM unchanged for ``stable_s``; returns the state."""
    deadline, stable_since, last = time.monotonic() + timeout_s, None, None
    while time.monotonic() < deadline:
        state = dev.state()
        ready = (not state["running"] and not state["skeleton"] and state["charts_ready"]
                 and bool(state["text"]))
        key = (state["size"], state["height"], state["sidebar"])
        if ready and key == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= stable_s:
                return state
        else:
            stable_since = None
        last = key if ready else None
        time.sleep(0.2)
    raise TimeoutError(f"page did not render within {timeout_s:.0f} s; last state {dev.state()}")


def _load(dev: DevTools, url: str, height: int) -> dict:
    """Navigate to ``url`` in a WIDTH x ``height`` viewport and wait until rendered."""
    dev.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1,
             mobile=False)
    dev.call("Page.navigate", url=url)
    time.sleep(0.3)  # let the navigation replace the previous document before polling
    return wait_rendered(dev)


def shoot(dev: DevTools, url: str, png: Path) -> PageShot:
    """Open ``url``, wait until rendered and save a full-page PNG at ``png``.

    Streamlit's main block scrolls inside a fixed viewport, so a page taller than the viewport is
    loaded again in a viewport of its height (resizing a loaded page collapses the sidebar).
    """
    t0 = time.monotonic()
    state = _load(dev, url, VIEW_HEIGHT)
    if state["height"] + 80 > VIEW_HEIGHT:
        state = _load(dev, url, min(int(state["height"]) + 80, MAX_HEIGHT))
    height = min(max(int(state["height"]) + 80, 800), MAX_HEIGHT)  # crop the empty tail
    clip = {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}
    shot = dev.call("Page.captureScreenshot", format="png", clip=clip)
    png.write_bytes(base64.b64decode(shot["data"]))
    return PageShot(url, state["text"], png, time.monotonic() - t0, state["exception"])


def capture_pages(db_url: str, out_dir: Path, pages: Sequence[str] = tuple(PAGES),
                  executable: str | None = None) -> list[PageShot]:
    """Render every dashboard page of the store at ``db_url`` and save ``<page>.png`` in ``out_dir``."""
    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no chromium on PATH: install it with `apt-get install -y chromium`")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lpt-browser-") as tmp:
        with streamlit_server(db_url, out_dir / "streamlit.log") as base, \
                chromium(executable, Path(tmp)) as ws:
            dev = DevTools(ws)
            dev.call("Page.enable")
            return [shoot(dev, f"{base}/{page}", out_dir / f"{page or 'overview'}.png") for page in pages]


def main(argv: Sequence[str] | None = None) -> int:
    """Capture every page of the configured store; exit 1 when a page shows an exception."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default=os.environ.get("LPT_DB_URL", "sqlite:///lpt_store.db"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "screenshots")
    args = parser.parse_args(argv)
    shots = capture_pages(args.db_url, args.out)
    bad = 0
    for path, shot in zip(PAGES, shots):
        ok = PAGES[path] in shot.text and not shot.exception
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} /{path:<15} {shot.seconds:5.1f} s  {shot.png}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

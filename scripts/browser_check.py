"""Real-browser check of the dashboard and the nightly report: start ``streamlit run
dashboards/app.py`` on 127.0.0.1, drive headless chromium with Playwright, wait until each page
has rendered, save a PNG per page (and one of the report) and return what was rendered.

Usage: ``python scripts/browser_check.py [--db-url URL] [--out docs/screenshots] [--report FILE]``
(the store defaults to ``LPT_DB_URL``; without ``--report`` the report of the store's latest job
run that evaluated something is written to a temporary folder and photographed;
``--no-report`` skips it). ``tests/dashboards/test_browser.py`` imports this file as its driver.

Playwright for Python drives Debian's ``/usr/bin/chromium`` (``pip install playwright``; no
``playwright install``, nothing is downloaded). "Rendered" means: Streamlit's status widget is
gone, the main block has text, no skeleton is left, every Vega-Lite chart has a canvas or svg,
and the DOM has not changed for 1 s.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"": "Overview", "shift_explorer": "Shift explorer", "long_tail": "Long tail",
         "timeline": "Timeline", "monitoring": "Label-free monitoring", "data_runs": "Data and runs"}
WIDTH, VIEW_HEIGHT, MAX_HEIGHT = 1400, 1200, 9000
READY_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  return {
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
    skeleton: !!document.querySelector('[data-testid="stSkeleton"]'),
    charts: charts.length,
    charts_rendered: charts.filter(c => c.querySelector('canvas, svg')).length,
    exception: !!document.querySelector('[data-testid="stException"]'),
    size: document.body.innerHTML.length,
    height: Math.max(0, ...[...document.querySelectorAll('[data-testid="stMainBlockContainer"], [data-testid="stSidebarUserContent"]')]
      .map(e => e.getBoundingClientRect().top + e.scrollHeight)),
    sidebar: sidebar ? sidebar.getBoundingClientRect().left : null,
    headings: main ? [...main.querySelectorAll('h1, h2, h3')].map(h => h.innerText.trim()) : [],
    deploy_button: !!document.querySelector('[data-testid="stAppDeployButton"]'),
    text: main ? main.innerText.trim() : ''};
}"""


@dataclass
class PageShot:
    """One rendered page: URL, main-block text, headings, charts found/rendered, screenshot."""

    path: str
    text: str
    png: Path
    seconds: float
    exception: bool
    charts: int = 0
    charts_rendered: int = 0
    headings: list[str] = field(default_factory=list)
    deploy_button: bool = False


def find_chromium() -> str | None:
    """Debian's chromium (or another on PATH), or None when none is installed (a lookup)."""
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "chrome"):
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
def streamlit_server(db_url: str, log: Path, timeout_s: float = 60) -> Iterator[str]:
    """Run the dashboard against ``db_url`` from the project root (its .streamlit/config.toml
    applies); yields its base URL and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "LPT_DB_URL": db_url}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboards" / "app.py"),
           "--server.headless", "true", "--server.port", str(port), "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_http(f"{base}/_stcore/health", timeout_s, "streamlit", proc)
            yield base
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc``; kill it if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def browser(executable: str | None = None) -> Iterator[Any]:
    """A headless chromium page driven by Playwright (Debian's chromium, nothing downloaded)."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise FileNotFoundError("no chromium on PATH: install it with `apt-get install -y chromium`")
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chrome.new_page(viewport={"width": WIDTH, "height": VIEW_HEIGHT})
        finally:
            chrome.close()


def wait_rendered(page: Any, timeout_s: float = 60, stable_s: float = 1.0) -> dict:
    """Poll until the page is rendered and its DOM unchanged for ``stable_s``; returns the state."""
    deadline, stable_since, last = time.monotonic() + timeout_s, None, None
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            state = page.evaluate(READY_JS)
        except Exception:  # the document is being replaced: poll again
            time.sleep(0.2)
            continue
        ready = (not state["running"] and not state["skeleton"] and state["text"] != ""
                 and state["charts"] == state["charts_rendered"])
        key = (state["size"], state["height"], state["sidebar"])
        if ready and key == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= stable_s:
                return state
        else:
            stable_since = None
        last = key if ready else None
        time.sleep(0.2)
    raise TimeoutError(f"page did not render within {timeout_s:.0f} s; last state "
                       f"{ {k: v for k, v in state.items() if k != 'text'} }")


def _load(page: Any, url: str, height: int) -> dict:
    page.set_viewport_size({"width": WIDTH, "height": height})
    page.goto(url, wait_until="domcontentloaded")
    return wait_rendered(page)


def shoot(page: Any, url: str, png: Path) -> PageShot:
    """Open ``url``, wait until rendered and save a PNG of the whole page at ``png``.

    Streamlit's main block scrolls inside a fixed viewport, so a taller page is loaded again in
    a viewport of its height (resizing a loaded page collapses the sidebar).
    """
    t0 = time.monotonic()
    state = _load(page, url, VIEW_HEIGHT)
    if state["height"] + 80 > VIEW_HEIGHT:
        state = _load(page, url, min(int(state["height"]) + 80, MAX_HEIGHT))
    height = min(max(int(state["height"]) + 80, 700), MAX_HEIGHT)  # crop the empty tail
    page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    return PageShot(url, state["text"], png, time.monotonic() - t0, state["exception"], state["charts"],
                    state["charts_rendered"], state["headings"], state["deploy_button"])


def capture_pages(db_url: str, out_dir: Path, pages: Sequence[str] = tuple(PAGES),
                  executable: str | None = None) -> list[PageShot]:
    """Render every dashboard page of the store at ``db_url`` and save ``<page>.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lpt-browser-") as tmp:
        with streamlit_server(db_url, Path(tmp) / "streamlit.log") as base, browser(executable) as page:
            return [shoot(page, f"{base}/{p}", out_dir / f"{p or 'overview'}.png") for p in pages]


def write_latest_report(db_url: str, out_dir: Path) -> Path:
    """Write the report of the store's latest job run that evaluated something; its HTML path."""
    sys.path.insert(0, str(ROOT))
    from app.db import views
    from app.db.session import make_engine
    from app.report import write_report
    from app.settings import load_settings

    engine = make_engine(db_url)
    jobs = views.job_runs(engine, views.ResultFilter())
    jobs = jobs[jobs["pairs_evaluated"] > 0]
    if jobs.empty:
        raise ValueError(f"the store at {db_url} has no job run that evaluated anything: no report to show")
    settings = load_settings().replace(db_url=db_url, reports_dir=str(out_dir))
    return write_report(engine, settings, int(jobs.iloc[0]["job_run_id"])).paths["html"]


def capture_report(html_file: Path, png: Path, executable: str | None = None) -> PageShot:
    """Open a report HTML file and save a full-page PNG; the shot counts its inline SVG charts."""
    t0 = time.monotonic()
    with browser(executable) as page:
        page.goto(html_file.resolve().as_uri(), wait_until="load")
        svgs = page.evaluate("() => document.querySelectorAll('figure > svg').length")
        headings = page.evaluate("() => [...document.querySelectorAll('h1, h2')].map(h => h.innerText)")
        page.screenshot(path=str(png), full_page=True)
        return PageShot(html_file.as_uri(), page.inner_text("body"), png, time.monotonic() - t0, False,
                        svgs, svgs, headings)


def main(argv: Sequence[str] | None = None) -> int:
    """Capture every page and the report of the configured store; exit 1 when one looks broken."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default=os.environ.get("LPT_DB_URL", "sqlite:///lpt_store.db"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "screenshots")
    parser.add_argument("--report", type=Path, default=None, help="report HTML to photograph")
    parser.add_argument("--no-report", action="store_true", help="photograph only the dashboard")
    args = parser.parse_args(argv)
    shots = capture_pages(args.db_url, args.out)
    if not args.no_report:
        with tempfile.TemporaryDirectory(prefix="lpt-report-") as tmp:
            report = args.report or write_latest_report(args.db_url, Path(tmp))
            shots.append(capture_report(report, args.out / "report.png"))
    bad = 0
    for name, shot in zip([*PAGES.values(), "Nightly report"], shots):
        ok = not shot.exception and shot.charts == shot.charts_rendered and name.split()[0] in shot.text
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:<15} {shot.seconds:5.1f} s  charts {shot.charts_rendered}/"
              f"{shot.charts}  {shot.png}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

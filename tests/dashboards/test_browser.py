"""Real-browser test: streamlit run + headless chromium (Playwright), one screenshot per page and one
of the nightly report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from dash_store import EXPECTED, EXPECTED_MONITORING, PROD, add_monitoring, seed_store

from app.db.session import make_engine

DRIVER = Path(__file__).resolve().parents[2] / "scripts" / "browser_check.py"


def _driver():
    spec = importlib.util.spec_from_file_location("browser_check", DRIVER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.browser
def test_every_page_and_the_report_render_in_chromium(tmp_path: Path) -> None:
    pytest.importorskip("playwright", reason="pip install playwright (drives Debian's chromium)")
    driver = _driver()
    if driver.find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    report = tmp_path / "night.md"
    report.write_text("# Nightly report\n\nAll pairs evaluated.\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    seed_store(engine, report)
    add_monitoring(engine)  # a night with a batch without labels: estimates and shift tests
    engine.dispose()

    shots = driver.capture_pages(url, tmp_path / "screenshots")

    by_page = dict(zip(driver.PAGES, shots))
    for page, title in driver.PAGES.items():
        shot = by_page[page]
        assert not shot.exception, f"/{page} shows an exception:\n{shot.text[:2000]}"
        assert shot.text.startswith(title), f"/{page} starts with {shot.text[:80]!r}"
        assert shot.charts == shot.charts_rendered, f"/{page}: {shot.charts_rendered} of {shot.charts} charts drawn"
        assert not shot.deploy_button, f"/{page} shows Streamlit's Deploy button"
        assert shot.png.stat().st_size > 20_000 and shot.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overview = by_page[""]
    assert overview.headings[:2] == ["Overview", EXPECTED["headline"]]  # deployed model vs full fine-tuning
    assert overview.charts == 2  # the headline comparison and the latest batches
    assert EXPECTED["lpt_main"]["shifted"] in overview.text  # the deployed model's shifted top-1 tile
    assert f"{EXPECTED['shifted_diff']} vs ft_base [+7.5, +12.5]" in overview.text
    assert by_page["shift_explorer"].charts == 3 and by_page["long_tail"].charts == 2
    monitoring = by_page["monitoring"]
    assert monitoring.charts == 4  # batches (hollow: estimated), class prior, estimate vs measured, error by night
    assert "top-1 estimated by ATC (max confidence) on batches without labels" in monitoring.text  # chart subtitle
    assert f"Class prior of {PROD} (estimated from lpt_main's predictions)" in monitoring.text
    assert "production · 11-22 · estimated" in overview.text  # the latest batches include it, estimated
    assert "backbone fingerprint mismatch" in by_page["data_runs"].text
    assert "Nightly report" in by_page["data_runs"].text

    html = driver.write_latest_report(url, tmp_path / "reports")
    shot = driver.capture_report(html, tmp_path / "screenshots" / "report.png")
    assert shot.headings[1] == "Summary" and "Deployed" in shot.text and "lpt_main (LPT" in shot.text
    assert shot.charts >= 3 and shot.png.stat().st_size > 20_000
    assert f"estimated top-1 {EXPECTED_MONITORING['lpt_estimate']} (ATC; DoC 63.0%)" in shot.text  # the night without labels
    assert "Label-free monitoring" in shot.headings

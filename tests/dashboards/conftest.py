"""Fixtures for the dashboard tests: a small store with known numbers, and an empty one.

The store is written directly through the schema (the tests own their databases). Its numbers
are chosen so every figure a page shows can be checked by hand (see ``EXPECTED``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from dash_store import seed_store

from app.db.session import make_engine


def _clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def seeded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """LPT_DB_URL of a seeded SQLite store (with a nightly report file)."""
    report = tmp_path / "reports" / "night-2026-11-20.md"
    report.parent.mkdir()
    report.write_text("# Nightly report 2026-11-20\n\nAll pairs evaluated.\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    seed_store(engine, report)
    engine.dispose()
    monkeypatch.setenv("LPT_DB_URL", url)
    _clear_caches()
    yield url
    _clear_caches()


@pytest.fixture
def empty_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """LPT_DB_URL of a SQLite file that does not exist yet."""
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    monkeypatch.setenv("LPT_DB_URL", url)
    _clear_caches()
    yield url
    _clear_caches()


@pytest.fixture
def monitored_url(seeded_url: str) -> str:
    """The seeded store plus a night with a batch without labels (estimates, shift tests) and
    estimates with measurements on the labelled batches (``dash_store.add_monitoring``)."""
    from dash_store import add_monitoring

    engine = make_engine(seeded_url)
    add_monitoring(engine)
    engine.dispose()
    _clear_caches()
    return seeded_url

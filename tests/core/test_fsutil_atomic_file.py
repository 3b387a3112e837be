"""atomic_file: the target is replaced whole on success and untouched on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpt_core.fsutil import atomic_file


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    with atomic_file(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]  # no temporary file left

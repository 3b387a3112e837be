"""The typed-config loader and the registries refuse unknown names loudly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lpt_core.config import from_mapping, load_section, to_dict
from lpt_core.registry import Registry


@dataclass(frozen=True)
class Inner:
    depth: int = 2


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    sizes: tuple[int, ...] = (1,)
    maybe: tuple[int, ...] | None = None
    inner: Inner = field(default_factory=Inner)


def test_from_mapping_nested_and_tuples() -> None:
    cfg = from_mapping(Outer, {"sizes": [3, 4], "maybe": [5], "inner": {"depth": 7}})
    assert cfg == Outer(sizes=(3, 4), maybe=(5,), inner=Inner(depth=7))
    assert to_dict(cfg)["inner"] == {"depth": 7}


def test_from_mapping_unknown_key_names_it_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"\['dpeth'\].*accepted keys: \['depth'\]"):
        from_mapping(Outer, {"inner": {"dpeth": 3}})


def test_load_section(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  name: y\n")
    assert load_section(p, "train", Outer).name == "y"
    with pytest.raises(KeyError, match="section 'eval' missing"):
        load_section(p, "eval", Outer)
    with pytest.raises(FileNotFoundError):
        load_section(tmp_path / "none.yaml", "train", Outer)


def test_registry_lists_valid_names_on_unknown() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    reg.register("b")(2)
    assert reg.get("b") == 2 and reg.names() == ["a", "b"] and "a" in reg
    with pytest.raises(KeyError, match="unknown widget 'c'; valid names: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(3)

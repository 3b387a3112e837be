"""Typed configuration: a params.yaml section becomes a frozen dataclass.

There is no global config object. Each DVC stage reads its own section with
:func:`load_section` and passes explicit values down; unknown keys are an error, so a
misspelt parameter never silently keeps its default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def from_mapping(cls: type[C], data: Mapping[str, Any] | None, *, where: str = "") -> C:
    """Build the frozen dataclass ``cls`` from ``data``; nested dataclass fields recurse.

    Raises ``ValueError`` naming the unknown keys and the accepted ones.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        label = where or cls.__name__
        raise ValueError(f"unknown key(s) {unknown} in {label}; accepted keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints.get(name), value, f"{where or cls.__name__}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Recurse into dataclass-typed fields and turn YAML lists into tuples for tuple fields."""
    if hint is None or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return from_mapping(arg, value, where=where)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return tuple(value)
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_mapping(hint, value, where=where)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain-dict (JSON/YAML-safe) view of a config dataclass."""
    return dataclasses.asdict(obj)


def read_params(path: str | Path) -> dict[str, Any]:
    """Read a params.yaml file into a dict; a missing file raises ``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} does not exist")
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"params file {path} must hold a mapping at the top, got {type(data).__name__}")
    return data


def load_section(path: str | Path, section: str, cls: type[C]) -> C:
    """Load one section of a params file as the dataclass ``cls``."""
    params = read_params(path)
    if section not in params:
        raise KeyError(f"section {section!r} missing from {path}; sections present: {sorted(params)}")
    return from_mapping(cls, params[section], where=f"{path}:{section}")

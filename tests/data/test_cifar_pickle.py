"""The restricted unpickler of the CIFAR sources: real-format files load, code-running ones are refused."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest

from lpt_core.data.sources import load_source, restricted_loads


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes what Python 2's cPickle wrote for the official files: protocol 2, byte strings as
    (SHORT_)BINSTRING (``str`` in Python 2), numpy's helper under its numpy 1 name."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj  # numpy's 'u1', '|' were str too
        n = len(raw)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_dumps(obj: object) -> bytes:
    import io

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 100, n).tolist()
    return {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": b"training batch 1 of 1",
            b"fine_labels": labels, b"coarse_labels": [c // 5 for c in labels],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}  # fmt: skip


def test_real_format_pickle_loads(tmp_path: Path) -> None:
    blob = py2_dumps(_batch(300, 0))
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    globals_used = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert "BINSTRING" in ops and not ops & {"BINUNICODE", "SHORT_BINUNICODE", "STACK_GLOBAL"}
    d = restricted_loads(blob)
    ref = _batch(300, 0)
    assert d[b"data"].dtype == np.uint8 and np.array_equal(d[b"data"], ref[b"data"])
    assert d[b"fine_labels"] == ref[b"fine_labels"] and d[b"filenames"][0] == b"img_0.png"
    folder = tmp_path / "cifar-100-python"  # the whole source through it, files as the official ones
    folder.mkdir()
    (folder / "train").write_bytes(blob)
    (folder / "test").write_bytes(py2_dumps(_batch(50, 1)))
    (folder / "meta").write_bytes(py2_dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))
    raw = load_source("cifar100", tmp_path)
    assert raw.train.images.shape == (300, 32, 32, 3) and raw.class_names[3] == "c3"
    assert np.array_equal(raw.train.images[0].transpose(2, 0, 1).reshape(-1), ref[b"data"][0])


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 -- what a crafted file does
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("dumps", [py2_dumps, pickle.dumps], ids=["python2-format", "protocol-5"])
def test_pickle_calling_a_function_is_refused_without_running_it(tmp_path: Path, dumps) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    evil = _batch(10, 0) | {b"data": _System(marker)}
    (folder / "train").write_bytes(dumps(evil))
    (folder / "test").write_bytes(py2_dumps(_batch(10, 1)))
    (folder / "meta").write_bytes(py2_dumps({b"fine_label_names": [b"x"] * 100}))
    with pytest.raises(ValueError, match=r"unsafe pickle .*train: refused pickle global (posix|nt)\.system"):
        load_source("cifar100", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["builtins eval", "numpy load", "numpy.core.multiarray scalar"])
def test_other_globals_are_refused_by_exact_name(target: str) -> None:
    module, name = target.split()
    blob = pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.STOP
    with pytest.raises(pickle.UnpicklingError, match=rf"refused pickle global {module}\.{name}"):
        restricted_loads(blob)

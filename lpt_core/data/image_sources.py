"""Image-file sources: a user's class folders, Places-LT, ImageNet-LT and iNaturalist 2018.

Images are decoded with PIL (threaded) into one preallocated uint8 (N, S, S, 3) array, resized
(bilinear) to ``image_size`` when given. With ``decode_dir`` that array is a memory-mapped
``.npy`` file there instead of RAM, reused by later runs while the image list, ``image_size``
and the files' sizes and modification times are unchanged; :func:`lpt_core.data.prepare.prepare`
then streams it, so a dataset larger than memory (iNaturalist 2018 at 224 px is ~66 GB) can be
prepared. Sources register in :data:`lpt_core.data.sources.SOURCES`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpt_core.data.sources import SOURCES, DataUnavailableError, RawDataset, _split
from lpt_core.fsutil import atomic_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DECODE_CHUNK_BYTES = 32 * 2**20  # decoded bytes per round: bounds the images held in flight
RESIZE_MODES = ("squash", "center_crop")


def _decode_one(path: Path, image_size: int | None, resize: str = "squash") -> np.ndarray:
    """One image as uint8 (S, S, 3). ``squash`` resizes the whole image to S x S; ``center_crop``
    resizes the shorter side to S (aspect kept) and crops the centre S x S."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if image_size is not None and resize == "center_crop":
                w, h = im.size
                scale = image_size / min(w, h)
                im = im.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.BILINEAR)
                left, top = (im.size[0] - image_size) // 2, (im.size[1] - image_size) // 2
                im = im.crop((left, top, left + image_size, top + image_size))
            elif image_size is not None:
                im = im.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc


@dataclass(frozen=True)
class DecodeOptions:
    """How a source decodes: target size, resize mode (``RESIZE_MODES``), threads, and the
    folder of cached memory-mapped arrays (None: decode into RAM)."""

    image_size: int | None = None
    resize: str = "squash"
    workers: int = 4
    decode_dir: str | Path | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


def decode_images(
    paths: Sequence[Path], image_size: int | None, workers: int = 4, out: Path | None = None,
    resize: str = "squash",
) -> np.ndarray:  # fmt: skip
    """Decode image files to uint8 (N, S, S, 3), resized to ``image_size`` (bilinear, ``resize``
    mode of :func:`_decode_one`) when given.

    Rows go straight into one preallocated array: in RAM, or with ``out`` a memory-mapped
    ``.npy`` file at that path. Without ``image_size`` every image must have the first's size.
    """
    paths = list(paths)
    if not paths:
        return np.zeros((0, image_size or 1, image_size or 1, 3), np.uint8)
    first = _decode_one(paths[0], image_size, resize)
    shape = (len(paths), *first.shape)
    if out is None:
        images = np.empty(shape, np.uint8)
    else:
        images = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=shape)
    step = max(1, workers, DECODE_CHUNK_BYTES // max(1, first.nbytes))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(paths), step):
            chunk = paths[start:start + step]
            for i, im in enumerate(pool.map(lambda p: _decode_one(p, image_size, resize), chunk), start):
                if im.shape != first.shape:
                    raise ValueError(f"images have different sizes ({paths[0]}: {first.shape}, {paths[i]}: "
                                     f"{im.shape}); pass image_size to resize them")
                images[i] = im
    if out is not None:
        images.flush()
    return images


def _decode_key(paths: Sequence[Path], image_size: int | None, resize: str) -> str:
    """What a cached decode depends on: the ordered paths, their sizes and mtimes, size and mode."""
    h = hashlib.sha256(f"lpt-decode/1 {image_size} {resize}\n".encode())
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise ValueError(f"cannot decode image {p}: {exc}") from exc
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _recorded_key(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text()).get("key")
    except (OSError, ValueError, AttributeError):  # unreadable or not our JSON: decode again
        return None


def decode_split(paths: Sequence[Path], opts: DecodeOptions, label: str) -> np.ndarray:
    """:func:`decode_images` in RAM, or with ``opts.decode_dir`` into
    ``<decode_dir>/<label>-<size>[-center_crop].npy`` (memory-mapped, read-only), reusing that
    file while its recorded key still matches."""
    if opts.decode_dir is None:
        return decode_images(paths, opts.image_size, opts.workers, resize=opts.resize)
    folder = Path(opts.decode_dir)
    folder.mkdir(parents=True, exist_ok=True)
    label = f"{label}-{opts.image_size or 'orig'}" + ("" if opts.resize == "squash" else f"-{opts.resize}")
    npy, meta = folder / f"{label}.npy", folder / f"{label}.json"
    key = _decode_key(paths, opts.image_size, opts.resize)
    if npy.is_file() and meta.is_file() and _recorded_key(meta) == key:
        return np.load(npy, mmap_mode="r")
    meta.unlink(missing_ok=True)  # never leave an old key next to new pixels
    with atomic_file(npy) as tmp:
        decode_images(paths, opts.image_size, opts.workers, out=tmp, resize=opts.resize)  # flushed
    meta.write_text(json.dumps({"key": key, "count": len(paths), "image_size": opts.image_size,
                                "resize": opts.resize}))
    return np.load(npy, mmap_mode="r")


def _class_folder_listing(
    folder: Path, class_names: Sequence[str] | None
) -> tuple[list[Path], np.ndarray, list[str]]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    names = list(class_names) if class_names is not None else [p.name for p in subdirs]
    unknown = [p.name for p in subdirs if p.name not in names]
    if unknown:
        raise ValueError(f"class folder(s) {unknown} in {folder} are not among the classes {names}")
    paths: list[Path] = []
    labels: list[int] = []
    for sub in subdirs:
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [names.index(sub.name)] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), names


def read_image_folder(
    folder: str | Path, class_names: Sequence[str] | None = None, image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of a class-per-subfolder folder -> (images, labels, class names).

    With ``class_names`` the subfolders must be among them and labels follow that order;
    otherwise classes are the sorted subfolder names.
    """
    paths, labels, names = _class_folder_listing(Path(folder), class_names)
    return decode_images(paths, image_size), labels, names


def read_class_folder(
    folder: str | Path, class_names: Sequence[str], image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Like :func:`read_image_folder` but -> (images, labels, ids): an image's id is
    ``<class folder>/<file name>``, in the order of the rows."""
    folder = Path(folder)
    paths, labels, _ = _class_folder_listing(folder, class_names)
    return decode_images(paths, image_size), labels, [p.relative_to(folder).as_posix() for p in paths]


def folder_layout(folder: str | Path) -> str:
    """How an image folder is laid out: ``"classes"`` (class subfolders, no image files beside
    them), ``"flat"`` (image files, no subfolders), ``"mixed"`` (both) or ``"empty"`` (neither).
    Hidden entries are not counted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    subdirs = any(p.is_dir() for p in entries)
    files = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries)
    return {(True, False): "classes", (False, True): "flat", (True, True): "mixed"}.get((subdirs, files), "empty")


def read_flat_folder(folder: str | Path, image_size: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The image files directly in ``folder`` (an unlabeled batch), sorted by file name ->
    (images, file names); the file names are the images' ids."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)  # fmt: skip
    return decode_images(paths, image_size), [p.name for p in paths]


@SOURCES.register("folder")
def folder(
    root: Path | None, download: bool = False, *, image_size: int | None = None,
    decode_dir: str | Path | None = None, workers: int = 4, resize: str = "squash",
) -> RawDataset:  # fmt: skip
    """A user's own images: ``root/train/<class>/*`` and ``root/test/<class>/*``."""
    if root is None or not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DataUnavailableError(
            f"folder source needs root/train/<class>/<image> and root/test/<class>/<image>; got root={root}"
        )
    opts = DecodeOptions(image_size, resize, workers, decode_dir)
    tr_paths, ytr, names = _class_folder_listing(root / "train", None)
    te_paths, yte, _ = _class_folder_listing(root / "test", names)
    xtr, xte = decode_split(tr_paths, opts, "folder-train"), decode_split(te_paths, opts, "folder-test")
    return RawDataset(_split(xtr, ytr), _split(xte, yte), names, "folder")


def _read_list(path: Path) -> tuple[list[str], np.ndarray]:
    rels, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected 'relative/path label', got {line!r}")
        rels.append(parts[0])
        labels.append(int(parts[1]))
    return rels, np.asarray(labels, dtype=np.int64)


def _class_names_from_paths(rels: Sequence[str], labels: np.ndarray) -> list[str]:
    """Name each class by the folder of its first listed image (minus the top-level folder)."""
    names: dict[int, str] = {}
    for rel, lab in zip(rels, labels):
        if int(lab) not in names:
            parts = Path(rel).parent.parts
            names[int(lab)] = "/".join(parts[1:] or parts) or str(lab)
    return [names.get(i, f"class_{i}") for i in range(int(labels.max()) + 1)]


def _split_files(name: str, lists_dir: Path, files: Sequence[str], root: Path) -> list[Path]:
    paths = [lists_dir / f for f in files]
    missing = [str(f) for f in paths if not f.is_file()]
    if missing:
        raise DataUnavailableError(
            f"{name}: split file(s) {missing} not found; put the standard files {list(files)} in "
            f"{lists_dir} (or pass lists_dir=) and the images under {root}"
        )
    return paths


def _list_source(
    name: str, root: Path | None, lists: tuple[str, str], lists_dir: Path | None, opts: DecodeOptions,
    val_list: str | None = None,
) -> RawDataset:  # fmt: skip
    """Train/test from the two ``path label`` lists; with ``val_list`` and that file present in
    the lists folder, also the official validation split (``RawDataset.val``)."""
    if root is None:
        raise DataUnavailableError(f"{name} needs root= the image root the split lists refer to")
    folder = Path(lists_dir) if lists_dir else root
    files = _split_files(name, folder, lists, root)
    (tr_rel, ytr), (te_rel, yte) = _read_list(files[0]), _read_list(files[1])
    classes = _class_names_from_paths(tr_rel, ytr)
    xtr = decode_split([root / r for r in tr_rel], opts, f"{name}-train")
    xte = decode_split([root / r for r in te_rel], opts, f"{name}-test")
    val = None
    if val_list is not None and (folder / val_list).is_file():
        va_rel, yva = _read_list(folder / val_list)
        if len(yva) and (yva.min() < 0 or yva.max() >= len(classes)):
            raise ValueError(f"{folder / val_list}: labels {yva.min()}..{yva.max()} outside the "
                             f"{len(classes)} training classes")  # fmt: skip
        val = _split(decode_split([root / r for r in va_rel], opts, f"{name}-val"), yva)
    return RawDataset(_split(xtr, ytr), _split(xte, yte), classes, name, val)


@SOURCES.register("places_lt")
def places_lt(
    root: Path | None, download: bool = False, *, image_size: int = 224,
    lists_dir: Path | None = None, workers: int = 4, decode_dir: str | Path | None = None, resize: str = "squash",
    official_val: bool = True,
) -> RawDataset:  # fmt: skip
    """Places-LT from Places_LT_train.txt / Places_LT_test.txt and the Places-365 images under ``root``;
    with ``official_val`` and Places_LT_val.txt beside the lists, also its validation split."""
    lists = ("Places_LT_train.txt", "Places_LT_test.txt")
    opts = DecodeOptions(image_size, resize, workers, decode_dir)
    return _list_source("places_lt", root, lists, lists_dir, opts, "Places_LT_val.txt" if official_val else None)


@SOURCES.register("imagenet_lt")
def imagenet_lt(
    root: Path | None, download: bool = False, *, image_size: int = 224,
    lists_dir: Path | None = None, workers: int = 4, decode_dir: str | Path | None = None, resize: str = "squash",
    official_val: bool = True,
) -> RawDataset:  # fmt: skip
    """ImageNet-LT from ImageNet_LT_train.txt / ImageNet_LT_test.txt and the ImageNet images under ``root``;
    with ``official_val`` and ImageNet_LT_val.txt beside the lists, also its validation split."""
    lists = ("ImageNet_LT_train.txt", "ImageNet_LT_test.txt")
    opts = DecodeOptions(image_size, resize, workers, decode_dir)
    return _list_source("imagenet_lt", root, lists, lists_dir, opts, "ImageNet_LT_val.txt" if official_val else None)


def _read_inat(path: Path) -> tuple[list[str], np.ndarray, dict[int, str]]:
    try:
        doc = json.loads(path.read_text())
        label_of = {a["image_id"]: int(a["category_id"]) for a in doc["annotations"]}
        rels = [im["file_name"] for im in doc["images"]]
        labels = np.asarray([label_of[im["id"]] for im in doc["images"]], dtype=np.int64)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an iNaturalist 2018 split file: {exc}") from exc
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in doc.get("categories", [])}
    return rels, labels, names


@SOURCES.register("inat2018")
def inat2018(
    root: Path | None, download: bool = False, *, image_size: int = 224,
    lists_dir: Path | None = None, workers: int = 4, decode_dir: str | Path | None = None, resize: str = "squash",
) -> RawDataset:  # fmt: skip
    """iNaturalist 2018 from train2018.json / val2018.json (the val split is the test set)."""
    opts = DecodeOptions(image_size, resize, workers, decode_dir)
    if root is None:
        raise DataUnavailableError("inat2018 needs root= the folder holding train_val2018/")
    files = _split_files("inat2018", Path(lists_dir) if lists_dir else root, ("train2018.json", "val2018.json"), root)
    tr_rel, ytr, names = _read_inat(files[0])
    te_rel, yte, _ = _read_inat(files[1])
    xtr = decode_split([root / r for r in tr_rel], opts, "inat2018-train")
    xte = decode_split([root / r for r in te_rel], opts, "inat2018-test")
    classes = [names.get(i, f"class_{i}") for i in range(int(max(ytr.max(), yte.max())) + 1)]
    return RawDataset(_split(xtr, ytr), _split(xte, yte), classes, "inat2018")

"""Batched corruptions equal a straightforward per-image rendering of make_cifar_c.py's maths.

Each oracle below follows the reference's per-image steps with the same library calls (skimage,
OpenCV, Pillow, scipy) and the same random draws, so a batching bug shows up as a difference.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.ndimage import zoom as scizoom
from skimage import color
from skimage.filters import gaussian

from lpt_core.shifts import corrupt, frost_mode
from lpt_core.shifts._core import make_rng
from lpt_core.shifts._frost import FROST, FROST_FILES, TEXTURE_MEAN_RGB, procedural_frost
from lpt_core.shifts.blur import disk_kernel, glass_shuffle


def images(n: int = 6, size: int = 32, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 1, size=(n, 4, 4, 3))
    smooth = scizoom(small, (1, size / 4, size / 4, 1), order=1)
    return (np.clip(smooth + rng.normal(0, 0.05, smooth.shape), 0, 1) * 255).astype(np.uint8)


def test_glass_gather_equals_the_sequential_view_swap_loop() -> None:
    x = images(n=3)
    batched = glass_shuffle(x.copy(), 2, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    expected = x.copy()
    for _ in range(2):
        raw = rng.integers(-1, 1, size=(3, 30, 30, 2))  # draw k <-> k-th visited pixel
        for i, img in enumerate(expected):
            for k, h in enumerate(range(31, 1, -1)):
                for j, w in enumerate(range(31, 1, -1)):
                    dx, dy = raw[i, k, j]
                    # the reference's idiom, with numpy views on both sides
                    img[h, w], img[h + dy, w + dx] = img[h + dy, w + dx], img[h, w]
    assert np.array_equal(batched, expected)


def test_defocus_equals_per_image_filter2d_with_the_full_kernel() -> None:
    x = images()
    for severity, (radius, alias) in zip((1, 5), [(0.3, 0.4), (1.5, 0.1)]):
        grid = np.arange(-8, 9)
        xx, yy = np.meshgrid(grid, grid)
        disk = np.array(xx**2 + yy**2 <= radius**2, dtype=np.float32)
        kernel = cv2.GaussianBlur(disk / disk.sum(), (3, 3), alias)
        assert np.allclose(disk_kernel(radius, alias).sum(), kernel.sum())
        ref = [np.stack([cv2.filter2D(img[..., d] / 255.0, -1, kernel) for d in range(3)], -1) for img in x]
        expected = np.uint8(np.clip(np.array(ref), 0, 1) * 255)
        diff = np.abs(corrupt(x, "defocus_blur", severity, 0).astype(int) - expected)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_pixelate_equals_per_image_pillow_box(severity: int) -> None:
    x = images()
    factor = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    expected = [
        np.asarray(Image.fromarray(img).resize((int(32 * factor),) * 2, Image.BOX).resize((32, 32), Image.BOX))
        for img in x
    ]
    assert np.array_equal(corrupt(x, "pixelate", severity, 0), np.array(expected))


def test_zoom_blur_equals_per_image_clipped_zoom() -> None:
    x = images(n=3)
    unit = (x / 255.0).astype(np.float32)
    expected = []
    for img in unit:
        out = np.zeros_like(img)
        factors = np.arange(1, 1.16, 0.01)
        for z in factors:
            ch = int(np.ceil(32 / z))
            top = (32 - ch) // 2
            zoomed = scizoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
            trim = (zoomed.shape[0] - 32) // 2
            out += zoomed[trim : trim + 32, trim : trim + 32]
        expected.append((img + out) / (len(factors) + 1))
    expected = np.uint8(np.clip(np.array(expected), 0, 1) * 255)
    assert np.abs(corrupt(x, "zoom_blur", 3, 0).astype(int) - expected).max() <= 1


def test_colour_and_gaussian_blur_equal_per_image_skimage() -> None:
    x = images()
    hsv = [color.rgb2hsv(img / 255.0) for img in x]
    for h in hsv:
        h[..., 2] = np.clip(h[..., 2] + 0.3, 0, 1)
    bright = np.uint8(np.clip(np.array([color.hsv2rgb(h) for h in hsv]), 0, 1) * 255)
    assert np.array_equal(corrupt(x, "brightness", 5, 0), bright)
    blurred = np.uint8(np.clip(np.array([gaussian(img / 255.0, sigma=1, channel_axis=-1) for img in x]), 0, 1) * 255)
    assert np.array_equal(corrupt(x, "gaussian_blur", 5, 0), blurred)


def test_elastic_equals_per_image_reference_steps() -> None:
    x = images(n=3)
    alpha, sigma, affine = 3.2, 0.96, 0.96  # severity 5 at 32 px
    rng = make_rng(4, "elastic_transform", 5)
    jitter = rng.uniform(-affine, affine, size=(3, 3, 2)).astype(np.float32)
    fields = rng.uniform(-1, 1, size=(2, 3, 32, 32))
    expected = []
    for i, img in enumerate(x / np.float32(255)):
        c, s = np.float32([32, 32]) // 2, 32 // 3
        pts1 = np.float32([c + s, [c[0] + s, c[1] - s], c - s])
        matrix = cv2.getAffineTransform(pts1, pts1 + jitter[i])
        img = cv2.warpAffine(img.astype(np.float32), matrix, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
        dx = (gaussian(fields[0, i], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)[..., None]
        dy = (gaussian(fields[1, i], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)[..., None]
        xx, yy, zz = np.meshgrid(np.arange(32), np.arange(32), np.arange(3))
        idx = np.reshape(yy + dy, (-1, 1)), np.reshape(xx + dx, (-1, 1)), np.reshape(zz, (-1, 1))
        expected.append(map_coordinates(img, idx, order=1, mode="reflect").reshape(img.shape))
    expected = np.uint8(np.clip(np.array(expected), 0, 1) * 255)
    assert np.abs(corrupt(x, "elastic_transform", 5, 4).astype(int) - expected).max() <= 1


def test_motion_blur_keeps_a_flat_image_flat() -> None:
    flat = np.full((2, 32, 32, 3), 90, np.uint8)
    assert np.abs(corrupt(flat, "motion_blur", 5, 0).astype(int) - 90).max() <= 1


def test_procedural_frost_matches_its_assumed_statistics() -> None:
    texture = procedural_frost(64, 32, np.random.default_rng(0))
    assert texture.shape == (64, 32, 32, 3) and 0 <= texture.min() and texture.max() <= 255
    assert np.allclose(texture.mean(axis=(0, 1, 2)), TEXTURE_MEAN_RGB, atol=3)
    assert frost_mode() == "procedural"


def _write_frost_photos(folder) -> None:
    rng = np.random.default_rng(0)
    for i, name in enumerate(FROST_FILES):
        photo = rng.integers(0, 256, size=(300 + 20 * i, 320, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), photo, [cv2.IMWRITE_JPEG_QUALITY, 100])


def test_frost_photos_are_blended_like_the_reference(tmp_path, monkeypatch) -> None:
    _write_frost_photos(tmp_path)
    x = images(n=4)
    out = corrupt(x, "frost", 5, 9, frost_dir=tmp_path)
    rng = make_rng(9, "frost", 5)
    photos = [cv2.resize(cv2.imread(str(tmp_path / n)), (0, 0), fx=0.2, fy=0.2) for n in FROST_FILES]
    a, b = FROST[4]
    for img, got in zip(x, out):
        photo = photos[int(rng.integers(5))]
        top, left = rng.integers(0, photo.shape[0] - 32), rng.integers(0, photo.shape[1] - 32)
        crop = photo[top : top + 32, left : left + 32][..., [2, 1, 0]]
        assert np.array_equal(got, np.uint8(np.clip(a * img + b * crop, 0, 255)))
    monkeypatch.setenv("LPT_FROST_DIR", str(tmp_path))
    assert np.array_equal(corrupt(x, "frost", 5, 9), out)
    assert frost_mode() == f"photos:{tmp_path}"


def test_frost_dir_without_the_photos_names_them(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="frost1.png"):
        corrupt(images(n=1), "frost", 1, 0, frost_dir=tmp_path)

"""lpt_core.shifts: contract, reproducibility, severity ordering and hand checks of constants."""

from __future__ import annotations

import numpy as np
import pytest

from lpt_core.shifts import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    corrupt,
)
from lpt_core.shifts.blur import disk_kernel
from lpt_core.shifts.digital import elastic_constants

# Corruptions whose output does not depend on the seed (no random draw in the reference).
DETERMINISTIC = {
    "defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
    "gaussian_blur", "saturate",
}
# Severity orderings of mean squared error vs clean where the reference's constants are not
# monotone (docs/SHIFTS.md explains each). Everything else must be non-decreasing from 1 to 5.
# e[0..4] are the errors at severities 1..5.
REFERENCE_ORDER = {
    # s1/s2 desaturate (S x 0.3, x 0.1), s3 saturates mildly (x 1.5), s4/s5 more (x 2 + .1, x 2.5 + .2).
    "saturate": lambda e: e[0] < e[1] and e[2] < e[0] and e[2] < e[3] < e[4],
    # One shuffle (s1-s3) < two (s4-s5); within each, more blur (larger sigma) smooths the shuffle.
    "glass_blur": lambda e: max(e[:3]) < min(e[3:]) and e[2] < e[1] and e[4] < e[3],
    # The affine jitter (0.08 ... 0.03 x 32 px) dominates the tiny elastic field at 32 px.
    "elastic_transform": lambda e: e[0] > max(e[1:]) and e[4] < min(e[:4]),
    # a * x + b * frost: (0.9, 0.4) -> (0.85, 0.4) -> (0.75, 0.45) darkens more than it adds.
    "frost": lambda e: e[0] < e[1] < e[2] and e[2] > e[3] and e[2] > e[4],
}
# Near-ties of the reference constants, decided by the random draws: (severity a, a + 1) may drop
# by at most 10 %. motion_blur s3/s4: ImageMagick radius 6 vs 8 at sigma 2 (weights past 6 px are
# below exp(-4.5)); spatter s3/s4: water (scale 0.3) vs mud (intensity 0.6) cover similar areas.
NEAR_TIES = {"motion_blur": (3, 4), "spatter": (3, 4)}


def natural_images(n: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth gradients with a few flat shapes and mild texture: CIFAR-like statistics."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        a, b, c = rng.uniform(0.1, 0.9, size=(3, 3))
        img = a * (1 - yy[..., None]) + b * xx[..., None] * 0.5 + c * 0.3
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[inside] = rng.uniform(0, 1, size=3)
        top, left = rng.integers(0, size // 2, size=2)
        img[top : top + size // 4, left : left + size // 3] = rng.uniform(0, 1, size=3)
        out[i] = img + rng.normal(0, 0.02, size=img.shape)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return natural_images()


@pytest.fixture(scope="module")
def outputs(images: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """Every corruption x severity on the 8 test images, seed 7 (computed once)."""
    return {(c, s): corrupt(images, c, s, seed=7) for c in CORRUPTIONS.names() for s in range(1, 6)}


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b) ** 2).mean())


def test_registry_holds_the_19_reference_corruptions_in_order() -> None:
    assert BENCHMARK_CORRUPTIONS[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert BENCHMARK_CORRUPTIONS[-1] == "jpeg_compression" and len(BENCHMARK_CORRUPTIONS) == 15
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert CORRUPTIONS.names() == sorted(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)


def test_unknown_corruption_lists_valid_names(images: np.ndarray) -> None:
    with pytest.raises(KeyError, match="gaussian_nois'.*valid names: brightness, contrast"):
        corrupt(images, "gaussian_nois", 1, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"severity": 0}, "severity must be in 1..5, got 0"),
        ({"severity": 6}, "got 6"),
        ({"severity": 2.0}, "got 2.0"),
        ({"severity": True}, "got True"),
        ({"seed": -1}, "seed must be a non-negative int, got -1"),
        ({"images": np.zeros((2, 32, 32, 3), np.float32)}, "dtype uint8, got float32"),
        ({"images": np.zeros((2, 32, 32), np.uint8)}, r"\(N, H, W, 3\), got \(2, 32, 32\)"),
        ({"images": np.zeros((0, 32, 32, 3), np.uint8)}, r"non-empty, got shape \(0, 32, 32, 3\)"),
        ({"images": np.zeros((1, 32, 30, 3), np.uint8)}, "H=32, W=30"),
        ({"images": [[1, 2]]}, "numpy array, got list"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(
    images: np.ndarray, kwargs: dict, message: str
) -> None:
    call = {"images": images, "corruption": "contrast", "severity": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        corrupt(**call)


def test_frost_dir_only_for_frost(images: np.ndarray, tmp_path) -> None:
    with pytest.raises(ValueError, match="only applies to 'frost', not to 'fog'"):
        corrupt(images, "fog", 1, 0, frost_dir=tmp_path)


@pytest.mark.parametrize("name", BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
def test_shape_dtype_and_input_untouched(name: str, images: np.ndarray, outputs: dict) -> None:
    assert images.sum() == natural_images().sum()  # no corruption wrote into its input
    for severity in range(1, 6):
        out = outputs[(name, severity)]
        assert out.dtype == np.uint8 and out.shape == images.shape
        assert not np.array_equal(out, images), (name, severity)


@pytest.mark.parametrize("name", BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
def test_same_seed_same_bytes_other_seed_differs(name: str, images: np.ndarray, outputs: dict) -> None:
    again = corrupt(images, name, 3, seed=7)
    assert again.tobytes() == outputs[(name, 3)].tobytes()
    other = corrupt(images, name, 3, seed=8)
    assert np.array_equal(other, again) == (name in DETERMINISTIC)


def test_streams_differ_across_severity_for_same_seed(images: np.ndarray) -> None:
    grey = np.full((4, 32, 32, 3), 128, np.uint8)
    a, b = corrupt(grey, "gaussian_noise", 4, 0), corrupt(grey, "gaussian_noise", 5, 0)
    # Same stream would give b - 128 == (a - 128) * 0.10 / 0.09 up to rounding.
    ratio = (b.astype(float) - 128).std() / (a.astype(float) - 128).std()
    assert abs(ratio - 0.10 / 0.09) < 0.08
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.2


@pytest.mark.parametrize("name", BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
def test_severity_ordering_follows_the_reference(name: str, images: np.ndarray, outputs: dict) -> None:
    errors = [mse(outputs[(name, s)], images) for s in range(1, 6)]
    if name in REFERENCE_ORDER:
        assert REFERENCE_ORDER[name](errors), (name, errors)
        return
    for s in range(1, 5):
        tolerance = 0.9 if NEAR_TIES.get(name) == (s, s + 1) else 1.0
        assert errors[s] >= tolerance * errors[s - 1], (name, s, errors)


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("name", BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
def test_other_square_sizes(name: str, size: int) -> None:
    x = natural_images(n=2, size=size)
    out = corrupt(x, name, 3, seed=1)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert 0 < mse(out, x) < 20000


def test_gaussian_noise_severity3_std_on_mid_grey() -> None:
    grey = np.full((16, 32, 32, 3), 128, np.uint8)
    delta = corrupt(grey, "gaussian_noise", 3, 0).astype(float) - 128
    assert delta.std() == pytest.approx(0.08 * 255, rel=0.03)
    assert delta.mean() == pytest.approx(-0.5, abs=0.2)  # np.uint8 truncates


def test_shot_and_speckle_noise_std_on_mid_grey() -> None:
    grey = np.full((16, 32, 32, 3), 128, np.uint8)
    shot = corrupt(grey, "shot_noise", 5, 0).astype(float)
    assert shot.std() == pytest.approx(np.sqrt(128 / 255 * 50) / 50 * 255, rel=0.03)
    speckle = corrupt(grey, "speckle_noise", 5, 0).astype(float)
    assert speckle.std() == pytest.approx(128 * 0.2, rel=0.03)


def test_impulse_noise_amount() -> None:
    grey = np.full((16, 32, 32, 3), 128, np.uint8)
    out = corrupt(grey, "impulse_noise", 5, 0)
    assert set(np.unique(out)) == {0, 128, 255}
    assert (out != 128).mean() == pytest.approx(0.07, abs=0.005)
    assert (out == 255).mean() == pytest.approx(0.035, abs=0.004)


def test_contrast_severity5_on_two_level_image() -> None:
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[:, :, 16:] = 200  # per-channel mean 100
    out = corrupt(x, "contrast", 5, 0)
    mean = 100 / 255
    for level, cols in [(0, slice(None, 16)), (200, slice(16, None))]:
        expected = np.uint8(np.clip((level / 255 - mean) * 0.15 + mean, 0, 1) * 255)  # the formula
        assert expected in (84, 85, 114, 115)  # 100 -/+ 15, truncated
        assert set(np.unique(out[:, :, cols])) == {expected}


def test_brightness_adds_to_value_and_saturate_keeps_grey() -> None:
    grey = np.full((1, 32, 32, 3), 100, np.uint8)
    expected = {1: 112, 2: 125, 3: 138, 4: 151, 5: 176}  # floor(100 + 255 * c)
    for severity, value in expected.items():
        assert set(np.unique(corrupt(grey, "brightness", severity, 0))) == {value}
    assert set(np.unique(corrupt(grey, "saturate", 3, 0))) == {100}
    # saturate s5: S * 2.5 + 0.2 turns grey (S = 0) into S = 0.2 with V kept.
    out = corrupt(grey, "saturate", 5, 0)[0, 0, 0]
    assert out.max() == 100 and out.min() == 80


def test_pixelate_factor_blocks() -> None:
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[0, :, ::2] = 255  # 1-px stripes: BOX down to int(32 * 0.65) = 20 px mixes them
    out = corrupt(x, "pixelate", 5, 0)
    assert len(np.unique(out[0, 0, :, 0])) > 2
    assert np.array_equal(corrupt(x, "pixelate", 1, 0)[0, 5], corrupt(x, "pixelate", 1, 0)[0, 6])


def test_jpeg_quality_matches_pillow(images: np.ndarray) -> None:
    from io import BytesIO

    from PIL import Image

    for severity, quality in zip(range(1, 6), (80, 65, 58, 50, 40)):
        buffer = BytesIO()
        Image.fromarray(images[3]).save(buffer, "JPEG", quality=quality)
        expected = np.asarray(Image.open(buffer))
        assert np.array_equal(corrupt(images[3:4], "jpeg_compression", severity, 0)[0], expected)


def test_defocus_disk_kernels() -> None:
    import cv2

    g = cv2.getGaussianKernel(3, 0.4).ravel()
    assert np.allclose(disk_kernel(0.3, 0.4), np.outer(g, g))  # radius 0.3: just the centre pixel
    for radius, alias in [(0.3, 0.4), (1, 0.2), (1.5, 0.1)]:
        assert disk_kernel(radius, alias).sum() == pytest.approx(1.0, abs=1e-6)
    assert disk_kernel(1.5, 0.1).shape == (5, 5)  # 3x3 disk (x^2 + y^2 <= 2.25) + 3x3 blur


def test_elastic_constants_scale_with_the_image_side() -> None:
    assert elastic_constants(5, 32) == pytest.approx((3.2, 0.96, 0.96))
    assert elastic_constants(1, 32) == pytest.approx((0.0, 0.0, 2.56))
    assert elastic_constants(2, 64) == pytest.approx((3.2, 12.8, 4.48))

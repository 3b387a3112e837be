"""ImageMagick motion blur through Wand, with the reference's PNG round trip.

make_cifar_c.py blurs with ``MagickMotionBlurImage`` on an image read from a PNG blob and decodes
the PNG it writes back. Wand's in-memory ``from_array``/``export_pixels`` path differs from that by
one grey level on many pixels (ImageMagick rounds differently there), so the PNG path is kept to
stay byte-faithful.
"""

from __future__ import annotations

from io import BytesIO

import cv2
import numpy as np
from PIL import Image


def motion_blur_image(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Motion-blur one uint8 image, (H, W) grey or (H, W, 3) RGB; returns the same shape, uint8."""
    from wand.image import Image as WandImage  # ImageMagick is loaded only when needed

    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    with WandImage(blob=buffer.getvalue()) as wand_image:
        wand_image.motion_blur(radius=radius, sigma=sigma, angle=angle)
        blob = wand_image.make_blob("png")
    decoded = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise RuntimeError("ImageMagick returned an undecodable PNG")
    if decoded.dtype != np.uint8:
        raise RuntimeError(f"ImageMagick returned a {decoded.dtype} PNG; expected 8-bit")
    if image.ndim == 2:
        return decoded if decoded.ndim == 2 else decoded[..., 0]
    if decoded.ndim == 2:  # ImageMagick writes grey PNGs for grey-looking RGB images
        return np.repeat(decoded[..., None], 3, axis=-1)
    return decoded[..., [2, 1, 0]]  # BGR -> RGB

"""Encoded images to AlexNet's input: torchvision's ImageNet recipe, done with Pillow and NumPy.

Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std), exactly as
torchvision applies them to a PIL image, so a real AlexNet served here scores
as it does under torchvision.
"""

import base64
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

RESIZE, CROP = 256, 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
# Resizing a very thin image would make its long side huge; a 64:1 panorama is already beyond use.
MAX_LONG_SIDE = 64 * RESIZE


class ImageError(ValueError):
    """The bytes are not an image this recipe can take; the message says why."""


def from_base64(text):
    """Base64 text (str or bytes) to bytes; line breaks are welcome, as the base64 command wraps."""
    compact = "".join(text.split()) if isinstance(text, str) else b"".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("is not valid base64") from None


def unwrap(data: bytes) -> bytes:
    """V2 BYTES come raw over the binary extension but as base64 text in JSON, which cannot carry bytes.

    No JPEG or PNG is valid base64: their first byte already is not.
    """
    try:
        return from_base64(data)
    except ImageError:
        return data


def decode(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise ImageError("is not an image (not a JPEG, PNG or other format Pillow reads)") from None
    # Pillow reports damage with several exception types, depending on the format and the damage.
    except Exception as exc:
        raise ImageError(f"is a broken image ({exc})") from None


def to_tensor(image: Image.Image) -> np.ndarray:
    """One RGB image as normalized float32 [3, 224, 224]."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(RESIZE * long / short)
    if new_long > MAX_LONG_SIDE:
        raise ImageError(f"is {width}x{height}, too elongated to resize its short side to {RESIZE}")
    size = (RESIZE, new_long) if width <= height else (new_long, RESIZE)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    top = int(round((size[1] - CROP) / 2.0))
    left = int(round((size[0] - CROP) / 2.0))
    pixels = np.asarray(image.crop((left, top, left + CROP, top + CROP)), dtype=np.float32)
    return (pixels.transpose(2, 0, 1) / np.float32(255) - MEAN) / STD


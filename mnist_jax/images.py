"""Any picture of a digit as an MNIST-style 28x28 image.

    from mnist_jax import images
    digit = images.load_image("my_digit.png")       # uint8 (28, 28, 1)

Images of any size and colour are made to look like MNIST digits: grayscale, light on dark
(inverted when the background is light), the ink's bounding box scaled into 20x20 and centred by
its centre of mass in 28x28, as the MNIST digits were prepared.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_jax.errors import UserError


class ImageError(UserError, ValueError):
    """An input image is missing or unreadable; the message is one line naming the file."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as an MNIST-style uint8 (28, 28, 1) digit."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_mnist(image)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read (PNG, JPEG, ...)") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e})") from None


def to_mnist(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        background = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(background, image.convert("RGBA"))
    gray = np.asarray(image.convert("L"), np.float32)

    def background() -> float:
        return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))

    if background() > 127:  # a dark digit on a light background; MNIST is light on dark
        gray = 255.0 - gray
    gray = np.clip(gray - background(), 0, None)  # paper that is not quite black reads as no ink
    out = np.zeros((28, 28), np.float32)
    ink = gray > 0.2 * gray.max() if gray.max() > 0 else np.zeros_like(gray, bool)
    if ink.any():
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        scale = 20.0 / max(crop.shape)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        digit = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), np.float32).clip(0, 255)
        h, w = digit.shape
        total = digit.sum() or 1.0
        cy = (digit.sum(1) * np.arange(h)).sum() / total
        cx = (digit.sum(0) * np.arange(w)).sum() / total
        top = int(np.clip(round(14.0 - cy), 0, 28 - h))
        left = int(np.clip(round(14.0 - cx), 0, 28 - w))
        out[top : top + h, left : left + w] = digit
        out *= 255.0 / max(out.max(), 1e-6)
    return np.round(out).astype(np.uint8)[..., None]

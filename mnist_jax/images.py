"""Any picture of a digit as an MNIST-style 28x28 image.

    from mnist_jax import images
    digit = images.load_image("my_digit.png")       # uint8 (28, 28, 1)

Images of any colour and of up to MAX_PIXELS are made to look like MNIST digits: grayscale, light
on dark (inverted when the background is light; on a transparent background the opaque strokes are
the ink, whatever their colour), 16-bit images scaled to 8 bits, the ink's bounding box scaled into
20x20 and centred by its centre of mass in 28x28, as the MNIST digits were prepared.
"""

from __future__ import annotations

import os
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_jax.errors import UserError


# A 48-megapixel phone photo is 8000 x 6000; decoding one takes about 200 MB as float32 here. Larger
# images are refused from their header, before any pixel is decoded.
MAX_PIXELS = 50_000_000


class ImageError(UserError, ValueError):
    """An input image is missing, unreadable or too large; the message is one line naming the file."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as an MNIST-style uint8 (28, 28, 1) digit."""
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise _too_large(path, f"{width} x {height}")
            image.load()
            digit = to_mnist(image)
    except Image.DecompressionBombError as e:  # Pillow refuses the largest images when opening them
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(path, found.group(1) if found else "too many") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read (PNG, JPEG, ...)") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e})") from None
    if not digit.any():  # a model given nothing would still name a class
        raise ImageError(f"{path}: no digit found (the image is blank: one colour throughout)")
    return digit


def _too_large(path: str | os.PathLike, size: str) -> ImageError:
    return ImageError(f"{path}: {size} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels accepted; "
                      f"scale it down first")


def _grayscale(image: Image.Image) -> np.ndarray:
    """float32 gray levels in 0 ... 255."""
    if image.mode in ("RGBA", "LA", "PA", "P") and (image.mode != "P" or "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), np.float32)
        border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
        if np.median(border) < 128:  # strokes on a transparent background: their opacity is the ink
            return alpha
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit (or 32-bit) gray levels
        gray = np.asarray(image, np.float32)
        return gray * (255.0 / 65535.0) if gray.max() > 255 else gray
    return np.asarray(image.convert("L"), np.float32)


def to_mnist(image: Image.Image) -> np.ndarray:
    gray = _grayscale(image)

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

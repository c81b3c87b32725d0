"""Any picture of a digit as an MNIST-style 28x28 image.

    from mnist_jax.apps import images
    digit = images.load_image("my_digit.png")       # uint8 (28, 28, 1); ImageError if no digit
    digit = images.to_mnist(pillow_image_or_array)  # NoDigitError if no digit

Pictures of any colour and of up to MAX_PIXELS, drawn or photographed, are made to look like MNIST
digits, in steps:
1. Gray levels: 16-bit, 32-bit and float images scaled to 8 bits by their range, an animation's
   first frame; on a transparent background the opaque strokes are the ink, whatever their colour.
   Photos are brought down to WORK_SIDE pixels and smoothed.
2. Ink, light on dark: inverted when the ink is darker than the paper. Uneven light (a gradient, a
   shadow) is removed by subtracting the paper's own light, estimated by a grey-level opening.
3. The digit: Otsu's threshold (scikit-image) splits ink from paper; a picture where nothing stands
   out from the paper's noise has no digit. The largest connected stroke region away from the edges
   (scipy.ndimage) is the digit, with the strokes near it; specks, shadows and page borders are not.
4. As the MNIST digits were prepared: the digit's bounding box scaled into 20x20 and centred by its
   centre of mass in 28x28.

On the 180 pictures in tests/fixtures/digits (pen strokes and two fonts, clean, pencil on noisy
paper, light gradient, edge shadow, blur, chalk on a board) the bundled model reads 97.8% right;
MNIST's first 200 test digits, photographed as pencil on unevenly lit paper, 98.0% (99.0% as they are).
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_jax.errors import UserError
from mnist_jax.files import read_regular

# A 48-megapixel phone photo is 8000 x 6000; decoding one takes about 200 MB as float32 here. Larger
# images are refused from their header, before any pixel is decoded.
MAX_PIXELS = 50_000_000
# Such a photo is 10-25 MB as JPEG or PNG; a larger file is refused before it is read.
MAX_FILE_BYTES = 50_000_000


class ImageError(UserError, ValueError):
    """An input image is missing, unreadable or too large; the message is one line naming the file."""


class NoDigitError(ValueError):
    """The picture is blank or holds only noise; the message says which."""


# Photos are brought down to at most this many pixels a side before anything else: MNIST digits are
# 20 pixels high, and a smaller picture is quicker to clean and averages the sensor noise out.
WORK_SIDE = 192
# Ink must stand this many times the paper's noise (its robust standard deviation) above the paper.
# Noise alone, split by Otsu's threshold, stands 2.3 to 2.8 times above its lower half (Gaussian,
# uniform, salt-and-pepper); the faintest of 300 MNIST test digits photographed in pencil, 4.9.
MIN_CONTRAST = 4.0
# A region smaller than this share of the longer side is a speck, not a digit.
MIN_EXTENT = 0.08
# Below this many pixels a side a picture is taken as it is (MNIST's own 28 x 28); above, it is
# smoothed with a Gaussian of sigma side / SMOOTHING (1.2 pixels at WORK_SIDE) against sensor noise.
SMALL_SIDE = 64
SMOOTHING = 160
# The digit's region is widened by side // SOFT_EDGE pixels (2 at WORK_SIDE): its strokes' soft edges.
SOFT_EDGE = 96
# Ink is scaled so that this percentile of the digit's pixels is full: MNIST's strokes are saturated.
FULL_INK_PERCENTILE = 90
# As the MNIST digits were prepared: the digit's bounding box scaled to fit DIGIT_BOX pixels, centred
# by its centre of mass in DIGIT_SIDE x DIGIT_SIDE.
DIGIT_BOX = 20
DIGIT_SIDE = 28
# A symmetric digit's centre of mass falls half-way between two pixels, where the last bits of the
# arithmetic (numpy's float64, the web page's float32) would pick the side: such halves round up.
HALF_MARGIN = 1e-3


def nearest_whole(x: float) -> int:
    """The whole number nearest `x`, halves (within HALF_MARGIN) rounded up."""
    return math.floor(x + 0.5 + HALF_MARGIN)


def expand_folders(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The inputs `paths` name: a file as it is, a folder as every file in it, sorted by name (an
    empty or unreadable folder as itself, so that reading it says why); and a note for each folder
    with subfolders, which are not walked."""
    inputs, notes = [], []
    for path in paths:
        try:
            entries = sorted(p for p in path.iterdir() if not p.name.startswith(".")) if is_folder(path) else None
        except OSError:
            entries = None
        if entries is None:
            inputs.append(path)
            continue
        folders = [p for p in entries if is_folder(p)]
        inputs.extend([p for p in entries if not is_folder(p)] or [path])
        if folders:
            notes.append(f"{path}: {len(folders)} subfolder{'s' if len(folders) > 1 else ''} left out "
                         f"({folders[0].name}{', ...' if len(folders) > 1 else ''}); name them to classify them too")
    return inputs, notes


class DigitsRead(NamedTuple):
    """The images named on a command line, read: every input (folders expanded), the paths and
    digits of those read, notes on the folders, and one error line for each input not read."""

    inputs: list[Path]
    paths: list[Path]
    digits: list[np.ndarray]
    notes: list[str]
    errors: list[str]


def read_digits(names: list[Path]) -> DigitsRead:
    """The digits of the files `names` and of the files in the folders among them; an input that
    cannot be read is an error line in the result, and the others are read. An animation is read from
    its first frame, with a note saying so."""
    (inputs, notes), paths, digits, errors = expand_folders(names), [], [], []
    for path in inputs:
        try:
            if is_folder(path):
                raise ImageError(f"{path}: a folder with no files in it (or none this user can read)")
            digits.append(digit_of(read_picture(path, notes=notes), path))
            paths.append(path)
        except ImageError as e:
            errors.append(str(e))
    return DigitsRead(inputs, paths, digits, notes, errors)


def is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name over the OS's limit, say: reading it says so
        return False


def input_files(paths: list[Path], directory: Path, suffix: str = "-28x28.png") -> list[Path]:
    """DIR/NAME-28x28.png (NAME + `suffix`) for each input NAME.EXT, a name that another input took
    (x.png and sub/x.png, or x-2.png) getting the next free NAME-2-28x28.png, NAME-3-28x28.png ..."""
    taken: set[str] = set()
    files = []
    for path in paths:
        name, n = f"{path.stem}{suffix}", 1
        while name in taken:
            n += 1
            name = f"{path.stem}-{n}{suffix}"
        taken.add(name)
        files.append(directory / name)
    return files


def load_image(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as an MNIST-style uint8 (28, 28, 1) digit."""
    return digit_of(read_picture(path), path)


def digit_of(image: Image.Image, name: str | os.PathLike) -> np.ndarray:
    """`to_mnist` of a picture read by `read_picture`, with an ImageError naming it if it holds no digit."""
    try:
        return to_mnist(image)
    except NoDigitError as e:  # a model given nothing would still name a class
        raise ImageError(f"{name}: no digit found ({e})") from None


def read_picture(source: str | os.PathLike | bytes, name: str | os.PathLike | None = None,
                 notes: list[str] | None = None) -> Image.Image:
    """A picture from a file, or from a file's bytes, decoded and turned the way its EXIF orientation
    says (as every viewer shows a phone's photo). Whatever it is, it is read at most MAX_FILE_BYTES
    and decoded only if its header says at most MAX_PIXELS; anything else is an ImageError, one line
    naming `name` (default: the path). Of several frames or pages, the first is read, and a line
    saying so is added to `notes`, if given."""
    name = name if name is not None else source if not isinstance(source, bytes) else "the picture"
    content = source if isinstance(source, bytes) else _file_bytes(source)
    if len(content) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: {len(content) / 1e6:.0f} MB, more than the {MAX_FILE_BYTES // 1_000_000} MB "
                         f"accepted")
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 MP and refuses above 179 MP; MAX_PIXELS refuses before either.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(content))  # reads the header only
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise _too_large(name, f"{width} x {height}")
            image = ImageOps.exif_transpose(opened)  # decodes it, turned upright, into a copy of its own
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(name, found.group(1) if found else "too many") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read (PNG, JPEG, ...)") from None
    except Exception as e:  # noqa: BLE001 - a damaged file raises OSError, ValueError, SyntaxError, struct.error ...
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise ImageError(f"{name}: cannot read image, damaged or truncated ({reason})") from None
    note = _frames_note(opened, name)
    if note and notes is not None:
        notes.append(note)
    return image


def _frames_note(image: Image.Image, name: str | os.PathLike) -> str | None:
    """A line saying that only the first of a picture's frames (an animated GIF, PNG or WebP) or pages
    (a TIFF) is read; None for one frame, and for a phone's MPO (its photo first, then previews)."""
    try:
        count = getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001 - a damaged later frame: the first, decoded already, is read all the same
        return None
    if count <= 1 or image.format == "MPO":
        return None
    what = f"{count} pages" if image.format == "TIFF" else f"animated ({count} frames)"
    return f"{name}: {what}; reading its first only"


def _file_bytes(path: str | os.PathLike) -> bytes:
    """A file's content, refusing what is no regular file (a FIFO would block, a device never end)
    before opening it, and what is larger than MAX_FILE_BYTES before reading it."""
    try:
        return read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise ImageError(f"{path}: not a regular file (a pipe, socket or device), not an image") from None
        if e.errno == errno.EFBIG:
            raise ImageError(f"{path}: {os.stat(path).st_size / 1e6:.0f} MB, more than the "
                             f"{MAX_FILE_BYTES // 1_000_000} MB accepted") from None
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    """A Pillow image, or a uint8 (28, 28, 1) digit, as the bytes of a PNG file."""
    import io

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image)[..., 0])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def save_digit(digit: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 (28, 28, 1) digit as a 28 x 28 gray PNG, atomically."""
    from mnist_jax.files import write_atomic

    write_atomic(path, png_bytes(digit))


def _too_large(path: str | os.PathLike, size: str) -> ImageError:
    return ImageError(f"{path}: {size} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels accepted; "
                      f"scale it down first")


def _grayscale(image: Image.Image) -> np.ndarray:
    """float32 gray levels in 0 ... 255."""
    if image.mode in ("RGBA", "LA", "PA", "P") and (image.mode != "P" or "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), np.float32)
        if np.median(_border(alpha)) < 128:  # strokes on a transparent background: their opacity is the ink
            return alpha
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit, 32-bit or float gray levels
        return _deep_gray(np.asarray(image))
    return np.asarray(image.convert("L"), np.float32)


def _deep_gray(pixels: np.ndarray) -> np.ndarray:
    """float32 gray levels in 0 ... 255 of a 16-bit, 32-bit or float picture, by its range: floats all
    in 0 ... 1 times 255; whole numbers from 0 by the bit depth they fill (255, 4095 for 12-bit
    data, 65535); anything else (negative, floats past 1) stretched from its lowest to its highest."""
    gray = pixels.astype(np.float64)
    finite = gray[np.isfinite(gray)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    gray = np.nan_to_num(gray, nan=low, posinf=high, neginf=low)  # a float TIFF's holes: its background
    if np.issubdtype(pixels.dtype, np.floating) and 0 <= low and high <= 1:
        scale, low = 255.0, 0.0
    elif np.issubdtype(pixels.dtype, np.integer) and low >= 0:
        scale, low = 255.0 / (2 ** max(8, int(high).bit_length()) - 1), 0.0
    else:  # no scale of their own; one colour throughout stays one colour
        scale = 255.0 / (high - low) if high > low else 0.0
    return ((gray - low) * scale).astype(np.float32)


def to_mnist(image: Image.Image | np.ndarray) -> np.ndarray:
    """`image` (a Pillow image, or gray levels 0 ... 255) as an MNIST-style uint8 (28, 28, 1) digit.

    Raises NoDigitError when the picture holds nothing that looks like a digit.
    """
    gray = _grayscale(image) if isinstance(image, Image.Image) else np.asarray(image, np.float32)
    if gray.size == 0 or gray.max() - gray.min() < 8:  # 8 of 255 grey levels: nothing anyone could see
        raise NoDigitError("the image is blank: one colour throughout")
    with warnings.catch_warnings():  # a degenerate picture's empty selections; it is then said to hold no digit
        warnings.simplefilter("ignore", RuntimeWarning)
        gray = _working_size(gray)
        ink = _ink(gray)
        return _centred(np.clip(ink, 0, None) * _digit_region(ink))


def _border(pixels: np.ndarray) -> np.ndarray:
    """The pixels along the four edges, in one array."""
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def _working_size(gray: np.ndarray) -> np.ndarray:
    scale = WORK_SIDE / max(gray.shape)
    if scale >= 1:
        return gray
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX), np.float32)


def _ink(gray: np.ndarray) -> np.ndarray:
    """How much ink each pixel holds, the paper at 0 (give or take its noise): light on dark, with
    uneven light removed."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    side = max(gray.shape)
    smooth = ndimage.gaussian_filter(gray, side / SMOOTHING) if side >= SMALL_SIDE else gray
    edges = _border(smooth)
    darker, lighter = np.percentile(smooth - np.median(edges), [1, 99])
    if -darker > lighter:  # the ink is darker than the paper; MNIST is light on dark
        smooth, edges = 255.0 - smooth, 255.0 - edges
    if side < SMALL_SIDE or smooth.max() - smooth.min() < 8:  # MNIST's own 28 x 28; a blank page
        return smooth - np.median(edges)
    paper = smooth <= threshold_otsu(smooth)
    if _evenly_lit(smooth, paper):
        return smooth - np.median(smooth[paper])
    # The paper's own light, where it is uneven: what is left of the picture once every stroke is
    # opened away (a grey-level opening, in a window of three stroke widths and at least a sixth of
    # the picture), then smoothed. Shadows wider than that stay light, not ink; narrower ones at the
    # edge are left to _digit_region.
    window = max(side // 6, round(3 * _stroke_width(~paper)))
    paper_light = ndimage.uniform_filter(ndimage.grey_opening(smooth, size=(window, window)), window)
    return smooth - paper_light


def _stroke_width(ink: np.ndarray) -> float:
    """The typical width of the strokes in a mask, twice the median distance from their middle lines
    to their sides; regions on the edges (shadows, the page's border) are left out."""
    from scipy import ndimage

    labels, _ = ndimage.label(ink, structure=np.ones((3, 3)))
    on_edge = np.unique(_border(labels))
    strokes = ink & ~np.isin(labels, on_edge)
    distance = ndimage.distance_transform_edt(strokes)
    middle = (distance > 0) & (distance == ndimage.maximum_filter(distance, 3))
    return 2 * float(np.median(distance[middle])) if middle.any() else 0.0


def _evenly_lit(smooth: np.ndarray, paper: np.ndarray) -> bool:
    """Whether the paper's light varies across the picture by less than a quarter of the ink's
    contrast, measured as the median of the paper in each of 4 x 4 cells (noise averages out), and
    nothing ink-like lies along the edges (a shadow there reads as ink until flattened)."""
    if _border(paper).mean() < 0.95:
        return False
    light = []
    for rows in np.array_split(np.arange(smooth.shape[0]), 4):
        for cols in np.array_split(np.arange(smooth.shape[1]), 4):
            cell, is_paper = smooth[np.ix_(rows, cols)], paper[np.ix_(rows, cols)]
            if is_paper.mean() > 0.25:
                light.append(np.median(cell[is_paper]))
    contrast = np.median(smooth[~paper]) - np.median(smooth[paper])
    return len(light) > 0 and max(light) - min(light) < contrast / 4


def _digit_region(ink: np.ndarray) -> np.ndarray:
    """The pixels that belong to the digit: Otsu's threshold splits ink from paper,
    then the largest connected stroke region (away from the edges, where shadows and page borders
    are) and the strokes near it are kept. Raises NoDigitError for a blank or noise-only picture."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    if ink.max() - ink.min() < 8:  # fine noise, averaged away at the working size
        raise NoDigitError("only noise: nothing stands out from the background")
    threshold = threshold_otsu(ink)
    strokes = ink > threshold
    paper = ink[~strokes]
    noise = 1.4826 * float(np.median(np.abs(paper - np.median(paper))))
    if float(np.median(ink[strokes])) - float(np.median(paper)) < MIN_CONTRAST * max(noise, 1.0):
        raise NoDigitError("only noise: nothing stands out from the background")
    labels, count = ndimage.label(strokes, structure=np.ones((3, 3)))
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(strokes, labels, index)
    boxes = ndimage.find_objects(labels)
    edge = np.zeros(count + 1, bool)
    edge[_border(labels)] = True
    edge = edge[1:]
    extents = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    large = extents >= MIN_EXTENT * max(ink.shape)
    # Regions on the edge are shadows or the page's border, unless nothing else is there (a digit
    # drawn to the edge of a drawing pad).
    candidates = large & ~edge if (large & ~edge).any() else large
    if not candidates.any():
        raise NoDigitError("only specks: no stroke region large enough for a digit")
    main = int(np.argmax(np.where(candidates, areas, -1)))
    top, left = boxes[main][0].start, boxes[main][1].start
    bottom, right = boxes[main][0].stop, boxes[main][1].stop
    # Strokes lifted from the paper (the top bar of a 5, a 4 in two strokes) stay with the digit: a
    # region of at least a tenth of its area, inside its box widened by a third, off the edge.
    pad_y, pad_x = (bottom - top) // 3, (right - left) // 3
    keep = np.zeros(count + 1, bool)
    keep[main + 1] = True
    for i, box in enumerate(boxes):
        inside = (box[0].start >= top - pad_y and box[0].stop <= bottom + pad_y
                  and box[1].start >= left - pad_x and box[1].stop <= right + pad_x)
        if inside and areas[i] >= areas[main] / 10 and (not edge[i] or edge[main]):
            keep[i + 1] = True
    # The strokes' soft edges, below the threshold, belong to them too.
    return ndimage.binary_dilation(keep[labels], iterations=max(1, max(ink.shape) // SOFT_EDGE))


def _centred(digit_ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box scaled into 20x20 and centred by its centre of mass in 28x28, with its
    strokes at full intensity, as the MNIST digits were prepared."""
    ink = digit_ink
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # Pencil and chalk vary along a stroke; MNIST's strokes are saturated at their core.
    crop = np.clip(crop / max(float(np.percentile(crop[crop > 0], FULL_INK_PERCENTILE)), 1e-6), 0, 1)
    # Whole numbers first: a size that falls on a half is one in any float arithmetic.
    size = (max(1, round(crop.shape[1] * DIGIT_BOX / max(crop.shape))),
            max(1, round(crop.shape[0] * DIGIT_BOX / max(crop.shape))))
    digit = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS),
                       np.float32).clip(0, None)
    h, w = digit.shape
    total = digit.sum() or 1.0
    cy = (digit.sum(1) * np.arange(h)).sum() / total
    cx = (digit.sum(0) * np.arange(w)).sum() / total
    top = int(np.clip(nearest_whole(DIGIT_SIDE / 2 - cy), 0, DIGIT_SIDE - h))
    left = int(np.clip(nearest_whole(DIGIT_SIDE / 2 - cx), 0, DIGIT_SIDE - w))
    out = np.zeros((DIGIT_SIDE, DIGIT_SIDE), np.float32)
    out[top : top + h, left : left + w] = digit
    out *= 255.0 / max(float(out.max()), 1e-6)
    return np.round(out).astype(np.uint8)[..., None]

"""A drawing as the model's 28x28 input, in JAX: the steps `mnist_jax.apps.images` takes for a clean
drawing, written once more as array operations so that they can run inside an exported graph.
`mnist-jax export --format web` puts `to_digit` in the ONNX model the web page runs, so the page
sees what `mnist-jax predict` sees for the same pixels.

    from mnist_jax.apps import drawing
    digit = drawing.to_digit(ink)   # ink (280, 280), 0 paper to 255 full ink -> uint8 (28, 28)

For a drawing's ink (dark strokes on a transparent pad, as the demo's pad and the page send it)
images.to_mnist takes these steps, and so does to_digit:
1. Brought down to images.WORK_SIDE pixels (Pillow's BOX filter) and smoothed (scipy's Gaussian):
   both linear, here one matrix on each side.
2. The strokes: Otsu's threshold (256 bins, as scikit-image's), widened by images.SOFT_EDGE.
3. Their bounding box scaled into 20x20 (Pillow's LANCZOS) and centred by mass in 28x28.
What images.to_mnist does besides, for photos, is left out: finding the paper's light, keeping the
largest stroke region and the strokes near it (so a speck far from the digit counts here), and
turning dark-on-light pictures around. On the strokes in tests/test_drawing.py the two give the
same 28x28 bytes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.apps.images import (DIGIT_BOX, DIGIT_SIDE, FULL_INK_PERCENTILE, HALF_MARGIN, SMALL_SIDE, SMOOTHING,
                                   SOFT_EDGE, WORK_SIDE)

# The drawing pad's canvas, here and in the web page: 280 pixels a side, strokes 24 wide, so that a
# digit drawn 200 pixels tall has strokes 2.4 pixels wide in its 20, as MNIST's.
PAD_SIZE = 280
BRUSH_SIZE = 24
OTSU_BINS = 256  # scikit-image's default
LANCZOS_LOBES = 3  # Pillow's LANCZOS
GAUSSIAN_RADIUS = 4.0  # scipy's truncate: the kernel reaches 4 sigmas


def to_digit(ink: jax.Array) -> jax.Array:
    """`ink` (H, W), 0 for paper up to 255, as an MNIST-style uint8 (28, 28) digit; zeros when
    there is no ink."""
    ink = ink.astype(jnp.float32)
    down_y, down_x = (jnp.asarray(_working_matrix(n, max(ink.shape))) for n in ink.shape)
    smooth = down_y @ ink @ down_x.T
    strokes = smooth > _otsu_threshold(smooth)
    for _ in range(max(1, max(smooth.shape) // SOFT_EDGE)):
        strokes = _widened(strokes)
    return _centred(jnp.maximum(smooth, 0.0) * strokes)


def _centred(ink: jax.Array) -> jax.Array:
    """As images._centred: the ink's bounding box, its 90th percentile at full ink, scaled into
    20x20 and placed with its centre of mass nearest the middle of 28x28, brightest at 255."""
    full = _percentile_of_positive(ink, FULL_INK_PERCENTILE)
    ink = jnp.clip(ink / jnp.maximum(full, 1e-6), 0.0, 1.0)
    rows, cols = _extent(ink.max(1)), _extent(ink.max(0))
    longest = jnp.maximum(rows[1], cols[1])
    size_y, size_x = (jnp.maximum(1.0, jnp.round(extent * DIGIT_BOX / longest)) for extent in (rows[1], cols[1]))

    def placed(top, left):  # the box resized to size_y x size_x, its corner at (top, left)
        along_y = _lanczos_matrix(*rows, size_y, top, ink.shape[0])
        along_x = _lanczos_matrix(*cols, size_x, left, ink.shape[1])
        return jnp.maximum(along_y @ ink @ along_x.T, 0.0)

    corner = placed(0.0, 0.0)
    total = jnp.maximum(corner.sum(), 1e-6)
    centre_y = (corner.sum(1) * jnp.arange(DIGIT_SIDE)).sum() / total
    centre_x = (corner.sum(0) * jnp.arange(DIGIT_SIDE)).sum() / total
    # Halves round up, as in images.nearest_whole: a symmetric digit lands where numpy puts it.
    digit = placed(jnp.clip(jnp.floor(DIGIT_SIDE / 2 - centre_y + 0.5 + HALF_MARGIN), 0.0, DIGIT_SIDE - size_y),
                   jnp.clip(jnp.floor(DIGIT_SIDE / 2 - centre_x + 0.5 + HALF_MARGIN), 0.0, DIGIT_SIDE - size_x))
    digit = digit * (255.0 / jnp.maximum(digit.max(), 1e-6))
    return jnp.round(jnp.clip(digit, 0.0, 255.0)).astype(jnp.uint8)


def _working_matrix(pixels: int, longer_side: int) -> np.ndarray:
    """(n, pixels): images._working_size and then its Gaussian along one axis, as one matrix."""
    matrix = np.eye(pixels)
    if longer_side > WORK_SIDE:
        scale = WORK_SIDE / longer_side
        matrix = _pillow_matrix(pixels, max(1, round(pixels * scale)), _box, 0.5)
        longer_side = round(longer_side * scale)
    if longer_side >= SMALL_SIDE:
        matrix = _gaussian_matrix(matrix.shape[0], longer_side / SMOOTHING) @ matrix
    return matrix.astype(np.float32)


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _pillow_matrix(pixels: int, size: int, kernel, support: float) -> np.ndarray:
    """(size, pixels): Pillow's resize along one axis, its kernel sampled at the input pixels'
    centres, stretched when shrinking, and each row's weights summing to 1 (Resample.c)."""
    scale = pixels / size
    stretch = max(scale, 1.0)
    centre = (np.arange(size) + 0.5) * scale
    first = np.maximum(np.trunc(centre - support * stretch + 0.5), 0)
    stop = np.minimum(np.trunc(centre + support * stretch + 0.5), pixels)
    pixel = np.arange(pixels)[None, :]
    weights = kernel((pixel - centre[:, None] + 0.5) / stretch)
    weights = np.where((pixel >= first[:, None]) & (pixel < stop[:, None]), weights, 0.0)
    return weights / weights.sum(1, keepdims=True)


def _gaussian_matrix(pixels: int, sigma: float) -> np.ndarray:
    """(pixels, pixels): scipy.ndimage.gaussian_filter along one axis, its edges mirrored ('reflect')."""
    radius = int(GAUSSIAN_RADIUS * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((pixels, pixels))
    for offset, weight in zip(offsets, kernel):
        source = np.arange(pixels) + offset
        source = np.where(source < 0, -source - 1, source)
        source = np.where(source >= pixels, 2 * pixels - source - 1, source)
        np.add.at(matrix, (np.arange(pixels), source), weight)
    return matrix


def _otsu_threshold(image: jax.Array) -> jax.Array:
    """skimage.filters.threshold_otsu: the bin centre that best splits a 256-bin histogram of the
    values between their least and greatest into two classes."""
    values = image.reshape(-1)
    low, high = values.min(), values.max()
    width = jnp.maximum(high - low, 1e-30) / OTSU_BINS
    bins = jnp.clip(jnp.floor((values - low) / width), 0.0, OTSU_BINS - 1.0).astype(jnp.int32)
    counts = jnp.zeros(OTSU_BINS, jnp.float32).at[bins].add(1.0)
    centres = low + (jnp.arange(OTSU_BINS, dtype=jnp.float32) + 0.5) * width
    below, above = jnp.cumsum(counts), jnp.cumsum(counts[::-1])[::-1]
    mean_below = jnp.cumsum(counts * centres) / jnp.maximum(below, 1.0)
    mean_above = jnp.cumsum((counts * centres)[::-1])[::-1] / jnp.maximum(above, 1.0)
    between = below[:-1] * above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
    return jnp.where(high > low, centres[jnp.argmax(between)], low)


def _widened(mask: jax.Array) -> jax.Array:
    """scipy.ndimage.binary_dilation's one step: each pixel and its four neighbours."""
    padded = jnp.pad(mask, 1)
    return (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:])


def _percentile_of_positive(image: jax.Array, percent: float) -> jax.Array:
    """np.percentile(image[image > 0], percent), linear between the nearest two; 0 when none is."""
    values = jnp.sort(jnp.where(image > 0, image, 0.0).reshape(-1))
    count = (values > 0).sum()
    position = values.shape[0] - count + (count - 1) * (percent / 100)
    lower = jnp.floor(position).astype(jnp.int32)
    upper = jnp.minimum(lower + 1, values.shape[0] - 1)
    share = position - lower
    return jnp.where(count > 0, values[lower] * (1 - share) + values[upper] * share, 0.0)


def _extent(profile: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Where the ink starts along an axis and how many pixels it spans (0 and 1 when there is none)."""
    index = jnp.arange(profile.shape[0], dtype=jnp.float32)
    first = jnp.min(jnp.where(profile > 0, index, float(profile.shape[0])))
    last = jnp.max(jnp.where(profile > 0, index, -1.0))
    has_ink = last >= first
    return jnp.where(has_ink, first, 0.0), jnp.where(has_ink, last - first + 1, 1.0)


def _lanczos_matrix(start, length, size, offset, pixels: int) -> jax.Array:
    """(28, pixels): Pillow's LANCZOS resize of the input pixels [start, start + length) to `size`
    output pixels [offset, offset + size); every other output pixel 0."""
    stretch = jnp.maximum(length / size, 1.0)
    out = jnp.arange(DIGIT_SIDE, dtype=jnp.float32)[:, None]
    pixel = jnp.arange(pixels, dtype=jnp.float32)[None, :]
    centre = start + (out - offset + 0.5) * (length / size)
    x = (pixel + 0.5 - centre) / stretch
    weights = jnp.where(jnp.abs(x) < LANCZOS_LOBES, _sinc(x) * _sinc(x / LANCZOS_LOBES), 0.0)
    weights = jnp.where((pixel >= start) & (pixel < start + length), weights, 0.0)
    sums = weights.sum(1, keepdims=True)
    weights = weights / jnp.where(sums == 0, 1.0, sums)
    return jnp.where((out >= offset) & (out < offset + size), weights, 0.0)


def _sinc(x: jax.Array) -> jax.Array:
    safe = jnp.where(x == 0, 1.0, x)
    return jnp.where(x == 0, 1.0, jnp.sin(jnp.pi * safe) / (jnp.pi * safe))

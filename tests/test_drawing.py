"""mnist_jax.apps.drawing: a drawing made MNIST-like in JAX gives the same 28x28 bytes as the Python
reader (mnist_jax.apps.images) on the same strokes, the promise the web page rests on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DRAWN_DIGITS, pad_drawing
from PIL import Image, ImageDraw

from mnist_jax.apps import drawing, images
from mnist_jax.fast.compiling import quick_jit

to_digit = quick_jit(drawing.to_digit)


@pytest.mark.parametrize("width", [24, 14])
def test_drawn_digits_become_the_python_readers_bytes(width):
    for name, strokes in DRAWN_DIGITS.items():
        picture = pad_drawing(strokes, width)
        want = images.to_mnist(picture)[..., 0]
        got = np.asarray(to_digit(np.asarray(picture)[..., 3]))
        assert got.dtype == np.uint8 and got.shape == (28, 28)
        # float32 here against numpy's float64 there: a level at most, on a few pixels.
        difference = np.abs(got.astype(int) - want.astype(int))
        assert difference.max() <= 1 and (difference > 0).sum() <= 3, (name, width)


def test_a_symmetric_stroke_lands_where_the_python_reader_puts_it():
    # A vertical bar's centre of mass falls between two pixels: halves round up on both sides.
    picture = pad_drawing([[(140, 40), (140, 240)]])
    want = images.to_mnist(picture)[..., 0]
    assert np.array_equal(np.asarray(to_digit(np.asarray(picture)[..., 3])), want)
    columns = np.flatnonzero(want.any(0))
    assert images.nearest_whole(2.5) == 3 and images.nearest_whole(2.4999999) == 3 and images.nearest_whole(2.49) == 2
    assert len(columns) >= 2


def test_a_picture_of_another_size_is_brought_down_as_the_python_reader_does():
    picture = Image.new("L", (400, 300), 0)
    ImageDraw.Draw(picture).line([(150, 40), (260, 150), (180, 270)], fill=255, width=30)
    got = np.asarray(quick_jit(drawing.to_digit)(np.asarray(picture)))
    assert np.abs(got.astype(int) - images.to_mnist(picture)[..., 0].astype(int)).max() <= 1


def test_no_ink_gives_an_empty_digit():
    assert not np.asarray(to_digit(np.zeros((280, 280), np.uint8))).any()


def test_a_speck_far_from_the_digit_is_kept_here_but_dropped_by_the_python_reader():
    # What drawing.to_digit leaves out (its docstring says so): the reader keeps the digit's region.
    picture = pad_drawing(DRAWN_DIGITS["1"] + [[(30, 250), (34, 252)]], 24)
    got = np.asarray(to_digit(np.asarray(picture)[..., 3]))
    want = images.to_mnist(picture)[..., 0]
    assert not np.array_equal(got, want)
    assert np.flatnonzero(got.any(0)).size > np.flatnonzero(want.any(0)).size  # the speck widened the box

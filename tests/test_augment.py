"""Augmentation (mnist_jax.augment): random shifts drawn on the device, a key per step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL, StopAfterFirst

from mnist_jax import choices
from mnist_jax.augment import augmentation_for, random_shift
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.run import loop


def shifted_on_the_host(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved down dy and right dx pixels, the uncovered edge left 0."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


def test_random_shift_moves_each_digit_by_its_own_whole_pixels(mnist):
    images = mnist["train"][0][:64]
    key = jax.random.key(3)
    moved = np.asarray(quick_jit(random_shift, static_argnames="max_shift")(key, jnp.asarray(images), max_shift=2))
    assert moved.dtype == np.uint8 and moved.shape == images.shape
    seen = set()
    for image, out in zip(images, moved):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(shifted_on_the_host(image, dy, dx), out)]
        assert matches, "not a shift of at most 2 pixels"
        seen.add(matches[0])
    assert len(seen) > 5  # the 25 shifts are drawn, not one for the whole batch
    again = quick_jit(random_shift, static_argnames="max_shift")(key, jnp.asarray(images), max_shift=2)
    np.testing.assert_array_equal(again, moved)  # the same key, the same shifts


def test_the_config_names_the_augmentation():
    assert augmentation_for(TrainConfig()) is None  # the notebook's: none
    with pytest.raises(ConfigError, match="augment must be none or shift"):
        TrainConfig(augment="rotate")
    with pytest.raises(ConfigError, match="^--augment-shift 3 has no effect without --augment shift$"):
        choices.check(TrainConfig(augment_shift=3))


@pytest.mark.parametrize("max_shift", [1, 3])
def test_the_configs_shift_moves_real_digits_by_at_most_its_pixels(mnist, max_shift):
    """`--augment shift --augment-shift N`: every digit moved by a whole shift of at most N pixels
    along each axis, and N itself drawn."""
    augment = augmentation_for(TrainConfig(augment="shift", augment_shift=max_shift))
    images = mnist["train"][0][:256]
    moved = np.asarray(quick_jit(augment)(jax.random.key(0), jnp.asarray(images)))
    reach = range(-3, 4)  # beyond 1 pixel too, to see that a 1-pixel setting goes no further
    largest = 0
    for image, out in zip(images, moved):
        shifts = [(dy, dx) for dy in reach for dx in reach if np.array_equal(shifted_on_the_host(image, dy, dx), out)]
        smallest = min(shifts, key=lambda s: max(map(abs, s)))  # a blank edge fits several; the least is the shift
        assert max(map(abs, smallest)) <= max_shift
        largest = max(largest, *map(abs, smallest))
    assert largest == max_shift


def test_an_augmented_run_resumes_bit_for_bit_and_trains_on_other_pixels(small_data, small_fits):
    """Each step's shifts come from the state's key and step count, so a run stopped after an epoch
    and continued draws the same ones as a run that never stopped."""
    config = TrainConfig(epochs=2, augment="shift", **SMALL)
    straight = loop.train(config, *small_data)
    first = loop.train(config, *small_data, hooks=[StopAfterFirst()])
    assert first.status == "stopped"
    resumed = loop.train(config, *small_data, start=(first.state, first.history))
    assert resumed.history == {**straight.history, "epoch_seconds": resumed.history["epoch_seconds"]}
    for a, b in zip(jax.tree_util.tree_leaves(resumed.state.params), jax.tree_util.tree_leaves(straight.state.params)):
        np.testing.assert_array_equal(a, b)
    plain = small_fits[1][1]  # the same setting without augmentation
    assert straight.history["train_loss"][0] != plain["train_loss"][0]  # the batches were shifted

"""Data augmentation: random changes to each training batch, made on the device inside the scan.

    augment = augmentation_for(TrainConfig(augment="shift"))     # None for "none", the notebook's
    images = augment(key, images)                                # uint8 (B, 28, 28, 1) in and out

Each train step calls it with a key of its own (`steps.train_step` folds the step count into the
state's key), so a resumed run draws the same changes as one that never stopped. Evaluation and
prediction never augment. A new augmentation is one function here, one entry of AUGMENTATIONS
(with the settings it reads) and its name in `config.Augment` (docs/extending.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from mnist_jax.config import Choice, TrainConfig


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Each image moved by its own whole number of pixels, at most `max_shift` each way along each
    axis, the edges filled with background (0), as a digit written off-centre."""
    n, h, w, _ = images.shape
    shifts = jax.random.randint(key, (n, 2), -max_shift, max_shift + 1)
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def crop(image: jax.Array, shift: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (max_shift - shift[0], max_shift - shift[1], 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(padded, shifts)


# Each augmentation: config -> (key, images) -> images, or None for none.
AUGMENTATIONS: Mapping[str, Choice] = {
    "none": Choice(lambda config: None),
    "shift": Choice(lambda config: functools.partial(random_shift, max_shift=config.augment_shift),
                    reads=("augment_shift",)),
}


def augmentation_for(config: TrainConfig) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
    """The augmentation `config` trains with, or None for none."""
    return AUGMENTATIONS[config.augment].build(config)

"""The optimizer, built in one place: everything of Optax that training uses.

    optimizer = make_optimizer(config, steps_per_epoch=118)   # the notebook's: Adam, constant 1e-4

`steps_per_epoch` is part of the signature so that a learning-rate schedule, which counts optimizer
steps, is always built for the run's real length (`config.epochs * steps_per_epoch` steps); the
jitted programs are cached per (config, steps_per_epoch) for the same reason (`mnist_jax.loop`).
"""

from __future__ import annotations

import optax

from mnist_jax.config import TrainConfig


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer that `config` trains with, over `steps_per_epoch` steps in each epoch."""
    del steps_per_epoch  # the notebook's constant learning rate does not depend on the run's length
    return optax.adam(config.learning_rate)

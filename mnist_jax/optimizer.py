"""The optimizer, built in one place: everything of Optax that training uses.

    optimizer = make_optimizer(config, steps_per_epoch=118)   # the notebook's: Adam, constant 1e-4
    rate = learning_rate(config, steps_per_epoch, step)      # a step's learning rate, for the logs

Each optimizer and schedule is one entry of OPTIMIZERS or SCHEDULES: how to build it and which
settings it reads (`--weight-decay` is adamw's, `--momentum` sgd's, `--warmup-epochs`
warmup_cosine's; mnist_jax.choices refuses them elsewhere). `steps_per_epoch` is part of the
signature so that a schedule, which counts optimizer steps, is always built for the run's real
length (`config.epochs * steps_per_epoch` steps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax.config import Choice, TrainConfig

# Each schedule: (config, peak rate, total steps, steps per epoch, swept values) -> the rate of each step.


def constant(config: TrainConfig, peak: Any, total: int, steps_per_epoch: int, swept: dict) -> Any:
    return peak  # a float, so that the notebook's numbers stay bit for bit what they were


def cosine(config: TrainConfig, peak: Any, total: int, steps_per_epoch: int, swept: dict) -> optax.Schedule:
    return optax.cosine_decay_schedule(peak, total)


def one_cycle(config: TrainConfig, peak: Any, total: int, steps_per_epoch: int, swept: dict) -> optax.Schedule:
    return optax.cosine_onecycle_schedule(total, peak)


def warmup_cosine(config: TrainConfig, peak: Any, total: int, steps_per_epoch: int, swept: dict) -> optax.Schedule:
    """A linear rise over --warmup-epochs, then a cosine decay: Optax's warmup_cosine_decay_schedule,
    or in a sweep (whose values are arrays, which Optax's Python comparisons cannot take) its
    formulas written with arrays: the same rates up to float rounding."""
    if not swept:
        warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total)
    warmup = jnp.minimum(jnp.round(swept.get("warmup_epochs", config.warmup_epochs) * steps_per_epoch), total - 1)

    def rate(step):
        rise = peak * jnp.clip(step, 0, warmup) / jnp.maximum(warmup, 1)
        decay = peak * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(step - warmup, total - warmup) / (total - warmup)))
        return jnp.where(step < warmup, rise, decay)

    return rate


SCHEDULES: Mapping[str, Choice] = {
    "constant": Choice(constant),
    "cosine": Choice(cosine),
    "warmup_cosine": Choice(warmup_cosine, reads=("warmup_epochs",)),
    "one_cycle": Choice(one_cycle),
}

# Each optimizer: (config, learning rate or schedule, swept values) -> an Optax optimizer.
OPTIMIZERS: Mapping[str, Choice] = {
    "adam": Choice(lambda config, rate, swept: optax.adam(rate), reads=("learning_rate",)),
    "adamw": Choice(lambda config, rate, swept: optax.adamw(
        rate, weight_decay=swept.get("weight_decay", config.weight_decay)), reads=("learning_rate", "weight_decay")),
    "sgd": Choice(lambda config, rate, swept: optax.sgd(rate, momentum=config.momentum or None),
                  reads=("learning_rate", "momentum")),
}


def schedule(config: TrainConfig, steps_per_epoch: int, **swept: Any) -> optax.ScalarOrSchedule:
    """The learning rate of each optimizer step (a float for the constant schedule, else an Optax
    schedule over the run). `swept`: a sweep's value of learning_rate or warmup_epochs, an array
    inside its program."""
    total = max(config.epochs * steps_per_epoch, 1)
    peak = swept.get("learning_rate", config.learning_rate)
    return SCHEDULES[config.schedule].build(config, peak, total, steps_per_epoch, swept)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer that `config` trains with, over `steps_per_epoch` steps in each epoch. A sweep's
    optimizer keeps the swept value in its state (Optax's inject_hyperparams), so that the models of
    one program each train with their own."""
    if config.sweep is None:
        return _optimizer(config, steps_per_epoch)
    return optax.inject_hyperparams(lambda **swept: _optimizer(config, steps_per_epoch, **swept))(
        **{config.sweep_name: config.sweep_values[0]})


def _optimizer(config: TrainConfig, steps_per_epoch: int, **swept: Any) -> optax.GradientTransformation:
    return OPTIMIZERS[config.optimizer].build(config, schedule(config, steps_per_epoch, **swept), swept)


def swept_values(config: TrainConfig) -> np.ndarray:
    """A sweep's value for each of its models, in the stacked state's order (float32)."""
    return np.repeat(np.asarray(config.sweep_values, np.float32), config.seeds)


def weight_decay(config: TrainConfig) -> float | None:
    """The weight decay that `config`'s optimizer applies, if any (a divergence names it)."""
    return config.weight_decay if "weight_decay" in OPTIMIZERS[config.optimizer].reads and config.weight_decay else None


def learning_rate(config: TrainConfig, steps_per_epoch: int, step: int) -> float | list[float]:
    """The learning rate of optimizer step `step` (0 is the first); for a sweep, each model's."""
    if config.sweep is not None:
        return [learning_rate(member, steps_per_epoch, step) for member in config.model_configs()]
    rate = schedule(config, steps_per_epoch)
    return float(rate(step)) if callable(rate) else float(rate)

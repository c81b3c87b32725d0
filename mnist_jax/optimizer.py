"""The optimizer, built in one place: everything of Optax that training uses.

    optimizer = make_optimizer(config, steps_per_epoch=118)   # the notebook's: Adam, constant 1e-4
    rate = learning_rate(config, steps_per_epoch, step)      # a step's learning rate, for the logs

`steps_per_epoch` is part of the signature so that a schedule, which counts optimizer steps, is
always built for the run's real length (`config.epochs * steps_per_epoch` steps); the jitted
programs are cached per (config, steps_per_epoch) for the same reason (`mnist_jax.run.loop`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax.config import TrainConfig, parse_sweep


def schedule(config: TrainConfig, steps_per_epoch: int, **swept: Any) -> optax.ScalarOrSchedule:
    """The learning rate of each optimizer step: a float for the constant schedule (the notebook's,
    so that its numbers stay bit for bit what they were), else an Optax schedule over the run.
    `swept`: a sweep's value of learning_rate or warmup_epochs, an array inside its program."""
    total = max(config.epochs * steps_per_epoch, 1)
    peak = swept.get("learning_rate", config.learning_rate)
    if config.schedule == "constant":
        return peak
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, total)
    if config.schedule == "warmup_cosine":
        if swept:  # Optax's compares its values in Python, which arrays cannot do
            return _warmup_cosine(peak, swept.get("warmup_epochs", config.warmup_epochs) * steps_per_epoch, total)
        warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total)
    return optax.cosine_onecycle_schedule(total, peak)


def _warmup_cosine(peak: jax.Array, warmup_steps: jax.Array, total: int) -> optax.Schedule:
    """Optax's warmup_cosine_decay_schedule(0, peak, round(warmup_steps), total), its formulas written
    with arrays for the peak and the warmup: the same rates up to float rounding."""
    warmup = jnp.minimum(jnp.round(warmup_steps), total - 1)

    def rate(step):
        rise = peak * jnp.clip(step, 0, warmup) / jnp.maximum(warmup, 1)
        decay = peak * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(step - warmup, total - warmup) / (total - warmup)))
        return jnp.where(step < warmup, rise, decay)

    return rate


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer that `config` trains with, over `steps_per_epoch` steps in each epoch. A sweep's
    optimizer keeps the swept value in its state (Optax's inject_hyperparams), so that the models of
    one program each train with their own."""
    if config.sweep is None:
        return _optimizer(config, steps_per_epoch)
    name, values = parse_sweep(config.sweep)
    return optax.inject_hyperparams(lambda **swept: _optimizer(config, steps_per_epoch, **swept))(**{name: values[0]})


def _optimizer(config: TrainConfig, steps_per_epoch: int, **swept: Any) -> optax.GradientTransformation:
    rate = schedule(config, steps_per_epoch, **swept)
    if config.optimizer == "adamw":
        return optax.adamw(rate, weight_decay=swept.get("weight_decay", config.weight_decay))
    if config.optimizer == "sgd":
        return optax.sgd(rate, momentum=config.momentum or None)
    return optax.adam(rate)


def swept_values(config: TrainConfig) -> np.ndarray:
    """A sweep's value for each of its models, in the stacked state's order (float32)."""
    return np.repeat(np.asarray(parse_sweep(config.sweep)[1], np.float32), config.seeds)


def weight_decay(config: TrainConfig) -> float | None:
    """The weight decay that `config`'s optimizer applies, if any (a divergence names it)."""
    return config.weight_decay if config.optimizer == "adamw" and config.weight_decay else None


def learning_rate(config: TrainConfig, steps_per_epoch: int, step: int) -> float | list[float]:
    """The learning rate of optimizer step `step` (0 is the first); for a sweep, each model's."""
    if config.sweep is not None:
        return [learning_rate(member, steps_per_epoch, step) for member in config.model_configs()]
    rate = schedule(config, steps_per_epoch)
    return float(rate(step)) if callable(rate) else float(rate)

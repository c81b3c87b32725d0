"""The optimizer, built in one place: everything of Optax that training uses.

    optimizer = make_optimizer(config, steps_per_epoch=118)   # the notebook's: Adam, constant 1e-4
    rate = learning_rate(config, steps_per_epoch, step)      # a step's learning rate, for the logs

`steps_per_epoch` is part of the signature so that a schedule, which counts optimizer steps, is
always built for the run's real length (`config.epochs * steps_per_epoch` steps); the jitted
programs are cached per (config, steps_per_epoch) for the same reason (`mnist_jax.loop`).
"""

from __future__ import annotations

import optax

from mnist_jax.config import TrainConfig


def schedule(config: TrainConfig, steps_per_epoch: int) -> optax.ScalarOrSchedule:
    """The learning rate of each optimizer step: a float for the constant schedule (the notebook's,
    so that its numbers stay bit for bit what they were), else an Optax schedule over the run."""
    total, peak = max(config.epochs * steps_per_epoch, 1), config.learning_rate
    if config.schedule == "constant":
        return peak
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, total)
    if config.schedule == "warmup_cosine":
        warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total)
    return optax.cosine_onecycle_schedule(total, peak)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer that `config` trains with, over `steps_per_epoch` steps in each epoch."""
    rate = schedule(config, steps_per_epoch)
    if config.optimizer == "adamw":
        return optax.adamw(rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return optax.sgd(rate, momentum=config.momentum or None)
    return optax.adam(rate)


def weight_decay(config: TrainConfig) -> float | None:
    """The weight decay that `config`'s optimizer applies, if any (a divergence names it)."""
    return config.weight_decay if config.optimizer == "adamw" and config.weight_decay else None


def learning_rate(config: TrainConfig, steps_per_epoch: int, step: int) -> float:
    """The learning rate of optimizer step `step` (0 is the first)."""
    rate = schedule(config, steps_per_epoch)
    return float(rate(step)) if callable(rate) else float(rate)

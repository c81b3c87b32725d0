"""A sweep: one model per value of a setting, all trained by one compiled program.

    mnist-jax train --sweep lr=1e-4,3e-4,1e-3,3e-3 --epochs 3           # four models, one program
    mnist-jax train --sweep lr=1e-3,3e-3 --seeds 3                      # a grid: 2 values x 3 seeds

The models are the stacked state's leading axis, as a run's seeds are (`TrainConfig.model_configs()`:
each value in turn, within it each seed); each keeps its value in its optimizer's state (Optax's
inject_hyperparams, `mnist_jax.optimizer`), so one compiled program trains them all: vmapped on a
GPU, one after another on a CPU (`mnist_jax.fast.programs.models_mapped`). This module
says which model is which: their names, each value's share of an epoch's record, the final table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_jax import metrics
from mnist_jax.config import TrainConfig


def value_name(name: str, value: float) -> str:
    """How a swept value is named in output and in its run's folder: learning_rate=0.001. Python's
    shortest exact spelling, so that two values never share a folder (`:g` made 1e-3 and 1.0000001e-3 one)."""
    return f"{name}={value!r}"


def model_dir_names(config: TrainConfig) -> list[str]:
    """The folder of each model's own run in the run directory, in the stacked order: seed-S for
    the seeds of a plain run; NAME=VALUE (and NAME=VALUE-seed-S with several seeds) in a sweep."""
    if config.sweep is None:
        return [f"seed-{member.seed}" for member in config.model_configs()]
    name = config.sweep_name
    return [value_name(name, getattr(member, name)) + (f"-seed-{member.seed}" if config.seeds > 1 else "")
            for member in config.model_configs()]


def value_records(config: TrainConfig, record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An epoch's record split by swept value: (NAME=VALUE, its seeds' record), as a run of
    `config.seeds` seeds would have it (floats for one seed, lists for several)."""
    name, values = config.sweep_name, config.sweep_values
    per_model = {m.key for m in metrics.METRICS if not m.shared} | {metrics.RATE_KEY, "train_batch_loss"}
    seeds = config.seeds
    split = []
    for j, value in enumerate(values):
        part = {}
        for key, entry in record.items():
            if key in per_model and isinstance(entry, list):
                chosen = entry[j * seeds:(j + 1) * seeds]
                part[key] = chosen[0] if seeds == 1 else chosen
            else:
                part[key] = entry
        split.append((value_name(name, value), part))
    return split


def summary(config: TrainConfig, history: metrics.History, key: str = "test_accuracy") -> list[dict[str, Any]]:
    """Per swept value: its value, the final and the best accuracy `key` (mean over its seeds), the
    epoch of the best, and the seeds' min and max of the final."""
    values = config.sweep_values
    accuracy = np.asarray(history[key], np.float64).reshape(-1, len(values), config.seeds)
    rows = []
    for j, value in enumerate(values):
        mean = accuracy[:, j].mean(axis=1)
        rows.append({"value": value, "final": float(mean[-1]), "best": float(mean.max()),
                     "best_epoch": int(mean.argmax()), "final_min": float(accuracy[-1, j].min()),
                     "final_max": float(accuracy[-1, j].max())})
    return rows


def _best(config: TrainConfig, history: metrics.History) -> int:
    """The value with the best final accuracy where choices are made (`metrics.chosen_on`): the
    validation split's where the run holds one out, never then the test set's."""
    rows = summary(config, history, metrics.chosen_on(history))
    return max(range(len(rows)), key=lambda i: rows[i]["final"])


def best_model(config: TrainConfig, history: metrics.History) -> int:
    """The stacked index of the first seed of the best value (`_best`)."""
    return _best(config, history) * config.seeds


def table(config: TrainConfig, history: metrics.History) -> list[str]:
    """The sweep's result as a Markdown table, best final accuracy marked."""
    name = config.sweep_name
    rows, best = summary(config, history), _best(config, history)
    chosen = metrics.chosen_on(history) != "test_accuracy"
    held_out = summary(config, history, "validation_accuracy") if chosen else rows
    spread = " (seeds' min-max)" if config.seeds > 1 else ""
    lines = [f"| {name} | final test accuracy{spread} | best test accuracy (epoch) |"
             + (" final validation accuracy (best chosen on it) |" if chosen else ""), "|---|---|---|"
             + ("---|" if chosen else "")]
    for i, row in enumerate(rows):
        final = f"{row['final']:.4f}" + (f" ({row['final_min']:.4f}-{row['final_max']:.4f})" if config.seeds > 1 else "")
        mark = " **best**" if i == best else ""
        lines.append(f"| {float(row['value'])!r} | {final}{'' if chosen else mark} | {row['best']:.4f} "
                     f"({row['best_epoch']}) |" + (f" {held_out[i]['final']:.4f}{mark} |" if chosen else ""))
    return lines

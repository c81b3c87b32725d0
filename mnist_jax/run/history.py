"""A run's history: its epochs' records as history.json holds them, and the policies read from them.

    history = empty()
    record = epoch_record(train_sums, test_sums, confusion, seconds=2.1, learning_rate=1e-4)
    history = append(history, record)                       # a new History
    history = upgrade(history, config)                      # a run written before a metric existed
    check(history)                                          # a ValueError naming what no run writes
    history = from_saved(saved, config)                     # both, in that order: what every reader calls

A History maps each metric's key (mnist_jax.metrics.METRICS) to a list with one entry per epoch: a
float, or for `test_class_accuracy` a list of 10. In a multi-seed run each entry is a list with one
value per seed (a `shared` metric excepted: the seeds share it); `seed_history(history, i)` is seed
i's own. Every function here that takes `metrics` defaults to `declared()`: METRICS as it is at
the call, so that a history read today is checked against today's metrics. Also here: when a run
has diverged (`diverged`) and reached its target (`reached`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mnist_jax.errors import finite, quoted
from mnist_jax.metrics import (  # noqa: F401
    LOSS_KEY,
    METRICS,
    NOTEBOOK_KEYS,
    RATE_KEY,
    History,
    Metric,
    StepResult,
    Sums,
    chosen_on,
    class_accuracy,
    declared,
    epoch_entry,
    epochs_done,
    format_epoch,
    step_sums,
    summarize,
)


def empty(metrics: Sequence[Metric] | None = None) -> History:
    return {m.key: [] for m in declared(metrics)}


def append(history: History, record: Mapping[str, Any], metrics: Sequence[Metric] | None = None) -> History:
    """A new History with `record` as its next epoch; `history` itself is left as it was."""
    return {m.key: [*history[m.key], record[m.key]] for m in declared(metrics)}


def upgrade(history: History, config: Any, metrics: Sequence[Metric] | None = None) -> History:
    """`history` with every metric it lacks filled in as `Metric.older_runs` says (a run written
    before that metric existed), one value per model where the models each have their own; a
    KeyError-free resume of any earlier run. A history too malformed to count its epochs is left
    as it is, for `check` to name what is wrong."""
    if not isinstance(history, dict) or not isinstance(history.get(LOSS_KEY), list):
        return history
    missing = {m.key: [_older_value(m, config)] * epochs_done(history)
               for m in declared(metrics) if m.key not in history and m.older_runs is not None}
    return {**history, **missing} if missing else history


def _older_value(metric: Metric, config: Any) -> Any:
    """`metric`'s value in an epoch of a run from before it: one per model where each model has its
    own (a sweep's learning rate is each value's own), None where unknown."""
    per_model = config.models > 1 and (not metric.shared or (config.sweep is not None and metric.key == RATE_KEY))
    if not per_model:
        return metric.older_runs(config)
    values = [metric.older_runs(member) for member in config.model_configs()]
    return None if all(value is None for value in values) else values


def from_saved(saved: Any, config: Any, metrics: Sequence[Metric] | None = None) -> History:
    """A history as a run saved it (history.json, a checkpoint), upgraded to `metrics` (see
    `upgrade`) and then checked (see `check`): a run saved before a metric existed stays readable."""
    history = upgrade(saved, config, metrics)
    check(history, config.models, metrics, swept=config.sweep is not None)
    return history


def check(history: Any, seeds: int = 1, metrics: Sequence[Metric] | None = None, swept: bool = False) -> None:
    """A ValueError naming the first entry of `history` (as read from history.json) that is not what
    a run writes: a list per key, one entry per epoch, numbers (one per model for several seeds or a
    sweep, `seeds` in all; in a sweep, the learning rate too). Upgrade it first (`from_saved`)."""
    metrics = declared(metrics)
    if not isinstance(history, dict):
        raise ValueError(f"history must be a mapping, got {type(history).__name__}")
    missing = [m.key for m in metrics if m.key not in history and m.split != "epoch"]
    if missing:
        raise ValueError(f"history lacks {', '.join(missing)}")
    epochs = len(history[LOSS_KEY]) if isinstance(history[LOSS_KEY], list) else None
    for m in metrics:
        if m.key not in history:
            continue
        values = history[m.key]
        if not isinstance(values, list) or len(values) != epochs:
            raise ValueError(f"history.{m.key} must be a list of one entry per epoch ({epochs})")
        per_model = seeds > 1 and (not m.shared or (swept and m.key == RATE_KEY))
        shape = [n for n in (seeds if per_model else None, 10 if m.per_class else None) if n]
        for i, value in enumerate(values):
            if not (value is None and m.older_runs is not None):  # an older run's unknown value
                _check_entry(f"history.{m.key}[{i}]", value, shape, m.bounds)


def _check_entry(where: str, value: Any, shape: list[int], bounds: tuple[float, float]) -> None:
    if shape:
        if not isinstance(value, list) or len(value) != shape[0]:
            raise ValueError(f"{where} must be a list of {shape[0]}, got {quoted(value, 40)}")
        for j, item in enumerate(value):
            _check_entry(f"{where}[{j}]", item, shape[1:], bounds)
        return
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (finite(value) and low <= value <= high):
        within = "a number >= 0" if high == math.inf else f"a number in {low:g} ... {high:g}"
        raise ValueError(f"{where} must be {within}, got {quoted(value, 40)}")


def epoch_record(train_sums: Sums, test_sums: Sums, confusion: np.ndarray, seconds: float,
                 learning_rate: float, validation_sums: Sums | None = None) -> dict[str, Any]:
    """One epoch's entry from host arrays: floats, or lists of one float per seed; and, for the
    logs only (not the history), each train batch's mean loss (`train_batch_loss`). The validation
    split's loss and accuracy come from `validation_sums` (the test program's, on the held-out
    examples), None without one."""
    confusion = np.asarray(confusion)
    numerator, denominator = (np.asarray(a) for a in train_sums[LOSS_KEY])
    values = {key: value.tolist() for key, value in summarize({**train_sums, **test_sums}).items()}
    held_out = summarize(validation_sums) if validation_sums is not None else {}
    return {
        **values,
        "validation_loss": held_out["test_loss"].tolist() if held_out else None,
        "validation_accuracy": held_out["test_accuracy"].tolist() if held_out else None,
        "train_batch_loss": (numerator / denominator).tolist(),
        "epoch_seconds": seconds,
        "learning_rate": learning_rate,
        "test_class_accuracy": class_accuracy(confusion) if confusion.ndim == 2 else list(map(class_accuracy, confusion)),
    }


# A uniform guess over ten classes has a cross-entropy of ln 10 = 2.30, where every run starts. An
# epoch's mean loss ten times that (each correct class given e^-23, about 1e-10, on average) is a run
# that has blown up, finite or not; one that learns is far below 2.30 after its first epoch.
DIVERGED_LOSS = 10 * math.log(10)


def diverged(record: dict[str, Any]) -> bool:
    """Whether an epoch's train or test loss (any seed's) is NaN, infinite or above DIVERGED_LOSS."""
    losses = np.concatenate([np.ravel(record["train_loss"]), np.ravel(record["test_loss"])])
    return not bool(np.all(losses <= DIVERGED_LOSS))  # NaN compares false


def divergence_message(epoch: int, record: dict[str, Any], kept_epoch: int | None,
                       weight_decay: float | None = None, models: Sequence[str] = ()) -> str:
    """What happened when epoch `epoch` diverged, what to lower (the learning rate, and `weight_decay`
    where the optimizer applies one), and the newest checkpoint kept (epochs done), if any. With the
    names of a run's `models` (sweep.model_dir_names), which of them diverged."""
    kept = f"the last good checkpoint (after epoch {kept_epoch - 1}) is kept" if kept_epoch else "no checkpoint was written"
    lower = "the learning rate" + (f" or the weight decay ({weight_decay:g})" if weight_decay else "")
    train, test = record["train_loss"], record["test_loss"]
    which = ""
    if models and np.ndim(train):  # the models train as one program: one that diverges ends them all
        bad = [i for i in range(len(models)) if diverged({"train_loss": train[i], "test_loss": test[i]})]
        train, test = [train[i] for i in bad], [test[i] for i in bad]
        which = f" of {', '.join(models[i] for i in bad)}"
        lower = f"{lower} there, or leave {'it' if len(bad) == 1 else 'them'} out"
    return (f"epoch {epoch}: the loss{which} became {train} (train) / {test} (test), beyond {DIVERGED_LOSS:.0f} "
            f"(ten times a uniform guess's); lower {lower}; {kept}")


def reached(history: History, accuracy: float | None) -> bool:
    """Whether the last epoch of `history` reached `accuracy` (every seed's), the target of
    `--stop-at-accuracy`, on the validation split where the run holds one out, else on the test set
    (`metrics.chosen_on`); False for no target or no epoch."""
    return (accuracy is not None and epochs_done(history) > 0
            and bool(np.all(np.asarray(history[chosen_on(history)][-1]) >= accuracy)))


def seed_history(history: History, index: int, metrics: Sequence[Metric] | None = None) -> History:
    """Seed `index`'s own history from a multi-seed history (shared metrics are the seeds' in common)."""
    shared = {m.key for m in declared(metrics) if m.shared}
    return {k: list(v) if k in shared and not (v and isinstance(v[0], list))
            else [None if epoch is None else epoch[index] for epoch in v]  # None: unknown (older runs), no split
            for k, v in history.items()}



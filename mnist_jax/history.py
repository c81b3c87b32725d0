"""A run's history: one record per epoch, as the notebook keeps it, and its per-epoch log line.

    record = epoch_record(train_metrics, test_metrics, confusion, seconds)   # host numbers
    history = append(history, record)                                       # a new History
    print(format_epoch(epoch, record))
    # [epoch  0] Train loss: 1.8407 / accuracy: 0.6246 | Test loss: 1.0855 / accuracy: 0.8155

A History maps each key of HISTORY_KEYS to a list with one entry per epoch: a float, or for
`test_class_accuracy` a list of 10. In a multi-seed run each entry is a list with one value per
seed (`epoch_seconds` excepted: the seeds share it); `seed_history(history, i)` is seed i's own.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

History = dict[str, list]
METRIC_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
HISTORY_KEYS = (*METRIC_KEYS, "epoch_seconds", "test_class_accuracy", "learning_rate")
SHARED_KEYS = ("epoch_seconds", "learning_rate")  # one value per epoch, whatever the seed count


def empty() -> History:
    return {k: [] for k in HISTORY_KEYS}


def check(history: Any, seeds: int = 1) -> None:
    """A ValueError naming the first entry of `history` (as read from history.json) that is not what
    a run writes: a list per key, one entry per epoch, numbers (one per seed for several seeds)."""
    if not isinstance(history, dict):
        raise ValueError(f"history must be a mapping, got {type(history).__name__}")
    missing = [k for k in METRIC_KEYS if k not in history]
    if missing:
        raise ValueError(f"history lacks {', '.join(missing)}")
    epochs = len(history["train_loss"]) if isinstance(history["train_loss"], list) else None
    for key in HISTORY_KEYS:
        if key not in history:
            continue
        values = history[key]
        if not isinstance(values, list) or len(values) != epochs:
            raise ValueError(f"history.{key} must be a list of one entry per epoch ({epochs})")
        per_seed = seeds if seeds > 1 and key not in SHARED_KEYS else None
        per_class = 10 if key == "test_class_accuracy" else None
        for i, value in enumerate(values):
            _check_entry(f"history.{key}[{i}]", value, [n for n in (per_seed, per_class) if n])


def _check_entry(where: str, value: Any, shape: list[int]) -> None:
    if shape:
        if not isinstance(value, list) or len(value) != shape[0]:
            raise ValueError(f"{where} must be a list of {shape[0]}, got {value!r:.40}")
        for j, item in enumerate(value):
            _check_entry(f"{where}[{j}]", item, shape[1:])
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r:.40}")


def with_learning_rates(history: History, learning_rate: float) -> History:
    """`history`, given the `learning_rate` of each epoch if it lacks them: a run written before
    schedules existed trained every epoch at its constant rate."""
    if "learning_rate" in history:
        return history
    return {**history, "learning_rate": [learning_rate] * epochs_done(history)}


def epochs_done(history: History) -> int:
    return len(history["train_loss"])


def append(history: History, record: dict[str, Any]) -> History:
    """A new History with `record` as its next epoch; `history` itself is left as it was."""
    return {k: [*history[k], record[k]] for k in HISTORY_KEYS}


def summarize(metrics: Any) -> dict[str, np.ndarray]:
    """Mean loss and accuracy from per-batch `train.Metrics` (batches on the last axis), in float32.

    Summed by XLA as a whole epoch's scan sums them, so that the numbers are the same bit for bit
    whether an epoch ran as one scan or in chunks, and as those of earlier versions of this project.
    """
    return jax.device_get(_summarize(metrics))


@jax.jit
def _summarize(metrics: Any) -> dict[str, jax.Array]:
    loss_sum, correct, count = (jnp.sum(m, axis=-1) for m in metrics)
    return {"loss": loss_sum / count, "accuracy": correct / count}


def class_accuracy(confusion: np.ndarray) -> list[float]:
    """Per-class accuracy (recall) from a confusion matrix (rows: true class)."""
    confusion = np.asarray(confusion)
    return (np.diag(confusion) / np.maximum(confusion.sum(1), 1)).tolist()


def epoch_record(train_metrics: Any, test_metrics: Any, confusion: np.ndarray, seconds: float,
                 learning_rate: float) -> dict[str, Any]:
    """One epoch's history entry from host arrays: floats, or lists of one float per seed; and,
    for the logs only (not the history), each train batch's mean loss (`train_batch_loss`)."""
    train, test = summarize(train_metrics), summarize(test_metrics)
    confusion = np.asarray(confusion)
    loss_sum, _, count = (np.asarray(m) for m in train_metrics)
    return {
        "learning_rate": learning_rate,
        "train_batch_loss": (loss_sum / count).tolist(),
        "train_loss": train["loss"].tolist(),
        "train_accuracy": train["accuracy"].tolist(),
        "test_loss": test["loss"].tolist(),
        "test_accuracy": test["accuracy"].tolist(),
        "epoch_seconds": seconds,
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


def divergence_message(epoch: int, record: dict[str, Any], kept_epoch: int | None) -> str:
    """What happened when epoch `epoch` diverged, and the newest checkpoint kept (epochs done), if any."""
    kept = f"the last good checkpoint (after epoch {kept_epoch - 1}) is kept" if kept_epoch else "no checkpoint was written"
    return (f"epoch {epoch}: the loss became {record['train_loss']} (train) / {record['test_loss']} (test), "
            f"beyond {DIVERGED_LOSS:.0f} (ten times a uniform guess's); lower the learning rate; {kept}")


def seed_history(history: History, index: int) -> History:
    """Seed `index`'s own history from a multi-seed history (SHARED_KEYS are the seeds' in common)."""
    return {k: list(v) if k in SHARED_KEYS else [epoch[index] for epoch in v] for k, v in history.items()}


def epoch_entry(history: History, epoch: int) -> dict[str, Any]:
    return {k: v[epoch] for k, v in history.items()}


def _value(value: float | list[float]) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.4f}"
    values = np.asarray(value)
    return f"{values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def format_epoch(epoch: int, record: dict[str, Any]) -> str:
    """The notebook's per-epoch line; for several seeds, each value as mean +- std over the seeds."""
    return (f"[epoch {epoch:2d}] Train loss: {_value(record['train_loss'])} / accuracy: {_value(record['train_accuracy'])}"
            f" | Test loss: {_value(record['test_loss'])} / accuracy: {_value(record['test_accuracy'])}")

"""Every number of an epoch, declared once, and the notebook's per-epoch line.

    sums = step_sums(METRICS, "train", StepResult(loss, None, logits, labels, mask, grads))
    values = summarize(sums)                                  # {"train_loss": ..., "train_accuracy": ...}
    print(format_epoch(0, record))
    # [epoch  0] Train loss: 1.8407 / accuracy: 0.6246 | Test loss: 1.0855 / accuracy: 0.8155
    # (then " | label: value" for each metric declared with a `printed` label)

A `Metric` says how each train or test step computes its batch's share, as (numerator,
denominator), so that an epoch's value is sum(numerators) / sum(denominators), exact whatever the
batches; its key in history.json, its TensorBoard tag, and its value in runs written before it
existed. A new metric is one more entry of METRICS (docs/extending.md). mnist_jax.run.history
keeps the epochs' records. Whatever reads or writes a history takes `declared()`, METRICS as it is
when called, so that nothing holds on to the tuple of an earlier import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

History = dict[str, list]  # metric key -> one entry per epoch (a list per seed in a multi-seed run)
Sums = dict[str, tuple[jax.Array, jax.Array]]  # metric key -> (numerator, denominator) per batch


class StepResult(NamedTuple):
    """What a train or test step knows of its batch, for the metrics to read."""

    loss: jax.Array  # the mean loss over the batch's real examples
    losses: jax.Array | None  # (B,) each example's loss, 0 for padding (test steps; None in train steps)
    logits: jax.Array  # (B, classes)
    labels: jax.Array  # (B,)
    mask: jax.Array  # (B,) False for the padding of a short last batch
    grads: Any = None  # the mean loss's gradient, in train steps


@dataclasses.dataclass(frozen=True)
class Metric:
    """One number per epoch (per seed) in the history, declared once."""

    key: str  # in history.json, the checkpoints and the epoch's record
    tag: str | None  # its TensorBoard scalar; None: not a scalar
    # "train" / "test": computed by every train / test step as (numerator, denominator), and the
    # epoch's value is sum(numerators) / sum(denominators); "epoch": set by the loop once per epoch.
    split: Literal["train", "test", "epoch"]
    per_batch: Callable[[StepResult], tuple[jax.Array, jax.Array]] | None = None
    # Its value for each epoch of a run written before the metric existed, from the run's config;
    # None: every run has it.
    older_runs: Callable[[Any], Any] | None = None
    shared: bool = False  # one value per epoch, whatever the seed count
    per_class: bool = False  # a list with one value per class
    bounds: tuple[float, float] = (0.0, math.inf)  # what a value can be: history.json's check
    # Its label in the printed epoch line, appended as " | label: value"; None: not printed (the
    # notebook's four have their own places in the line).
    printed: str | None = None


def _count(step: StepResult) -> jax.Array:
    return jnp.sum(step.mask)


def _correct(step: StepResult) -> jax.Array:
    return jnp.sum((jnp.argmax(step.logits, -1) == step.labels) & step.mask)


METRICS = (
    # The notebook adds up batch mean x batch size; the per-example sum would round differently.
    Metric("train_loss", "train/loss", "train", lambda s: (s.loss * _count(s), _count(s))),
    Metric("train_accuracy", "train/accuracy", "train", lambda s: (_correct(s), _count(s)), bounds=(0, 1)),
    Metric("test_loss", "test/loss", "test", lambda s: (jnp.sum(s.losses), _count(s))),
    Metric("test_accuracy", "test/accuracy", "test", lambda s: (_correct(s), _count(s)), bounds=(0, 1)),
    Metric("epoch_seconds", "epoch_seconds", "epoch", shared=True),
    Metric("test_class_accuracy", None, "epoch", per_class=True, bounds=(0, 1)),  # recall per class, from the confusion matrix
    # Runs written before schedules existed trained every epoch at their constant rate.
    Metric("learning_rate", "learning_rate", "epoch", shared=True, older_runs=lambda config: config.learning_rate),
    # On the examples --validation-examples holds out; None where a run holds none out.
    Metric("validation_loss", "validation/loss", "epoch", older_runs=lambda config: None),
    Metric("validation_accuracy", "validation/accuracy", "epoch", older_runs=lambda config: None, bounds=(0, 1),
           printed="validation accuracy"),
)
NOTEBOOK_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")  # the notebook's printed four
LOSS_KEY = "train_loss"  # whose per-batch values are each step's loss (TensorBoard's train/batch_loss)
RATE_KEY = "learning_rate"  # shared by a run's seeds, but each sweep member's own


def chosen_on(history: History) -> str:
    """The accuracy that every choice reads (--stop-at-accuracy, the sweep's best): the validation
    split's where the run holds one out, else the test set's."""
    values = history.get("validation_accuracy") or [None]
    return "test_accuracy" if values[-1] is None else "validation_accuracy"


def declared(metrics: Sequence[Metric] | None = None) -> Sequence[Metric]:
    """`metrics`, or else METRICS as this module holds it at the time of the call (not of an import),
    so that every reader of a history sees a metric added since."""
    return METRICS if metrics is None else metrics


def step_sums(metrics: Sequence[Metric], split: str, step: StepResult) -> Sums:
    """The per-batch (numerator, denominator) of each of `metrics` computed in `split`'s steps."""
    return {m.key: m.per_batch(step) for m in metrics if m.split == split}


def summarize(sums: Sums) -> dict[str, np.ndarray]:
    """Each metric's epoch value from its per-batch (numerator, denominator), batches on the last
    axis: sum over sum, in float32. Summed by XLA as one scan over the epoch would sum them, so an
    epoch run in one scan or in chunks gives the same numbers bit for bit."""
    return jax.device_get(_summarize(sums))


@jax.jit
def _summarize(sums: Sums) -> dict[str, jax.Array]:
    return {key: jnp.sum(numerator, axis=-1) / jnp.sum(denominator, axis=-1)
            for key, (numerator, denominator) in sums.items()}


def class_accuracy(confusion: np.ndarray) -> list[float]:
    """Per-class accuracy (recall) from a confusion matrix (rows: true class)."""
    confusion = np.asarray(confusion)
    return (np.diag(confusion) / np.maximum(confusion.sum(1), 1)).tolist()


def epochs_done(history: History) -> int:
    return len(history[LOSS_KEY])


def epoch_entry(history: History, epoch: int) -> dict[str, Any]:
    return {k: v[epoch] for k, v in history.items()}


def _none_by_design(metric: Metric, value: Any) -> bool:
    return value is None and metric.key.startswith("validation_")  # a run that holds no split out


def _value(value: float | list[float] | None) -> str:
    if value is None:  # a metric that an older run did not record (Metric.older_runs)
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:.4f}"
    values = np.asarray(value)
    return f"{values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def format_epoch(epoch: int, record: dict[str, Any], metrics: Sequence[Metric] | None = None) -> str:
    """The notebook's per-epoch line, then " | label: value" for each metric with a `printed` label
    that `record` holds; for several seeds, each value as mean +- std over the seeds."""
    extra = "".join(f" | {m.printed}: {_value(record[m.key])}" for m in declared(metrics)
                    if m.printed is not None and m.key in record and not _none_by_design(m, record[m.key]))
    return (f"[epoch {epoch:2d}] Train loss: {_value(record['train_loss'])} / accuracy: {_value(record['train_accuracy'])}"
            f" | Test loss: {_value(record['test_loss'])} / accuracy: {_value(record['test_accuracy'])}{extra}")

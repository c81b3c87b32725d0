"""A run's history: one record per epoch, each number in it declared once, and the notebook's log line.

    history = empty()
    record = epoch_record(train_sums, test_sums, confusion, seconds=2.1, learning_rate=1e-4)
    history = append(history, record)                       # a new History
    print(format_epoch(epoch, record))
    # [epoch  0] Train loss: 1.8407 / accuracy: 0.6246 | Test loss: 1.0855 / accuracy: 0.8155

Every number of an epoch is a `Metric` in METRICS: its history key, how the steps' per-batch values
add up to the epoch's (sum of numerators over sum of denominators), its TensorBoard tag, and its
value in runs written before it existed. A new metric is one more `Metric` (docs/extending.md):
the steps compute it, history.json, the checkpoints and TensorBoard hold it, and older runs resume.

A History maps each key to a list with one entry per epoch: a float, or for `test_class_accuracy` a
list of 10. In a multi-seed run each entry is a list with one value per seed (a `shared` metric
excepted: the seeds share it); `seed_history(history, i)` is seed i's own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.errors import finite, quoted

History = dict[str, list]
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
)
NOTEBOOK_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")  # the notebook's printed four
LOSS_KEY = "train_loss"  # whose per-batch values are each step's loss (TensorBoard's train/batch_loss)
RATE_KEY = "learning_rate"  # shared by a run's seeds, but each sweep member's own


def step_sums(metrics: Sequence[Metric], split: str, step: StepResult) -> Sums:
    """The per-batch (numerator, denominator) of each of `metrics` computed in `split`'s steps."""
    return {m.key: m.per_batch(step) for m in metrics if m.split == split}


def empty(metrics: Sequence[Metric] = METRICS) -> History:
    return {m.key: [] for m in metrics}


def epochs_done(history: History) -> int:
    return len(history[LOSS_KEY])


def append(history: History, record: Mapping[str, Any], metrics: Sequence[Metric] = METRICS) -> History:
    """A new History with `record` as its next epoch; `history` itself is left as it was."""
    return {m.key: [*history[m.key], record[m.key]] for m in metrics}


def upgrade(history: History, config: Any, metrics: Sequence[Metric] = METRICS) -> History:
    """`history` with every metric it lacks filled in as `Metric.older_runs` says (a run written
    before that metric existed); a KeyError-free resume of any earlier run."""
    missing = {m.key: [m.older_runs(config)] * epochs_done(history)
               for m in metrics if m.key not in history and m.older_runs is not None}
    return {**history, **missing} if missing else history


def check(history: Any, seeds: int = 1, metrics: Sequence[Metric] = METRICS, swept: bool = False) -> None:
    """A ValueError naming the first entry of `history` (as read from history.json) that is not what
    a run writes: a list per key, one entry per epoch, numbers (one per model for several seeds or a
    sweep, `seeds` in all; in a sweep, the learning rate too)."""
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


def epoch_record(train_sums: Sums, test_sums: Sums, confusion: np.ndarray, seconds: float,
                 learning_rate: float) -> dict[str, Any]:
    """One epoch's entry from host arrays: floats, or lists of one float per seed; and, for the
    logs only (not the history), each train batch's mean loss (`train_batch_loss`)."""
    confusion = np.asarray(confusion)
    numerator, denominator = (np.asarray(a) for a in train_sums[LOSS_KEY])
    values = {key: value.tolist() for key, value in summarize({**train_sums, **test_sums}).items()}
    return {
        **values,
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
                       weight_decay: float | None = None) -> str:
    """What happened when epoch `epoch` diverged, what to lower (the learning rate, and `weight_decay`
    where the optimizer applies one), and the newest checkpoint kept (epochs done), if any."""
    kept = f"the last good checkpoint (after epoch {kept_epoch - 1}) is kept" if kept_epoch else "no checkpoint was written"
    lower = "the learning rate" + (f" or the weight decay ({weight_decay:g})" if weight_decay else "")
    return (f"epoch {epoch}: the loss became {record['train_loss']} (train) / {record['test_loss']} (test), "
            f"beyond {DIVERGED_LOSS:.0f} (ten times a uniform guess's); lower {lower}; {kept}")


def reached(history: History, accuracy: float | None) -> bool:
    """Whether the last epoch of `history` reached the test `accuracy` (every seed's), the target of
    `--stop-at-accuracy`; False for no target or no epoch."""
    return (accuracy is not None and epochs_done(history) > 0
            and bool(np.all(np.asarray(history["test_accuracy"][-1]) >= accuracy)))


def seed_history(history: History, index: int, metrics: Sequence[Metric] = METRICS) -> History:
    """Seed `index`'s own history from a multi-seed history (shared metrics are the seeds' in common)."""
    shared = {m.key for m in metrics if m.shared}
    return {k: list(v) if k in shared and not (v and isinstance(v[0], list)) else [epoch[index] for epoch in v]
            for k, v in history.items()}


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

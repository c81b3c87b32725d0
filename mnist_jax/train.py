"""Pure training and evaluation functions: a whole epoch is one jitted `lax.scan` on the device.

    config = TrainConfig()                     # the notebook's hyperparameters
    state, history = fit(config, train_data, test_data, on_epoch=print)

Expected with the defaults (the notebook's settings): epoch 0 test accuracy ~0.80, epoch 29 ~0.984.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax.model import NUM_CLASSES, Classifier, ConvImpl, Params, init_params


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults are the notebook's."""

    epochs: int = 30
    learning_rate: float = 1e-4
    batch_size: int = 512
    test_batch_size: int = 1024
    seed: int = 0
    conv: ConvImpl = "auto"
    train_examples: int | None = None  # train on the first N examples only (quick runs)


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; a pytree, so it passes through `jit` whole."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array  # consumed once per epoch for the shuffle


class Batch(NamedTuple):
    images: jax.Array  # uint8 (B, 28, 28, 1)
    labels: jax.Array  # int32 (B,)
    mask: jax.Array  # bool (B,): False for the padding of a short last batch


class Metrics(NamedTuple):
    loss_sum: jax.Array  # sum over examples of the loss (train: batch mean x batch size, as the notebook)
    correct: jax.Array
    count: jax.Array


def create_train_state(model: Classifier, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    init_key, shuffle_key = jax.random.split(key)
    params = init_params(model, init_key)
    return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32), key=shuffle_key)


def initial_state(config: TrainConfig) -> TrainState:
    """A fresh TrainState for `config`; also the template that a checkpoint is restored into."""
    # Jitted: run eagerly, init would compile each of its dozens of small ops separately.
    return jax.jit(create_train_state, static_argnums=(0, 1))(
        Classifier(conv=config.conv), optax.adam(config.learning_rate), jax.random.key(config.seed))


def to_float(images: jax.Array) -> jax.Array:
    """uint8 pixels to floats in [0, 1], as torchvision's `ToTensor`."""
    return images.astype(jnp.float32) / 255.0


def batch_loss(params: Params, batch: Batch, model: Classifier) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over the batch's real examples (mask), and the logits."""
    logits = model.apply({"params": params}, to_float(batch.images))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
    mask = batch.mask.astype(losses.dtype)
    return jnp.sum(losses * mask) / jnp.sum(mask), logits


def _metrics(loss_sum: jax.Array, logits: jax.Array, batch: Batch) -> Metrics:
    correct = jnp.sum((jnp.argmax(logits, -1) == batch.labels) & batch.mask)
    return Metrics(loss_sum, correct, jnp.sum(batch.mask))


def train_step(state: TrainState, batch: Batch, *, model: Classifier,
               optimizer: optax.GradientTransformation) -> tuple[TrainState, Metrics]:
    """One Adam step on a batch; metrics as the notebook accumulates them."""
    (loss, logits), grads = jax.value_and_grad(batch_loss, has_aux=True)(state.params, batch, model)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                          step=state.step + 1)
    return state, _metrics(loss * jnp.sum(batch.mask), logits, batch)


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def _padded_batches(order: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """`order` cut into (num_batches, batch_size) indices; the last batch padded, with its mask."""
    n = order.shape[0]
    total = num_batches(n, batch_size) * batch_size
    padded = jnp.zeros(total, order.dtype).at[:n].set(order)
    mask = jnp.arange(total) < n
    return padded.reshape(-1, batch_size), mask.reshape(-1, batch_size)


def _sum_metrics(metrics: Metrics) -> dict[str, jax.Array]:
    totals = jax.tree_util.tree_map(jnp.sum, metrics)
    return {"loss": totals.loss_sum / totals.count, "accuracy": totals.correct / totals.count}


def train_epoch(state: TrainState, images: jax.Array, labels: jax.Array, *, model: Classifier,
                optimizer: optax.GradientTransformation, batch_size: int,
                on_step: Callable[[jax.Array], Any] | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
    """One pass over all examples in a fresh `jax.random` order, as one `lax.scan`.

    The last short batch is kept (PyTorch's `drop_last=False`): padded to `batch_size` and masked,
    so its loss and gradient are the mean over its real examples. `on_step(i)`, if given, is called
    on the host after batch i (for a progress bar); without it the scan never leaves the device.
    """
    key, shuffle_key = jax.random.split(state.key)
    order = jax.random.permutation(shuffle_key, labels.shape[0])
    indices, mask = _padded_batches(order, batch_size)

    def step(state: TrainState, xs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[TrainState, Metrics]:
        i, idx, m = xs
        state, metrics = train_step(state, Batch(images[idx], labels[idx], m), model=model, optimizer=optimizer)
        if on_step is not None:
            jax.debug.callback(on_step, i)
        return state, metrics

    xs = (jnp.arange(indices.shape[0]), indices, mask)
    state, metrics = jax.lax.scan(step, state.replace(key=key), xs)
    return state, _sum_metrics(metrics)


def evaluate(params: Params, images: jax.Array, labels: jax.Array, *, model: Classifier,
             batch_size: int) -> dict[str, jax.Array]:
    """Exact mean loss and accuracy over all examples, in batches of `batch_size`, and the
    confusion matrix (rows: true class, columns: predicted)."""
    indices, mask = _padded_batches(jnp.arange(labels.shape[0]), batch_size)

    def step(carry: None, xs: tuple[jax.Array, jax.Array]) -> tuple[None, tuple[Metrics, jax.Array]]:
        idx, m = xs
        batch = Batch(images[idx], labels[idx], m)
        logits = model.apply({"params": params}, to_float(batch.images))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
        confusion = jnp.einsum("bt,bp->tp", jax.nn.one_hot(batch.labels, NUM_CLASSES, dtype=jnp.int32) * m[:, None],
                               jax.nn.one_hot(jnp.argmax(logits, -1), NUM_CLASSES, dtype=jnp.int32))
        return None, (_metrics(jnp.sum(losses * m), logits, batch), confusion)

    _, (metrics, confusion) = jax.lax.scan(step, None, (indices, mask))
    return {**_sum_metrics(metrics), "confusion": confusion.sum(0)}


def class_accuracy(confusion: np.ndarray) -> list[float]:
    """Per-class accuracy (recall) from a confusion matrix."""
    confusion = np.asarray(confusion)
    return (np.diag(confusion) / np.maximum(confusion.sum(1), 1)).tolist()


def probabilities(params: Params, images: jax.Array, *, model: Classifier, batch_size: int) -> jax.Array:
    """Class probabilities (N, 10) of uint8 images, computed `batch_size` at a time."""
    indices, _ = _padded_batches(jnp.arange(images.shape[0]), batch_size)

    def step(carry: None, idx: jax.Array) -> tuple[None, jax.Array]:
        return None, jax.nn.softmax(model.apply({"params": params}, to_float(images[idx])), -1)

    _, probs = jax.lax.scan(step, None, indices)
    return probs.reshape(-1, NUM_CLASSES)[: images.shape[0]]


def predict(params: Params, images: jax.Array, model: Classifier) -> jax.Array:
    """Predicted classes of uint8 images."""
    return jnp.argmax(model.apply({"params": params}, to_float(images)), -1)


History = dict[str, list]  # per epoch: floats, and a list of 10 for test_class_accuracy
METRIC_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
HISTORY_KEYS = (*METRIC_KEYS, "epoch_seconds", "test_class_accuracy")


class NonFiniteLossError(ArithmeticError):
    """Training diverged: a loss became NaN or infinite."""


def train_epochs(config: TrainConfig, train_data: tuple[np.ndarray, np.ndarray],
                 test_data: tuple[np.ndarray, np.ndarray], *, state: TrainState | None = None,
                 history: History | None = None, on_step: Callable[[jax.Array], Any] | None = None,
                 ) -> Iterator[tuple[int, dict[str, float], TrainState, History]]:
    """Train epoch by epoch up to `config.epochs`, yielding `(epoch, record, state, history)` after each.

    Pass a `state` and `history` (from a checkpoint) to continue a run; the result is the same as
    an uninterrupted run. The datasets go to the device once. The yielded state's buffers are
    reused by the next epoch: save or copy it before asking for the next one. Raises
    NonFiniteLossError, before yielding, for an epoch whose loss is NaN or infinite.
    """
    model = Classifier(conv=config.conv)
    optimizer = optax.adam(config.learning_rate)
    if state is None:
        state = initial_state(config)
    history = {k: list(history.get(k, [])) for k in HISTORY_KEYS} if history else {k: [] for k in HISTORY_KEYS}
    run_epoch = jax.jit(functools.partial(train_epoch, model=model, optimizer=optimizer,
                                          batch_size=config.batch_size, on_step=on_step), donate_argnums=0)
    run_eval = jax.jit(functools.partial(evaluate, model=model, batch_size=config.test_batch_size))
    limit = config.train_examples or len(train_data[1])
    train_images, train_labels = (jax.device_put(a[:limit]) for a in train_data)
    test_images, test_labels = (jax.device_put(a) for a in test_data)

    for epoch in range(len(history["train_loss"]), config.epochs):
        start = time.perf_counter()
        state, train_metrics = run_epoch(state, train_images, train_labels)
        test_metrics = run_eval(state.params, test_images, test_labels)
        train_metrics, test_metrics = jax.device_get((train_metrics, test_metrics))
        record = {
            "train_loss": float(train_metrics["loss"]), "train_accuracy": float(train_metrics["accuracy"]),
            "test_loss": float(test_metrics["loss"]), "test_accuracy": float(test_metrics["accuracy"]),
            "epoch_seconds": time.perf_counter() - start,
            "test_class_accuracy": class_accuracy(test_metrics["confusion"]),
        }
        if not (np.isfinite(record["train_loss"]) and np.isfinite(record["test_loss"])):
            raise NonFiniteLossError(f"epoch {epoch}: the loss became {record['train_loss']} (train) / "
                                     f"{record['test_loss']} (test); lower the learning rate")
        for k in HISTORY_KEYS:
            history[k].append(record[k])
        yield epoch, record, state, history


def fit(config: TrainConfig, train_data: tuple[np.ndarray, np.ndarray], test_data: tuple[np.ndarray, np.ndarray],
        on_epoch: Callable[[int, dict[str, float]], Any] | None = None,
        on_step: Callable[[jax.Array], Any] | None = None) -> tuple[TrainState, History]:
    """Train for `config.epochs` epochs from scratch; `on_epoch(epoch, record)` is called after each.

    Same config and platform: the same history, bit for bit.
    """
    state, history = None, None
    for epoch, record, state, history in train_epochs(config, train_data, test_data, on_step=on_step):
        if on_epoch is not None:
            on_epoch(epoch, record)
    return state, history


def format_epoch(epoch: int, record: dict[str, float]) -> str:
    """The notebook's per-epoch line."""
    return (f"[epoch {epoch:2d}] Train loss: {record['train_loss']:.4f} / accuracy: {record['train_accuracy']:.4f}"
            f" | Test loss: {record['test_loss']:.4f} / accuracy: {record['test_accuracy']:.4f}")

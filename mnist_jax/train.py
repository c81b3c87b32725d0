"""Pure training and evaluation functions: a whole epoch is one jitted `lax.scan` on the device.

    config = TrainConfig()                     # the notebook's hyperparameters
    state, history = fit(config, train_data, test_data, on_epoch=print)

Expected with the defaults (the notebook's settings): epoch 0 test accuracy ~0.80, epoch 29 ~0.984.

`TrainConfig(seeds=8)` trains 8 independent models (seeds `seed` ... `seed + 7`) in one program:
the state gets a leading seed axis and the epoch function is `jax.vmap`ped over it. The history
then holds a list of 8 values per epoch; `seed_history(history, i)` is seed i's own history.
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

from mnist_jax import parallel
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
    seeds: int = 1  # > 1: train seeds seed, seed+1, ... at once, vmapped

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")


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


def initial_state(config: TrainConfig, sharding: jax.sharding.Sharding | None = None) -> TrainState:
    """A fresh TrainState for `config`; also the template that a checkpoint is restored into.

    With `config.seeds > 1`, the states of seeds `seed` ... `seed + seeds - 1` stacked on a leading
    axis, each equal to that seed's single state. `sharding` lays the result out over devices.
    """
    create = functools.partial(create_train_state, Classifier(conv=config.conv), optax.adam(config.learning_rate))
    # Jitted: run eagerly, init would compile each of its dozens of small ops separately.
    if config.seeds == 1:
        return jax.jit(create, out_shardings=sharding)(jax.random.key(config.seed))
    seeds = jnp.arange(config.seed, config.seed + config.seeds)
    return jax.jit(jax.vmap(lambda seed: create(jax.random.key(seed))), out_shardings=sharding)(seeds)


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
                on_step: Callable[[jax.Array], Any] | None = None,
                batch_sharding: jax.sharding.Sharding | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
    """One pass over all examples in a fresh `jax.random` order, as one `lax.scan`.

    The last short batch is kept (PyTorch's `drop_last=False`): padded to `batch_size` and masked,
    so its loss and gradient are the mean over its real examples. `on_step(i)`, if given, is called
    on the host after batch i (for a progress bar); without it the scan never leaves the device.
    `batch_sharding` splits each batch over devices (see mnist_jax.parallel).
    """
    key, shuffle_key = jax.random.split(state.key)
    order = jax.random.permutation(shuffle_key, labels.shape[0])
    indices, mask = _padded_batches(order, batch_size)

    def step(state: TrainState, xs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[TrainState, Metrics]:
        i, idx, m = xs
        batch = Batch(images[idx], labels[idx], m)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        state, metrics = train_step(state, batch, model=model, optimizer=optimizer)
        if on_step is not None:
            jax.debug.callback(on_step, i)
        return state, metrics

    xs = (jnp.arange(indices.shape[0]), indices, mask)
    state, metrics = jax.lax.scan(step, state.replace(key=key), xs)
    return state, _sum_metrics(metrics)


def evaluate(params: Params, images: jax.Array, labels: jax.Array, *, model: Classifier,
             batch_size: int, batch_sharding: jax.sharding.Sharding | None = None) -> dict[str, jax.Array]:
    """Exact mean loss and accuracy over all examples, in batches of `batch_size`, and the
    confusion matrix (rows: true class, columns: predicted)."""
    indices, mask = _padded_batches(jnp.arange(labels.shape[0]), batch_size)

    def step(carry: None, xs: tuple[jax.Array, jax.Array]) -> tuple[None, tuple[Metrics, jax.Array]]:
        idx, m = xs
        batch = Batch(images[idx], labels[idx], m)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
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


History = dict[str, list]  # per epoch: a float (a list of 10 for test_class_accuracy); multi-seed: a list per seed
METRIC_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
HISTORY_KEYS = (*METRIC_KEYS, "epoch_seconds", "test_class_accuracy")


def seed_history(history: History, index: int) -> History:
    """Seed `index`'s own history from a multi-seed history (`epoch_seconds` is shared by all seeds)."""
    return {k: list(v) if k == "epoch_seconds" else [epoch[index] for epoch in v] for k, v in history.items()}


class NonFiniteLossError(ArithmeticError):
    """Training diverged: a loss became NaN or infinite."""


def _epoch_record(train_metrics: dict[str, np.ndarray], test_metrics: dict[str, np.ndarray],
                  seconds: float) -> dict[str, Any]:
    """Host values for the history: floats, or lists of one float per seed."""
    confusion = np.asarray(test_metrics["confusion"])
    return {
        "train_loss": np.asarray(train_metrics["loss"]).tolist(),
        "train_accuracy": np.asarray(train_metrics["accuracy"]).tolist(),
        "test_loss": np.asarray(test_metrics["loss"]).tolist(),
        "test_accuracy": np.asarray(test_metrics["accuracy"]).tolist(),
        "epoch_seconds": seconds,
        "test_class_accuracy": class_accuracy(confusion) if confusion.ndim == 2 else list(map(class_accuracy, confusion)),
    }


def train_epochs(config: TrainConfig, train_data: tuple[np.ndarray, np.ndarray],
                 test_data: tuple[np.ndarray, np.ndarray], *, state: TrainState | None = None,
                 history: History | None = None, on_step: Callable[[jax.Array], Any] | None = None,
                 mesh: jax.sharding.Mesh | None = None,
                 ) -> Iterator[tuple[int, dict[str, Any], TrainState, History]]:
    """Train epoch by epoch up to `config.epochs`, yielding `(epoch, record, state, history)` after each.

    Pass a `state` and `history` (from a checkpoint) to continue a run; the result is the same as
    an uninterrupted run. The datasets go to the device once. The yielded state's buffers are
    reused by the next epoch: save or copy it before asking for the next one. Raises
    NonFiniteLossError, before yielding, for an epoch whose loss is NaN or infinite. `mesh`
    (from `parallel.make_mesh`) spreads the seeds, or each batch, over its devices.
    """
    model = Classifier(conv=config.conv)
    optimizer = optax.adam(config.learning_rate)
    batch_sharding = parallel.batch_sharding(mesh)
    epoch_fn = functools.partial(train_epoch, model=model, optimizer=optimizer, batch_size=config.batch_size,
                                 on_step=on_step, batch_sharding=batch_sharding)
    eval_fn = functools.partial(evaluate, model=model, batch_size=config.test_batch_size,
                                batch_sharding=batch_sharding)
    if config.seeds > 1:
        epoch_fn = jax.vmap(epoch_fn, in_axes=(0, None, None))
        eval_fn = jax.vmap(eval_fn, in_axes=(0, None, None))
    limit = config.train_examples or len(train_data[1])
    arrays = (train_data[0][:limit], train_data[1][:limit], *test_data)
    if mesh is None:
        run_epoch = jax.jit(epoch_fn, donate_argnums=0)
        run_eval = jax.jit(eval_fn)
        train_images, train_labels, test_images, test_labels = (jax.device_put(a) for a in arrays)
        state = initial_state(config) if state is None else state
    else:
        # Metrics come back replicated, so every host can read them.
        run_epoch = jax.jit(epoch_fn, donate_argnums=0,
                            out_shardings=(parallel.state_sharding(mesh), parallel.replicated(mesh)))
        run_eval = jax.jit(eval_fn, out_shardings=parallel.replicated(mesh))
        train_images, train_labels, test_images, test_labels = parallel.put(arrays, parallel.replicated(mesh))
        state = (initial_state(config, parallel.state_sharding(mesh)) if state is None
                 else parallel.put(state, parallel.state_sharding(mesh)))
    history = {k: list(history.get(k, [])) for k in HISTORY_KEYS} if history else {k: [] for k in HISTORY_KEYS}

    for epoch in range(len(history["train_loss"]), config.epochs):
        start = time.perf_counter()
        state, train_metrics = run_epoch(state, train_images, train_labels)
        test_metrics = run_eval(state.params, test_images, test_labels)
        record = _epoch_record(*parallel.to_host((train_metrics, test_metrics)), time.perf_counter() - start)
        if not (np.all(np.isfinite(record["train_loss"])) and np.all(np.isfinite(record["test_loss"]))):
            raise NonFiniteLossError(f"epoch {epoch}: the loss became {record['train_loss']} (train) / "
                                     f"{record['test_loss']} (test); lower the learning rate")
        for k in HISTORY_KEYS:
            history[k].append(record[k])
        yield epoch, record, state, history


def fit(config: TrainConfig, train_data: tuple[np.ndarray, np.ndarray], test_data: tuple[np.ndarray, np.ndarray],
        on_epoch: Callable[[int, dict[str, Any]], Any] | None = None,
        on_step: Callable[[jax.Array], Any] | None = None,
        mesh: jax.sharding.Mesh | None = None) -> tuple[TrainState, History]:
    """Train for `config.epochs` epochs from scratch; `on_epoch(epoch, record)` is called after each.

    Same config and platform: the same history, bit for bit.
    """
    state, history = None, None
    for epoch, record, state, history in train_epochs(config, train_data, test_data, on_step=on_step, mesh=mesh):
        if on_epoch is not None:
            on_epoch(epoch, record)
    return state, history


def _value(value: float | list[float]) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.4f}"
    values = np.asarray(value)
    return f"{values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def format_epoch(epoch: int, record: dict[str, Any]) -> str:
    """The notebook's per-epoch line; for several seeds, each figure as mean +- std over the seeds."""
    return (f"[epoch {epoch:2d}] Train loss: {_value(record['train_loss'])} / accuracy: {_value(record['train_accuracy'])}"
            f" | Test loss: {_value(record['test_loss'])} / accuracy: {_value(record['test_accuracy'])}")

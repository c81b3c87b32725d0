"""Pure training and evaluation steps; no I/O. A whole epoch is one jitted `lax.scan` on the device.

    model, optimizer = classifier_for(config), optax.adam(config.learning_rate)
    state = initial_state(config)
    state, step_metrics = train_epoch(state, images, labels, model=model, optimizer=optimizer,
                                      batch_size=512)
    step_metrics = evaluate(state.params, test_images, test_labels, model=model, batch_size=1024)

Metrics come back per batch (`Metrics`, stacked over the scan) and are added up on the host by
`mnist_jax.history.summarize`, so an epoch run in one scan or in several chunks (for a progress
bar) gives the same numbers bit for bit. The training loop around these is `mnist_jax.trainer`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mnist_jax.config import TrainConfig
from mnist_jax.model import NUM_CLASSES, Classifier, Params, classifier_for, init_params, to_float


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
    """Per batch; stacked over batches by the scans. `mnist_jax.history.summarize` adds them up."""

    loss_sum: jax.Array  # sum over the batch's examples of the loss (train: batch mean x batch size, as the notebook)
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
    create = _initializer(classifier_for(config), config.learning_rate, config.seeds, sharding)
    if config.seeds == 1:
        return create(jax.random.key(config.seed))
    return create(jnp.arange(config.seed, config.seed + config.seeds))


@functools.lru_cache(maxsize=32)
def _initializer(model: Classifier, learning_rate: float, seeds: int,
                 sharding: jax.sharding.Sharding | None) -> Callable[[jax.Array], TrainState]:
    # Jitted (eagerly, init would compile each of its dozens of small ops separately) and kept: the
    # init runs the model once, and compiling that takes seconds on a CPU.
    create = functools.partial(create_train_state, model, optax.adam(learning_rate))
    if seeds == 1:
        return jax.jit(create, out_shardings=sharding)
    return jax.jit(jax.vmap(lambda seed: create(jax.random.key(seed))), out_shardings=sharding)


def batch_loss(params: Params, batch: Batch, model: Classifier) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over the batch's real examples (mask), and the logits."""
    logits = model.apply({"params": params}, to_float(batch.images))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
    mask = batch.mask.astype(losses.dtype)
    return jnp.sum(losses * mask) / jnp.sum(mask), logits


def batch_metrics(loss_sum: jax.Array, logits: jax.Array, batch: Batch) -> Metrics:
    correct = jnp.sum((jnp.argmax(logits, -1) == batch.labels) & batch.mask)
    return Metrics(loss_sum, correct, jnp.sum(batch.mask))


def train_step(state: TrainState, batch: Batch, *, model: Classifier,
               optimizer: optax.GradientTransformation) -> tuple[TrainState, Metrics]:
    """One Adam step on a batch; metrics as the notebook accumulates them."""
    (loss, logits), grads = jax.value_and_grad(batch_loss, has_aux=True)(state.params, batch, model)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                          step=state.step + 1)
    return state, batch_metrics(loss * jnp.sum(batch.mask), logits, batch)


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def padded_batches(order: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """`order` cut into (num_batches, batch_size) indices; the last batch padded, with its mask."""
    n = order.shape[0]
    total = num_batches(n, batch_size) * batch_size
    padded = jnp.zeros(total, order.dtype).at[:n].set(order)
    mask = jnp.arange(total) < n
    return padded.reshape(-1, batch_size), mask.reshape(-1, batch_size)


def shuffle(state: TrainState, num_examples: int, batch_size: int) -> tuple[TrainState, jax.Array, jax.Array]:
    """An epoch's batches in a fresh `jax.random` order: (state with the next key, indices, mask).

    The last short batch is kept (PyTorch's `drop_last=False`): padded to `batch_size` and masked,
    so its loss and gradient are the mean over its real examples.
    """
    key, shuffle_key = jax.random.split(state.key)
    indices, mask = padded_batches(jax.random.permutation(shuffle_key, num_examples), batch_size)
    return state.replace(key=key), indices, mask


def train_steps(state: TrainState, images: jax.Array, labels: jax.Array, indices: jax.Array, mask: jax.Array, *,
                model: Classifier, optimizer: optax.GradientTransformation,
                batch_sharding: jax.sharding.Sharding | None = None) -> tuple[TrainState, Metrics]:
    """`train_step` over the batches `images[indices[i]]`, as one `lax.scan`; per-batch metrics.

    `batch_sharding` splits each batch over devices (see mnist_jax.parallel).
    """

    def step(state: TrainState, xs: tuple[jax.Array, jax.Array]) -> tuple[TrainState, Metrics]:
        idx, m = xs
        batch = Batch(images[idx], labels[idx], m)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return train_step(state, batch, model=model, optimizer=optimizer)

    return jax.lax.scan(step, state, (indices, mask))


def train_epoch(state: TrainState, images: jax.Array, labels: jax.Array, *, model: Classifier,
                optimizer: optax.GradientTransformation, batch_size: int,
                batch_sharding: jax.sharding.Sharding | None = None) -> tuple[TrainState, Metrics]:
    """One pass over all examples in a fresh random order: `shuffle`, then `train_steps` over it all."""
    state, indices, mask = shuffle(state, labels.shape[0], batch_size)
    return train_steps(state, images, labels, indices, mask, model=model, optimizer=optimizer,
                       batch_sharding=batch_sharding)


def evaluate(params: Params, images: jax.Array, labels: jax.Array, *, model: Classifier, batch_size: int,
             batch_sharding: jax.sharding.Sharding | None = None) -> tuple[Metrics, jax.Array]:
    """Per-batch loss sums and counts over all examples, in batches of `batch_size`, and the
    confusion matrix (rows: true class, columns: predicted)."""
    indices, mask = padded_batches(jnp.arange(labels.shape[0]), batch_size)

    def step(carry: None, xs: tuple[jax.Array, jax.Array]) -> tuple[None, tuple[Metrics, jax.Array]]:
        idx, m = xs
        batch = Batch(images[idx], labels[idx], m)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        logits = model.apply({"params": params}, to_float(batch.images))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
        confusion = jnp.einsum("bt,bp->tp", jax.nn.one_hot(batch.labels, NUM_CLASSES, dtype=jnp.int32) * m[:, None],
                               jax.nn.one_hot(jnp.argmax(logits, -1), NUM_CLASSES, dtype=jnp.int32))
        return None, (batch_metrics(jnp.sum(losses * m), logits, batch), confusion)

    _, (metrics, confusion) = jax.lax.scan(step, None, (indices, mask))
    return metrics, confusion.sum(0)

"""The pure train and eval steps, and an epoch of them; no I/O. Read after mnist_jax.model.

    state = create_train_state(model, optimizer, jax.random.key(0))
    epoch = jax.jit(functools.partial(train_epoch, batch_size=512, model=model, optimizer=optimizer),
                    donate_argnums=0)
    state, sums = epoch(state, train_images, train_labels)           # the whole dataset on the device
    sums, confusion = evaluate(state.params, test_images, test_labels, model=model, batch_size=1024)

An epoch draws its order from the state's key (`shuffle`) and runs `train_step` over the batches as
one `lax.scan`, gathering each batch on the device. Every step returns its batch's share of each
metric (mnist_jax.metrics), which `metrics.summarize` adds up into the epoch's values.
mnist_jax.fast runs these same functions in the programs a run compiles (the same numbers, sooner).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mnist_jax import metrics
from mnist_jax.model import Model, Params

# (key, uint8 images) -> images of the same shape; see mnist_jax.augment.
Augmentation = Callable[[jax.Array, jax.Array], jax.Array]


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; a pytree, so it passes through `jit` whole."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array  # split by each epoch's shuffle; each step folds its number in for its own randomness


class Batch(NamedTuple):
    images: jax.Array  # uint8 (B, 28, 28, 1)
    labels: jax.Array  # int32 (B,)
    mask: jax.Array  # bool (B,): False for the padding of a short last batch


def create_train_state(model: Model, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    init_key, shuffle_key = jax.random.split(key)
    params = model.init(init_key)
    return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32), key=shuffle_key)


def batch_losses(params: Params, batch: Batch, model: Model,
                 key: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, Params]]:
    """Each example's cross-entropy, zero for padding (mask); the logits and the running statistics
    the batch updates. With a `key`, as a train step computes them; without, as evaluation does."""
    if key is None:
        logits, statistics = model.apply(params, batch.images), {}
    else:
        logits, statistics = model.train_apply(params, batch.images, key)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
    return losses * batch.mask.astype(losses.dtype), (logits, statistics)


def mean_loss(params: Params, batch: Batch, model: Model,
              key: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, Params]]:
    """Mean cross-entropy over the batch's real examples; the logits and statistics."""
    losses, aux = batch_losses(params, batch, model, key)
    return jnp.sum(losses) / jnp.sum(batch.mask), aux


def loss_and_gradient(params: Params, batch: Batch, model: Model,
                      key: jax.Array) -> tuple[jax.Array, tuple[jax.Array, Params], Params]:
    """The batch's mean loss, (its logits, the statistics it updates), and the mean loss's gradient."""
    (loss, aux), grads = jax.value_and_grad(mean_loss, has_aux=True)(params, batch, model, key)
    return loss, aux, grads


Gradient = Callable[[Params, Batch, Model, jax.Array], tuple[jax.Array, tuple[jax.Array, Params], Params]]


def train_step(state: TrainState, batch: Batch, *, model: Model, optimizer: optax.GradientTransformation,
               augment: Augmentation | None = None,
               gradient: Gradient = loss_and_gradient) -> tuple[TrainState, metrics.Sums]:
    """One optimizer step on a batch, first passed through `augment`; the batch's train metrics.
    (`gradient`: how the loss's gradient is computed; mnist_jax.fast computes it in slices.)"""
    # The step's own key, from the step count that the state carries: a resumed run draws the same.
    key = jax.random.fold_in(state.key, state.step)
    if augment is not None:
        batch = batch._replace(images=augment(key, batch.images))
    loss, (logits, statistics), grads = gradient(state.params, batch, model, jax.random.fold_in(key, 1))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    # Running statistics (batch norm's) are the batch's, not the optimizer's: their gradient is zero.
    params = optax.apply_updates(state.params, updates)
    if statistics:
        params = {**params, **statistics}
    state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
    result = metrics.StepResult(loss, None, logits, batch.labels, batch.mask, grads)
    return state, metrics.step_sums(metrics.METRICS, "train", result)


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def eval_batch_size(batch_size: int, num_examples: int) -> int:
    """The evaluation batch actually used: no larger than the examples, which it would only pad."""
    return max(1, min(batch_size, num_examples))


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


def train_steps(state: TrainState, images: jax.Array, labels: jax.Array, indices: jax.Array, mask: jax.Array,
                **step_args) -> tuple[TrainState, metrics.Sums]:
    """`train_step` (given `step_args`) over the batches `images[indices[i]]`, as one `lax.scan`;
    the metrics per batch."""

    def step(state: TrainState, batch: tuple[jax.Array, jax.Array]) -> tuple[TrainState, metrics.Sums]:
        idx, batch_mask = batch
        return train_step(state, Batch(images[idx], labels[idx], batch_mask), **step_args)

    return jax.lax.scan(step, state, (indices, mask))


def train_epoch(state: TrainState, images: jax.Array, labels: jax.Array, *, batch_size: int,
                **step_args) -> tuple[TrainState, metrics.Sums]:
    """One epoch: a fresh order from the state's key, then every batch once (`train_steps`)."""
    state, indices, mask = shuffle(state, labels.shape[0], batch_size)
    return train_steps(state, images, labels, indices, mask, **step_args)


def confusion_matrix(labels: jax.Array, predicted: jax.Array, num_classes: int,
                     mask: jax.Array | None = None) -> jax.Array:
    """Counts of (true class, predicted class): rows are the true classes."""
    true = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)
    if mask is not None:
        true = true * mask[:, None]
    return jnp.einsum("bt,bp->tp", true, jax.nn.one_hot(predicted, num_classes, dtype=jnp.int32))


def evaluate(params: Params, images: jax.Array, labels: jax.Array, *, model: Model,
             batch_size: int) -> tuple[metrics.Sums, jax.Array]:
    """The test metrics per batch over all examples, in batches of `batch_size`, and the confusion
    matrix (rows: true class, columns: predicted)."""
    indices, mask = padded_batches(jnp.arange(labels.shape[0]), batch_size)

    def step(carry: None, batch: tuple[jax.Array, jax.Array]) -> tuple[None, tuple[metrics.Sums, jax.Array]]:
        idx, batch_mask = batch
        batch = Batch(images[idx], labels[idx], batch_mask)
        losses, (logits, _) = batch_losses(params, batch, model)
        result = metrics.StepResult(jnp.sum(losses) / jnp.sum(batch.mask), losses, logits, batch.labels, batch.mask)
        confusion = confusion_matrix(batch.labels, jnp.argmax(logits, -1), logits.shape[-1], batch.mask)
        return None, (metrics.step_sums(metrics.METRICS, "test", result), confusion)

    _, (sums, confusion) = jax.lax.scan(step, None, (indices, mask))
    return sums, confusion.sum(0)

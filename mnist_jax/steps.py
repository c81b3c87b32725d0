"""Pure training and evaluation steps; no I/O, no jit. `mnist_jax.run.loop` compiles and runs them.

    state = create_train_state(model, optimizer, jax.random.key(0))
    state, indices, mask = shuffle(state, num_examples=60_000, batch_size=512)
    state, sums = train_steps(state, images, labels, indices, mask, model=model, optimizer=optimizer)
    sums, confusion = evaluate(state.params, test_images, test_labels, model=model, batch_size=1024)

`train_steps` is a `lax.scan` of `train_step` over batches gathered on the device from the whole
dataset. Each step returns its metrics per batch (`history.Sums`, one (numerator, denominator) per
metric of `history.METRICS`), which `history.summarize` adds up, so an epoch run in one scan or in
several chunks (for a progress bar) gives the same numbers bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from mnist_jax.metrics import METRICS, Metric, StepResult, Sums, step_sums
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


def batch_losses(params: Params, batch: Batch, model: Model) -> tuple[jax.Array, jax.Array]:
    """Each example's cross-entropy, zero for padding (mask), and the logits."""
    logits = model.apply(params, batch.images)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
    return losses * batch.mask.astype(losses.dtype), logits


def mean_loss(params: Params, batch: Batch, model: Model) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over the batch's real examples, and the logits."""
    losses, logits = batch_losses(params, batch, model)
    return jnp.sum(losses) / jnp.sum(batch.mask), logits


def loss_and_gradient(params: Params, batch: Batch, model: Model,
                      slices: int = 1) -> tuple[jax.Array, jax.Array, Params]:
    """The batch's mean loss, its logits and the gradient of the mean loss, the batch computed in
    `slices` equal slices one after the other (a `lax.scan`) and their sums added: the same result
    up to float rounding, with each slice's activations small enough to stay in a CPU's cache."""
    if slices == 1:
        (loss, logits), grads = jax.value_and_grad(mean_loss, has_aux=True)(params, batch, model)
        return loss, logits, grads

    def summed_loss(params: Params, part: Batch) -> tuple[jax.Array, jax.Array]:
        losses, logits = batch_losses(params, part, model)
        return jnp.sum(losses), logits

    def add_slice(total, part: Batch):
        (loss, logits), grads = jax.value_and_grad(summed_loss, has_aux=True)(params, part)
        return jax.tree_util.tree_map(jnp.add, total, (loss, grads)), logits

    parts = jax.tree_util.tree_map(lambda a: a.reshape(slices, -1, *a.shape[1:]), batch)
    zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
    (loss_sum, grads), logits = jax.lax.scan(add_slice, zeros, parts)
    count = jnp.sum(batch.mask)
    return loss_sum / count, logits.reshape(-1, logits.shape[-1]), jax.tree_util.tree_map(lambda g: g / count, grads)


def train_step(state: TrainState, batch: Batch, *, model: Model, optimizer: optax.GradientTransformation,
               slices: int = 1, augment: Augmentation | None = None,
               metrics: Sequence[Metric] = METRICS) -> tuple[TrainState, Sums]:
    """One optimizer step on a batch (its gradient in `slices`, see `loss_and_gradient`), the batch
    first passed through `augment` with this step's own key; the train metrics of the batch."""
    if augment is not None:
        # Folded from the step count, which the state carries: a resumed run draws the same shifts.
        batch = batch._replace(images=augment(jax.random.fold_in(state.key, state.step), batch.images))
    loss, logits, grads = loss_and_gradient(state.params, batch, model, slices)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                          step=state.step + 1)
    return state, step_sums(metrics, "train", StepResult(loss, None, logits, batch.labels, batch.mask, grads))


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


def _gather(images: jax.Array, labels: jax.Array, idx: jax.Array, mask: jax.Array,
            sharding: jax.sharding.Sharding | None) -> Batch:
    batch = Batch(images[idx], labels[idx], mask)
    return batch if sharding is None else jax.lax.with_sharding_constraint(batch, sharding)


def train_steps(state: TrainState, images: jax.Array, labels: jax.Array, indices: jax.Array, mask: jax.Array, *,
                model: Model, optimizer: optax.GradientTransformation, slices: int = 1,
                augment: Augmentation | None = None, metrics: Sequence[Metric] = METRICS,
                batch_sharding: jax.sharding.Sharding | None = None) -> tuple[TrainState, Sums]:
    """`train_step` over the batches `images[indices[i]]`, as one `lax.scan`; per-batch metrics.

    `batch_sharding` splits each batch over devices (see mnist_jax.fast.parallel).
    """

    def step(state: TrainState, xs: tuple[jax.Array, jax.Array]) -> tuple[TrainState, Sums]:
        batch = _gather(images, labels, *xs, batch_sharding)
        return train_step(state, batch, model=model, optimizer=optimizer, slices=slices, augment=augment,
                          metrics=metrics)

    return jax.lax.scan(step, state, (indices, mask))


def confusion_matrix(labels: jax.Array, predicted: jax.Array, num_classes: int,
                     mask: jax.Array | None = None) -> jax.Array:
    """Counts of (true class, predicted class): rows are the true classes."""
    true = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)
    if mask is not None:
        true = true * mask[:, None]
    return jnp.einsum("bt,bp->tp", true, jax.nn.one_hot(predicted, num_classes, dtype=jnp.int32))


def evaluate(params: Params, images: jax.Array, labels: jax.Array, *, model: Model, batch_size: int,
             metrics: Sequence[Metric] = METRICS,
             batch_sharding: jax.sharding.Sharding | None = None) -> tuple[Sums, jax.Array]:
    """The test metrics per batch over all examples, in batches of `batch_size`, and the confusion
    matrix (rows: true class, columns: predicted)."""
    indices, mask = padded_batches(jnp.arange(labels.shape[0]), batch_size)

    def step(carry: None, xs: tuple[jax.Array, jax.Array]) -> tuple[None, tuple[Sums, jax.Array]]:
        batch = _gather(images, labels, *xs, batch_sharding)
        losses, logits = batch_losses(params, batch, model)
        result = StepResult(jnp.sum(losses) / jnp.sum(batch.mask), losses, logits, batch.labels, batch.mask)
        confusion = confusion_matrix(batch.labels, jnp.argmax(logits, -1), logits.shape[-1], batch.mask)
        return None, (step_sums(metrics, "test", result), confusion)

    _, (sums, confusion) = jax.lax.scan(step, None, (indices, mask))
    return sums, confusion.sum(0)

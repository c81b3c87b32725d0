"""The pure steps of mnist_jax.steps, checked against host recomputations on real digits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.metrics import summarize
from mnist_jax.steps import (
    Batch,
    create_train_state,
    evaluate,
    mean_loss,
    padded_batches,
    shuffle,
    train_epoch,
    train_steps,
)

# The steps take any `Model`: here the CNN as a run on this backend computes it (on a CPU its matmul
# formulation; tests/test_fast.py holds it to mnist_jax.model's), in full float32 wherever numbers
# are compared across programs or batch sizes: under TF32 (a GPU's default) rounding differs more.
MODEL = model_for(TrainConfig(precision="highest"))
logits_of = quick_jit(MODEL.apply)


def fresh_state(optimizer):
    """The initial state for seed 0, jitted as a run's init program is (run eagerly, each of its
    small ops would compile alone)."""
    return quick_jit(functools.partial(create_train_state, MODEL, optimizer), random_numbers=True)(jax.random.key(0))


def test_padded_batches_cover_every_index_once():
    order = jax.random.permutation(jax.random.key(0), 1000)
    indices, mask = padded_batches(order, 512)
    assert indices.shape == mask.shape == (2, 512)
    assert int(mask.sum()) == 1000 and bool(mask[0].all()) and int(mask[1].sum()) == 488
    assert sorted(np.asarray(indices)[np.asarray(mask)].tolist()) == list(range(1000))


def test_shuffle_draws_a_new_order_each_epoch_from_the_state_key():
    state = fresh_state(optax.adam(1e-4))
    shuffle_1000 = quick_jit(shuffle, static_argnums=(1, 2))
    state1, indices1, mask1 = shuffle_1000(state, 1000, 512)
    _, indices2, _ = shuffle_1000(state1, 1000, 512)
    first = np.asarray(indices1)[np.asarray(mask1)]
    assert sorted(first.tolist()) == list(range(1000)) and first.tolist() != list(range(1000))
    assert not np.array_equal(indices1, indices2)
    _, again, _ = shuffle_1000(state, 1000, 512)  # same key, same order
    np.testing.assert_array_equal(indices1, again)


def test_masked_short_batch_gives_the_unpadded_gradient(mnist):
    images, labels = mnist["train"]
    params = fresh_state(optax.adam(1e-4)).params
    short = Batch(jnp.asarray(images[:96]), jnp.asarray(labels[:96]), jnp.ones(96, bool))
    # Padding filled with other real digits: if the mask leaked, the gradient would change.
    padded = Batch(jnp.asarray(images[:256]), jnp.asarray(labels[:256]), jnp.arange(256) < 96)
    loss_and_grad = quick_jit(functools.partial(jax.value_and_grad(mean_loss, has_aux=True), model=MODEL))
    (loss_short, _), g_short = loss_and_grad(params, short)
    (loss_padded, _), g_padded = loss_and_grad(params, padded)
    for a, b in zip(jax.tree_util.tree_leaves(g_short), jax.tree_util.tree_leaves(g_padded)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss_short, loss_padded, rtol=1e-6)


def host_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    return np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), labels]


def test_train_steps_report_each_batch_loss_before_its_update(mnist):
    """Each batch's metrics are the loss and hits of the params it was given, as the notebook
    accumulates them: recomputed on the host from the logits, batch by batch, the last one short."""
    images, labels = mnist["train"][0][:300], mnist["train"][1][:300]
    optimizer = optax.adam(1e-3)
    state = fresh_state(optimizer)
    indices, mask = padded_batches(jnp.arange(300), 128)  # 128, 128, 44 real examples
    step = quick_jit(functools.partial(train_steps, model=MODEL, optimizer=optimizer))
    end_state, metrics = step(state, images, labels, indices, mask)
    assert int(end_state.step) == 3
    for i in range(3):
        logits = np.asarray(logits_of(state.params, images[indices[i]]))[np.asarray(mask[i])]  # one shape for all
        batch_labels = labels[np.asarray(indices[i])[np.asarray(mask[i])]]
        expected = host_cross_entropy(logits, batch_labels)
        loss_sum, count = metrics["train_loss"]
        correct, _ = metrics["train_accuracy"]
        np.testing.assert_allclose(loss_sum[i], expected.sum(), rtol=1e-5)
        assert int(count[i]) == len(batch_labels)
        assert abs(int(correct[i]) - int((logits.argmax(1) == batch_labels).sum())) <= 1  # a near-tie
        # The next batch sees the state after this batch's step: one step at a time gets there too.
        state, _ = step(state, images, labels, indices[i:i + 1], mask[i:i + 1])
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(end_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_epoch_takes_ceil_n_over_b_steps_and_lowers_the_loss(mnist):
    images, labels = (jnp.asarray(a[:300]) for a in mnist["train"])
    optimizer = optax.adam(3e-3)
    epoch = quick_jit(functools.partial(train_epoch, batch_size=128, model=MODEL, optimizer=optimizer))
    state, first = epoch(fresh_state(optimizer), images, labels)
    assert int(state.step) == 3 and np.asarray(first["train_loss"][1]).tolist() == [128, 128, 44]
    state, second = epoch(state, images, labels)
    assert summarize(second)["train_loss"] < summarize(first)["train_loss"]


def test_evaluate_is_exact_whatever_the_batch_size(mnist):
    images, labels = (jnp.asarray(a[:1024]) for a in mnist["test"])
    params = fresh_state(optax.adam(1e-4)).params
    run = quick_jit(evaluate, static_argnames=("model", "batch_size"))
    full_metrics, full_confusion = run(params, images, labels, model=MODEL, batch_size=1024)
    metrics, confusion = run(params, images, labels, model=MODEL, batch_size=1000)  # last batch: 24
    full, batched = summarize(full_metrics), summarize(metrics)
    np.testing.assert_allclose(full["test_loss"], batched["test_loss"], rtol=1e-5)
    logits = np.asarray(logits_of(params, images))
    np.testing.assert_allclose(batched["test_loss"], host_cross_entropy(logits, np.asarray(labels)).mean(), rtol=1e-5)
    # Untrained logits can nearly tie; a tie may break either way in another program, so compare
    # the clear decisions exactly and allow the near-ties (none, or a handful) to differ.
    top2 = np.sort(logits, 1)[:, -2:]
    ties = int((top2[:, 1] - top2[:, 0] <= 1e-4).sum())
    hits = logits.argmax(1) == np.asarray(labels)
    assert abs(float(batched["test_accuracy"]) * 1024 - hits.sum()) <= ties
    assert abs(float(full["test_accuracy"]) - float(batched["test_accuracy"])) * 1024 <= ties
    confusion = np.asarray(confusion)
    assert confusion.sum() == 1024 and abs(np.trace(confusion) - hits.sum()) <= ties
    np.testing.assert_array_equal(confusion.sum(1), np.bincount(np.asarray(labels), minlength=10))
    assert np.abs(confusion - np.asarray(full_confusion)).sum() <= 2 * ties

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax.model import Classifier
from mnist_jax.train import (METRIC_KEYS, Batch, TrainConfig, _padded_batches, batch_loss, class_accuracy,
                             create_train_state, evaluate, fit, format_epoch, initial_state, predict, probabilities,
                             seed_history, train_epoch)


def test_padded_batches_cover_every_index_once():
    order = jax.random.permutation(jax.random.key(0), 1000)
    indices, mask = _padded_batches(order, 512)
    assert indices.shape == mask.shape == (2, 512)
    assert int(mask.sum()) == 1000 and bool(mask[0].all()) and int(mask[1].sum()) == 488
    assert sorted(np.asarray(indices)[np.asarray(mask)].tolist()) == list(range(1000))


def test_masked_short_batch_gives_the_unpadded_gradient(mnist):
    images, labels = mnist["train"]
    model = Classifier()
    params = create_train_state(model, optax.adam(1e-4), jax.random.key(0)).params
    short = Batch(jnp.asarray(images[:96]), jnp.asarray(labels[:96]), jnp.ones(96, bool))
    # Padding filled with other real digits: if the mask leaked, the gradient would change.
    padded = Batch(jnp.asarray(images[:512]), jnp.asarray(labels[:512]), jnp.arange(512) < 96)
    grad = jax.jit(functools.partial(jax.grad(batch_loss, has_aux=True), model=model))
    (g_short, _), (g_padded, _) = grad(params, short), grad(params, padded)
    for a, b in zip(jax.tree_util.tree_leaves(g_short), jax.tree_util.tree_leaves(g_padded)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    loss_short, _ = batch_loss(params, short, model)
    loss_padded, _ = batch_loss(params, padded, model)
    np.testing.assert_allclose(loss_short, loss_padded, rtol=1e-6)


def test_train_epoch_takes_ceil_n_over_b_steps_and_reports_means(mnist):
    images, labels = (jnp.asarray(a[:1100]) for a in mnist["train"])
    model, optimizer = Classifier(), optax.adam(1e-3)
    state = create_train_state(model, optimizer, jax.random.key(0))
    state, metrics = jax.jit(functools.partial(train_epoch, model=model, optimizer=optimizer, batch_size=512))(
        state, images, labels)
    assert int(state.step) == 3
    assert 0 < float(metrics["loss"]) < 2.5 and 0 <= float(metrics["accuracy"]) <= 1


def test_evaluate_is_exact_whatever_the_batch_size(mnist):
    images, labels = (jnp.asarray(a[:3000]) for a in mnist["test"])
    model = Classifier()
    params = create_train_state(model, optax.adam(1e-4), jax.random.key(0)).params
    full = evaluate(params, images, labels, model=model, batch_size=3000)
    batched = evaluate(params, images, labels, model=model, batch_size=1024)  # last batch: 952
    np.testing.assert_allclose(full["loss"], batched["loss"], rtol=1e-5)
    assert float(full["accuracy"]) == float(batched["accuracy"])
    predictions = np.asarray(predict(params, images, model))
    expected = float(np.mean(predictions == np.asarray(labels)))
    assert float(batched["accuracy"]) == pytest.approx(expected, abs=1e-7)
    confusion = np.asarray(batched["confusion"])
    np.testing.assert_array_equal(confusion, np.asarray(full["confusion"]))
    assert confusion.sum() == 3000 and np.trace(confusion) == round(expected * 3000)
    np.testing.assert_array_equal(confusion.sum(1), np.bincount(np.asarray(labels), minlength=10))
    np.testing.assert_array_equal(confusion.sum(0), np.bincount(predictions, minlength=10))
    per_class = class_accuracy(confusion)
    assert per_class[3] == pytest.approx(np.mean(predictions[np.asarray(labels) == 3] == 3))
    probs = np.asarray(probabilities(params, images, model=model, batch_size=1024))
    assert probs.shape == (3000, 10)
    np.testing.assert_array_equal(probs.argmax(1), predictions)


def test_same_seed_same_history_bit_for_bit_and_other_seed_differs(mnist):
    train = tuple(a[:2048] for a in mnist["train"])
    test = tuple(a[:1000] for a in mnist["test"])
    config = TrainConfig(epochs=2, learning_rate=1e-3)
    state_a, history_a = fit(config, train, test)
    state_b, history_b = fit(config, train, test)
    _, history_c = fit(TrainConfig(epochs=2, learning_rate=1e-3, seed=1), train, test)
    for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert history_a[k] == history_b[k]
    for a, b in zip(jax.tree_util.tree_leaves(state_a.params), jax.tree_util.tree_leaves(state_b.params)):
        np.testing.assert_array_equal(a, b)
    assert history_a["train_loss"] != history_c["train_loss"]


def test_one_epoch_on_the_full_training_set_learns(mnist):
    records = []
    _, history = fit(TrainConfig(epochs=1), mnist["train"], mnist["test"], on_epoch=lambda e, r: records.append(r))
    assert len(records) == 1 and records[0]["test_accuracy"] == history["test_accuracy"][0]
    assert history["test_accuracy"][0] >= 0.75  # the notebook: 0.7933
    assert history["train_loss"][0] < 2.2 and history["test_loss"][0] < history["train_loss"][0]
    per_class = history["test_class_accuracy"][0]
    assert len(per_class) == 10 and all(0 <= a <= 1 for a in per_class)


def test_format_epoch_is_the_notebooks_line():
    record = {"train_loss": 1.86761, "train_accuracy": 0.62521, "test_loss": 1.14804, "test_accuracy": 0.79331}
    assert format_epoch(0, record) == (
        "[epoch  0] Train loss: 1.8676 / accuracy: 0.6252 | Test loss: 1.1480 / accuracy: 0.7933")
    assert format_epoch(29, record).startswith("[epoch 29] ")


def test_multi_seed_state_stacks_the_single_seed_states_exactly():
    stacked = initial_state(TrainConfig(seed=7, seeds=3))
    for i in range(3):
        single = initial_state(TrainConfig(seed=7 + i))
        for a, b in zip(jax.tree_util.tree_leaves(stacked), jax.tree_util.tree_leaves(single)):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_array_equal(a[i], b)


def test_seed_i_of_a_multi_seed_run_is_the_single_run_with_that_seed(mnist):
    train = tuple(a[:1500] for a in mnist["train"])  # 3 batches, the last one short
    test = tuple(a[:1000] for a in mnist["test"])
    config = TrainConfig(epochs=2, learning_rate=1e-3, seed=3, seeds=2)
    state, history = fit(config, train, test)
    assert np.shape(history["test_accuracy"]) == (2, 2) and np.shape(history["test_class_accuracy"]) == (2, 2, 10)
    for i in range(2):
        single_state, single = fit(TrainConfig(epochs=2, learning_rate=1e-3, seed=3 + i), train, test)
        mine = seed_history(history, i)
        for k in METRIC_KEYS:  # vmapped matmuls may round differently: close, not bit for bit
            np.testing.assert_allclose(mine[k], single[k], rtol=1e-4, atol=2e-3 if "accuracy" in k else 0)
        np.testing.assert_allclose(mine["test_class_accuracy"], single["test_class_accuracy"], atol=0.02)
        for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(single_state.params)):
            np.testing.assert_allclose(a[i], b, atol=2e-4)  # a fifth of one Adam step at lr 1e-3
    assert history["train_loss"][-1][0] != history["train_loss"][-1][1]  # the seeds really differ


def test_format_epoch_shows_mean_and_std_over_seeds():
    record = {"train_loss": [1.0, 2.0, 3.0], "train_accuracy": [0.5, 0.5, 0.5],
              "test_loss": [0.25, 0.75, 0.5], "test_accuracy": [0.9, 0.8, 0.7]}
    assert format_epoch(3, record) == ("[epoch  3] Train loss: 2.0000 +- 1.0000 / accuracy: 0.5000 +- 0.0000"
                                       " | Test loss: 0.5000 +- 0.2500 / accuracy: 0.8000 +- 0.1000")


def test_seeds_must_be_positive():
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        TrainConfig(seeds=0)

import dataclasses

import jax
import numpy as np
import optax
import pytest
from conftest import SMALL

from mnist_jax import history as hist
from mnist_jax.checkpoints import CheckpointError, Checkpointer
from mnist_jax.config import TrainConfig
from mnist_jax.train import initial_state

CONFIG = TrainConfig(epochs=1, **SMALL)


def a_history(epochs: int) -> hist.History:
    record = {"train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.4, "test_accuracy": 0.9,
              "epoch_seconds": 1.0, "test_class_accuracy": [0.9] * 10}
    history = hist.empty()
    for _ in range(epochs):
        history = hist.append(history, record)
    return history


def test_save_then_restore_gives_back_the_state_and_history(tmp_path):
    state = initial_state(CONFIG)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(2, state, a_history(2))
    checkpointer.close()
    template = initial_state(dataclasses.replace(CONFIG, seed=9))
    restored, history = Checkpointer(tmp_path / "ckpt").restore_latest(template)
    assert history == a_history(2)
    for a, b in zip(jax.tree_util.tree_leaves(restored.params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(restored.key), jax.random.key_data(state.key))


def test_a_history_extended_while_the_save_is_pending_is_saved_as_it_was(tmp_path):
    """Orbax serializes asynchronously: the caller's next epoch must not leak into the checkpoint.

    The manager's save is held back until close(), the most asynchronous Orbax could be.
    """
    checkpointer = Checkpointer(tmp_path / "ckpt")
    pending = []
    save = checkpointer.manager.save
    checkpointer.manager.save = lambda *args, **kwargs: pending.append((args, kwargs))
    history = a_history(1)
    checkpointer.save(1, initial_state(CONFIG), history)
    history["train_loss"].append(0.3)  # what the next epoch does to the caller's lists
    for args, kwargs in pending:
        save(*args, **kwargs)
    checkpointer.close()
    _, restored = Checkpointer(tmp_path / "ckpt").restore_latest(initial_state(CONFIG))
    assert restored["train_loss"] == [0.5]


def test_only_the_last_few_checkpoints_are_kept(tmp_path):
    checkpointer = Checkpointer(tmp_path / "ckpt", keep=2)
    state = initial_state(CONFIG)
    for epoch in (1, 2, 3):
        checkpointer.save(epoch, state, a_history(epoch))
    checkpointer.close()
    assert checkpointer.latest_epoch() == 3
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [2, 3]


def test_checkpoint_of_another_model_is_refused(tmp_path):
    state = initial_state(CONFIG)
    other = state.replace(params={**state.params, "linear": {"kernel": np.zeros((1600, 5), np.float32),
                                                             "bias": np.zeros(5, np.float32)}})
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(1, other.replace(opt_state=optax.adam(1e-3).init(other.params)), a_history(1))
    checkpointer.close()
    with pytest.raises(CheckpointError, match="cannot restore checkpoint"):
        Checkpointer(tmp_path / "ckpt").restore_latest(initial_state(CONFIG))


def test_a_history_that_does_not_match_its_checkpoint_is_refused(tmp_path):
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(2, initial_state(CONFIG), a_history(3))
    checkpointer.close()
    with pytest.raises(CheckpointError, match="history does not match"):
        Checkpointer(tmp_path / "ckpt").restore_latest(initial_state(CONFIG))


def test_no_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpointer(tmp_path / "empty", create=False).restore_latest(initial_state(CONFIG))
    assert not (tmp_path / "empty").exists()

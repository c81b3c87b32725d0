import dataclasses
import time

import jax
import numpy as np
import optax
import pytest
from conftest import SMALL, a_record

from mnist_jax.config import TrainConfig
from mnist_jax.fast.programs import initial_state
from mnist_jax.run import history as hist
from mnist_jax.run.checkpoints import Checkpointer, CheckpointError

CONFIG = TrainConfig(epochs=1, **SMALL)


def a_history(epochs: int) -> hist.History:
    record = a_record()
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
    restored, history, epoch, damaged = Checkpointer(tmp_path / "ckpt").restore_latest(template)
    assert history == a_history(2) and epoch == 2 and damaged == ()
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
    restored = Checkpointer(tmp_path / "ckpt").restore_latest(initial_state(CONFIG))
    assert restored.history["train_loss"] == [0.5]


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


def flip_a_bit_of_the_arrays(checkpoint_dir) -> None:
    """One bit flipped in the middle of the checkpoint's largest file: the OCDBT data of its arrays."""
    largest = max((p for p in checkpoint_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    content = bytearray(largest.read_bytes())
    content[len(content) // 2] ^= 0x10
    largest.write_bytes(bytes(content))


def test_a_flipped_bit_is_caught_and_the_newest_intact_checkpoint_is_used(tmp_path):
    state = initial_state(CONFIG)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    for epoch in (1, 2, 3):
        checkpointer.save(epoch, state, a_history(epoch))
        checkpointer.wait()
    checkpointer.close()
    flip_a_bit_of_the_arrays(tmp_path / "ckpt" / "3")
    flip_a_bit_of_the_arrays(tmp_path / "ckpt" / "2")
    reader = Checkpointer(tmp_path / "ckpt", create=False)
    with pytest.raises(CheckpointError, match=r"ckpt/3: damaged checkpoint \(its content does not match the SHA-256"):
        reader.restore(3, state)
    restored = reader.restore_latest(state)
    assert restored.epoch == 1 and restored.history == a_history(1)
    assert [str(e).split(":")[0] for e in restored.damaged] == [str(tmp_path / "ckpt" / "3"), str(tmp_path / "ckpt" / "2")]
    flip_a_bit_of_the_arrays(tmp_path / "ckpt" / "1")
    with pytest.raises(CheckpointError, match=r"ckpt/3: damaged checkpoint .* \(and the 2 older ones too\)$"):
        reader.restore_latest(state)


def test_saving_over_a_damaged_checkpoint_replaces_it(tmp_path):
    state = initial_state(CONFIG)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(1, state, a_history(1))
    checkpointer.close()
    flip_a_bit_of_the_arrays(tmp_path / "ckpt" / "1")
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(1, state, a_history(1))  # what a resume from scratch does after skipping it
    checkpointer.close()
    assert checkpointer.restore_latest(state).epoch == 1


def test_a_failed_write_is_one_error_at_once_and_keeps_the_earlier_checkpoints(tmp_path):
    """The checkpoint directory turned into a file under a running trainer: Orbax, left to make the
    step directory asynchronously, waited 300 s on its other threads. Here the save fails at once."""
    state = initial_state(CONFIG)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(1, state, a_history(1))
    checkpointer.wait()
    (tmp_path / "ckpt").rename(tmp_path / "moved")
    (tmp_path / "ckpt").write_text("a file where the checkpoints were")
    began = time.monotonic()
    with pytest.raises(CheckpointError, match=r"ckpt/2: cannot write the checkpoint \(Not a directory\); "
                                              r"the earlier checkpoints are kept$"):
        checkpointer.save(2, state, a_history(2))
    checkpointer.close()
    assert time.monotonic() - began < 60
    (tmp_path / "ckpt").unlink()
    (tmp_path / "moved").rename(tmp_path / "ckpt")
    assert Checkpointer(tmp_path / "ckpt", create=False).restore_latest(state).epoch == 1


def test_a_wait_that_returns_without_the_checkpoint_in_place_is_an_error(tmp_path):
    """Orbax's wait can return quietly after a failure it already reported: the checkpoint's own
    directory, which Orbax renames into place when the checkpoint is complete, decides."""
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.manager.save = lambda *args, **kwargs: True  # a save that never completes
    checkpointer.save(1, initial_state(CONFIG), a_history(1))
    with pytest.raises(CheckpointError, match=r"ckpt/1: the checkpoint was not written; the earlier checkpoints"):
        checkpointer.wait()
    checkpointer.close()

"""The training loop (mnist_jax.trainer) in-process, on the small setting shared by the suite."""

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import SMALL

from mnist_jax import plotting, trainer
from mnist_jax.checkpoints import CheckpointError, Checkpointer
from mnist_jax.config import TrainConfig
from mnist_jax.history import METRIC_KEYS, seed_history
from mnist_jax.runs import Run, read_record
from mnist_jax.train import initial_state

CONFIG = TrainConfig(epochs=2, **SMALL)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.fixture(scope="module")
def straight(small_fits):
    """Two epochs of the small setting, straight through, in memory."""
    return small_fits[1]


def test_the_programs_are_built_once_per_model_and_batch_sizes():
    assert trainer.programs(CONFIG, None) is trainer.programs(dataclasses.replace(CONFIG, epochs=7, seed=3), None)
    assert trainer.programs(CONFIG, None) is not trainer.programs(dataclasses.replace(CONFIG, batch_size=128), None)


def test_a_progress_bar_gets_every_chunk_and_changes_no_number(straight, small_data):
    calls = []
    outcome = trainer.train_and_evaluate(CONFIG, None, *small_data, on_progress=lambda *a: calls.append(a))
    assert outcome.status == "finished"
    assert outcome.history == {**straight[1], "epoch_seconds": outcome.history["epoch_seconds"]}
    assert leaves_equal(outcome.state.params, straight[0].params)
    # 1024 examples in batches of 256: 4 batches per epoch, one per chunk, then the epoch's end.
    assert calls == [(e, done, 4) for e in (0, 1) for done in range(5)]
    # No program calls back to the host, so JAX keeps them in the persistent compilation cache.
    cached = [p.name for p in Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).iterdir()]
    assert any(name.startswith("jit_chunk_fn-") for name in cached), cached


def test_the_notebooks_settings_learn_on_the_real_digits(mnist):
    """The first quarter of an epoch at the notebook's settings (batch 512, Adam 1e-4): 30 steps take
    the test accuracy from chance to about 0.55 here (the notebook's full first epoch: 0.7933)."""
    records = []
    config = TrainConfig(epochs=1, train_examples=15_360)  # the first 30 batches of the epoch
    _, history = trainer.fit(config, mnist["train"], mnist["test"], on_epoch=lambda e, r: records.append((e, r)))
    assert [e for e, _ in records] == [0] and records[0][1]["test_accuracy"] == history["test_accuracy"][0]
    assert history["test_accuracy"][0] >= 0.45
    # Below ln(10) = 2.30, the loss of a uniform guess, and the test loss (after the steps) below the
    # train loss (averaged over them).
    assert history["test_loss"][0] < history["train_loss"][0] < 2.29
    per_class = history["test_class_accuracy"][0]
    assert len(per_class) == 10 and all(0 <= a <= 1 for a in per_class)


def test_a_run_stopped_after_an_epoch_resumes_bit_for_bit(straight, small_data, tmp_path):
    run = Run.create(tmp_path / "run", CONFIG)
    stopped = trainer.train_and_evaluate(CONFIG, run, *small_data, should_stop=lambda: True)
    assert stopped.status == "stopped" and len(stopped.history["train_loss"]) == 1
    record = read_record(run.path)
    assert not record.finished and len(record.history["train_loss"]) == 1
    assert not (run.path / "params.msgpack").exists()

    resumed = trainer.train_and_evaluate(CONFIG, run, *small_data, start=trainer.restore(CONFIG, run))
    assert resumed.status == "finished" and resumed.first_epoch == 1
    for k in METRIC_KEYS:
        assert resumed.history[k] == straight[1][k]
    assert leaves_equal(resumed.state.params, straight[0].params)
    record = read_record(run.path)
    assert record.finished and record.system["backend"] == jax.default_backend()
    for name in ("params.msgpack", "training.svg", "classification.svg"):
        assert (run.path / name).stat().st_size > 0


def test_history_is_marked_finished_only_after_every_other_file(small_data, tmp_path, monkeypatch):
    run = Run.create(tmp_path / "run", CONFIG)

    def broken_figure(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(plotting, "classification_sample", broken_figure)
    with pytest.raises(OSError, match="disk full"):
        trainer.train_and_evaluate(dataclasses.replace(CONFIG, epochs=1), run, *small_data)
    assert not read_record(run.path).finished
    # The last epoch is checkpointed, so a resume with nothing left to train still finishes the run.
    monkeypatch.undo()
    outcome = trainer.train_and_evaluate(dataclasses.replace(CONFIG, epochs=1), run, *small_data,
                                         start=trainer.restore(CONFIG, run))
    assert outcome.status == "finished" and outcome.first_epoch == 1 and read_record(run.path).finished


def test_divergence_keeps_the_last_good_checkpoint(small_data, tmp_path):
    config = dataclasses.replace(CONFIG, epochs=2)
    run = Run.create(tmp_path / "run", config)
    trainer.train_and_evaluate(config, run, *small_data, should_stop=lambda: True)
    poisoned_run = Run(run.path, dataclasses.replace(config, learning_rate=1e9))
    outcome = trainer.train_and_evaluate(poisoned_run.config, poisoned_run, *small_data,
                                         start=trainer.restore(config, run))
    assert outcome.status == "diverged" and outcome.state is None
    assert "epoch 1:" in outcome.message and "last good checkpoint (after epoch 0) is kept" in outcome.message
    restored = Checkpointer(run.checkpoint_dir).restore_latest(initial_state(config))
    assert len(restored.history["train_loss"]) == 1
    assert all(np.isfinite(p).all() for p in jax.tree_util.tree_leaves(restored.state.params))


def test_absurd_learning_rate_diverges_in_epoch_zero(small_data):
    """--lr 1e9 gives a finite loss of about 1e30: no model at all, though no NaN either."""
    with pytest.raises(ArithmeticError, match=r"epoch 0: the loss became \d\.\d+e\+\d\d \(train\) .* beyond 23 "
                                              r"\(ten times a uniform guess's\); .*no checkpoint was written"):
        trainer.fit(dataclasses.replace(CONFIG, epochs=1, learning_rate=1e9), *small_data)


def test_history_never_claims_an_epoch_whose_checkpoint_is_not_committed(small_data, tmp_path, monkeypatch):
    """Orbax's saves are held back until someone waits for them, the most asynchronous Orbax could
    be; each time history.json is written, every epoch it lists must have a committed checkpoint."""
    held = []
    save, wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished

    def held_save(manager, *args, **kwargs):
        held.append((manager, args, kwargs))
        return True

    def wait_then_save(manager):
        while held:
            held_manager, args, kwargs = held.pop(0)
            save(held_manager, *args, **kwargs)
        return wait(manager)

    claims, write_history = [], Run.write_history

    def spy(self, history):
        epochs = len(history["train_loss"])
        claims.append((epochs, (self.checkpoint_dir / str(epochs)).is_dir()))
        write_history(self, history)

    monkeypatch.setattr(ocp.CheckpointManager, "save", held_save)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait_then_save)
    monkeypatch.setattr(Run, "write_history", spy)
    config = dataclasses.replace(CONFIG, epochs=2)
    with Run.create(tmp_path / "run", config) as run:
        outcome = trainer.train_and_evaluate(config, run, *small_data, should_stop=lambda: True)
    assert outcome.status == "stopped" and claims == [(1, True)]


def test_a_second_ctrl_c_stops_mid_epoch_with_every_printed_epoch_resumable(straight, small_data, tmp_path):
    printed, progress = [], []

    def stop_now():  # the second Ctrl-C comes after the first chunk of epoch 1
        return progress[-1][:2] == (1, 1)

    with Run.create(tmp_path / "run", CONFIG) as run:
        outcome = trainer.train_and_evaluate(CONFIG, run, *small_data, on_progress=lambda *a: progress.append(a),
                                             on_epoch=lambda e, r: printed.append(e), stop_now=stop_now)
        assert outcome.status == "stopped" and outcome.state is None and printed == [0]
        assert progress[-1] == (1, 1, 4)
        assert read_record(run.path).history["train_loss"] == outcome.history["train_loss"]
        resumed = trainer.train_and_evaluate(CONFIG, run, *small_data, start=trainer.restore(CONFIG, run))
    assert resumed.first_epoch == 1 and resumed.history["train_loss"] == straight[1]["train_loss"]
    assert leaves_equal(resumed.state.params, straight[0].params)


def test_a_failed_checkpoint_write_stops_training_at_once(small_data, tmp_path):
    """The checkpoint directory becomes unwritable as epoch 1 starts (a file takes its place)."""
    def break_the_checkpoints(epoch, done, total):
        if (epoch, done) == (1, 0):
            (run.path / "checkpoints").rename(run.path / "moved")
            (run.path / "checkpoints").write_text("")

    config = dataclasses.replace(CONFIG, epochs=3)
    with Run.create(tmp_path / "run", config) as run:
        with pytest.raises(CheckpointError, match=r"checkpoints/2: cannot write the checkpoint \(Not a directory\)"):
            trainer.train_and_evaluate(config, run, *small_data, on_progress=break_the_checkpoints)
    record = read_record(run.path)
    assert len(record.history["train_loss"]) == 1 and not record.finished  # nothing claims epoch 1
    assert Checkpointer(run.path / "moved", create=False).latest_epoch() == 1


def test_seed_i_of_a_multi_seed_run_is_the_single_run_with_that_seed(straight, small_data, tmp_path):
    config = dataclasses.replace(CONFIG, seeds=2)
    run = Run.create(tmp_path / "run", config)
    outcome = trainer.train_and_evaluate(config, run, *small_data)
    history = outcome.history
    assert np.shape(history["test_accuracy"]) == (2, 2) and np.shape(history["test_class_accuracy"]) == (2, 2, 10)
    mine = seed_history(history, 0)
    single_state, single = straight
    for k in METRIC_KEYS:  # vmapped matmuls may round differently: close, not bit for bit
        np.testing.assert_allclose(mine[k], single[k], rtol=1e-4, atol=2e-3 if "accuracy" in k else 0)
    for a, b in zip(jax.tree_util.tree_leaves(outcome.state.params), jax.tree_util.tree_leaves(single_state.params)):
        np.testing.assert_allclose(a[0], b, atol=2e-4)  # a fifth of one Adam step at lr 1e-3
    assert history["train_loss"][-1][0] != history["train_loss"][-1][1]  # the seeds really differ
    # Each seed's own run is written, and the run is marked finished after them.
    for i, seed in enumerate((0, 1)):
        own = json.loads((run.path / f"seed-{seed}" / "history.json").read_text())
        assert own["finished"] and own["config"]["seed"] == seed and own["config"]["seeds"] == 1
        assert own["history"]["test_accuracy"] == [epoch[i] for epoch in history["test_accuracy"]]
    assert read_record(run.path).finished

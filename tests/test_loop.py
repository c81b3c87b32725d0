"""The training loop (mnist_jax.run.loop) in memory, on the small setting shared by the suite."""

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL

from mnist_jax import optimizer
from mnist_jax.config import TrainConfig
from mnist_jax.fast import programs
from mnist_jax.hooks import Hook
from mnist_jax.run import loop
from mnist_jax.run.history import NOTEBOOK_KEYS, divergence_message, seed_history

CONFIG = TrainConfig(epochs=2, **SMALL)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def without_seconds(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch_seconds"}


@pytest.fixture(scope="module")
def straight(small_fits):
    """Two epochs of the small setting, straight through, in memory."""
    return small_fits[1]


class Recorder(Hook):
    """Every call of the loop, in order; stops as `stop_at` says."""

    def __init__(self, chunks: int = 1, stop_at=None):
        self.progress_chunks, self.stop_at, self.calls = chunks, stop_at, []

    def on_epoch_dispatched(self, epoch):
        self.calls.append(("dispatched", epoch))

    def on_progress(self, epoch, done, total):
        self.calls.append(("progress", epoch, done, total))

    def on_epoch(self, epoch, record, state, history):
        self.calls.append(("epoch", epoch, record["test_accuracy"] == history["test_accuracy"][-1]))

    def stop(self):
        return self.stop_at(self.calls) if self.stop_at else None

    def on_end(self, outcome):
        self.calls.append(("end", outcome.status))


def test_the_programs_are_built_once_per_setting_and_epoch_length():
    built = programs.train_programs(CONFIG, 4)
    assert built is programs.train_programs(dataclasses.replace(CONFIG, seed=3, test_batch_size=7), 4)
    assert built is not programs.train_programs(CONFIG, 8)  # a schedule would span other steps
    assert built is not programs.train_programs(dataclasses.replace(CONFIG, epochs=7), 4)
    assert built is not programs.train_programs(dataclasses.replace(CONFIG, batch_size=128), 4)


def test_progress_chunks_get_every_call_and_change_no_number(straight, small_data):
    hook = Recorder(chunks=10)  # 4 batches per epoch: one chunk each
    outcome = loop.train(CONFIG, *small_data, hooks=[hook])
    assert outcome.status == "finished" and outcome.first_epoch == 0
    assert without_seconds(outcome.history) == without_seconds(straight[1])
    assert leaves_equal(outcome.state.params, straight[0].params)
    epochs = [[("progress", e, 0, 4), ("dispatched", e), *[("progress", e, done, 4) for done in (1, 2, 3, 4)],
               ("epoch", e, True)] for e in (0, 1)]
    assert hook.calls == [*epochs[0], *epochs[1], ("end", "finished")]
    # No program calls back to the host, so JAX keeps them in the persistent compilation cache.
    cached = [p.name for p in Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).iterdir()]
    assert any(name.startswith("jit_chunk_fn-") for name in cached), cached


def test_the_notebooks_settings_learn_on_the_real_digits(mnist):
    """The first 12 steps of an epoch at the notebook's settings (batch 512, Adam 1e-4) take the
    test accuracy from chance to about 0.35 here (the notebook's full first epoch: 0.7933)."""
    hook = Recorder()
    config = TrainConfig(epochs=1, train_examples=12 * 512, test_examples=1024)
    _, history = loop.fit(config, mnist["train"], mnist["test"], hooks=[hook])
    assert hook.calls == [("dispatched", 0), ("epoch", 0, True), ("end", "finished")]
    assert history["test_accuracy"][0] >= 0.25
    # Below ln(10) = 2.30, the loss of a uniform guess, and the test loss (after the steps) below the
    # train loss (averaged over them).
    assert history["test_loss"][0] < history["train_loss"][0] < 2.29
    per_class = history["test_class_accuracy"][0]
    assert len(per_class) == 10 and all(0 <= a <= 1 for a in per_class)


def test_a_run_stopped_after_an_epoch_continues_bit_for_bit(straight, small_data):
    hook = Recorder(stop_at=lambda calls: "after-epoch" if calls[-1][0] == "epoch" else None)
    stopped = loop.train(CONFIG, *small_data, hooks=[hook])
    assert stopped.status == "stopped" and len(stopped.history["train_loss"]) == 1
    assert hook.calls[-1] == ("end", "stopped")
    resumed = loop.train(CONFIG, *small_data, start=(stopped.state, stopped.history))
    assert resumed.status == "finished" and resumed.first_epoch == 1
    assert without_seconds(resumed.history) == without_seconds(straight[1])
    assert leaves_equal(resumed.state.params, straight[0].params)


def test_a_stop_now_abandons_the_epoch_between_chunks(small_data):
    hook = Recorder(chunks=10, stop_at=lambda calls: "now" if ("progress", 1, 1, 4) in calls else None)
    outcome = loop.train(CONFIG, *small_data, hooks=[hook])
    assert outcome.status == "stopped" and outcome.state is None and len(outcome.history["train_loss"]) == 1
    assert hook.calls[-2:] == [("progress", 1, 1, 4), ("end", "stopped")]


def test_absurd_learning_rate_diverges_in_epoch_zero(small_data):
    """--lr 1e9 gives a finite loss of about 1e30: no model at all, though no NaN either."""
    with pytest.raises(ArithmeticError, match=r"epoch 0: the loss became \d\.\d+e\+\d\d \(train\) .* beyond 23 "
                                              r"\(ten times a uniform guess's\); .*no checkpoint was written"):
        loop.fit(dataclasses.replace(CONFIG, epochs=1, learning_rate=1e9), *small_data)


def test_a_divergence_from_adamws_weight_decay_names_it():
    """With adamw the weight decay can diverge a run as well as the rate: the message names both."""
    record = {"train_loss": 1e30, "test_loss": 1e30}
    assert divergence_message(0, record, None).endswith("; lower the learning rate; no checkpoint was written")
    assert "lower the learning rate or the weight decay (100000); the last good checkpoint (after epoch 2) is kept" in \
        divergence_message(3, record, 3, weight_decay=optimizer.weight_decay(
            dataclasses.replace(CONFIG, optimizer="adamw", weight_decay=1e5)))
    assert optimizer.weight_decay(dataclasses.replace(CONFIG, weight_decay=1e5)) is None  # Adam applies none


def test_a_sweeps_divergence_names_the_values_that_diverged():
    """--sweep lr=1e-3,30: the models train as one program, so one diverging ends the run; the
    message says which value it was and what to do."""
    record = {"train_loss": [0.3, float("nan")], "test_loss": [0.2, 1e30]}
    message = divergence_message(0, record, None, models=["learning_rate=0.001", "learning_rate=30"])
    assert message.startswith("epoch 0: the loss of learning_rate=30 became [nan] (train) / [1e+30] (test)")
    assert "lower the learning rate there, or leave it out; no checkpoint was written" in message


def test_seed_i_of_a_multi_seed_run_is_the_single_run_with_that_seed(small_fits):
    (state, history), (single_state, single) = small_fits[2], small_fits[1]
    assert np.shape(history["test_accuracy"]) == (2, 2) and np.shape(history["test_class_accuracy"]) == (2, 2, 10)
    mine = seed_history(history, 0)
    if programs.models_mapped():  # on a CPU the program trains the seeds in turn, each as the single run: bit for bit
        assert all(mine[k] == single[k] for k in NOTEBOOK_KEYS)
    for k in NOTEBOOK_KEYS:  # vmapped matmuls may round differently: close, not bit for bit
        np.testing.assert_allclose(mine[k], single[k], rtol=1e-4, atol=2e-3 if "accuracy" in k else 0)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(single_state.params)):
        np.testing.assert_allclose(a[0], b, atol=0 if programs.models_mapped() else 2e-4)  # 2e-4: a fifth of an Adam step
    assert history["train_loss"][-1][0] != history["train_loss"][-1][1]  # the seeds really differ


def test_the_nnx_model_trains_to_the_same_history_as_linen(small_fits, small_data):
    _, history = loop.fit(dataclasses.replace(CONFIG, model="nnx"), *small_data)
    for k in NOTEBOOK_KEYS:  # the same computation; XLA may fuse the two programs' ops differently
        np.testing.assert_allclose(history[k], small_fits[1][1][k], rtol=1e-5, atol=1e-6)


def test_more_steps_than_the_step_count_holds_is_refused_before_compiling(small_data):
    from mnist_jax.errors import ConfigError

    config = TrainConfig(**{**SMALL, "epochs": loop.MAX_STEPS // 4})  # 4 steps of 256 per epoch
    with pytest.raises(ConfigError, match=r"--epochs 536870912 of 4 steps is more steps than the step count holds"):
        loop.train(config, *small_data)

import numpy as np
import pytest
from conftest import a_record

from mnist_jax.config import TrainConfig
from mnist_jax.run import history as hist


def sums(loss_sum, correct, count, split="train"):
    """Per-batch (numerator, denominator) of the loss and accuracy, as a train or test step returns them."""
    return {f"{split}_loss": (np.asarray(loss_sum, np.float32), np.asarray(count)),
            f"{split}_accuracy": (np.asarray(correct), np.asarray(count))}


def test_format_epoch_is_the_notebooks_line():
    record = {"train_loss": 1.86761, "train_accuracy": 0.62521, "test_loss": 1.14804, "test_accuracy": 0.79331}
    assert hist.format_epoch(0, record) == (
        "[epoch  0] Train loss: 1.8676 / accuracy: 0.6252 | Test loss: 1.1480 / accuracy: 0.7933")
    assert hist.format_epoch(29, record).startswith("[epoch 29] ")


def test_format_epoch_appends_each_metric_with_a_printed_label():
    record = {"train_loss": 1.86761, "train_accuracy": 0.62521, "test_loss": 1.14804, "test_accuracy": 0.79331}
    notebook = hist.format_epoch(0, record)
    assert hist.format_epoch(0, {**record, "learning_rate": 1e-4}) == notebook  # declared, but not printed
    labelled = (*hist.METRICS, hist.Metric("train_grad_norm", None, "train", printed="grad norm"))
    assert hist.format_epoch(0, {**record, "train_grad_norm": 0.123456}, labelled) == notebook + " | grad norm: 0.1235"
    assert hist.format_epoch(0, {**record, "train_grad_norm": None}, labelled) == notebook + " | grad norm: n/a"
    assert hist.format_epoch(0, {**record, "train_grad_norm": [0.5, 0.7]}, labelled).endswith(
        " | grad norm: 0.6000 +- 0.1414")


def test_format_epoch_shows_mean_and_std_over_seeds():
    record = {"train_loss": [1.0, 2.0, 3.0], "train_accuracy": [0.5, 0.5, 0.5],
              "test_loss": [0.25, 0.75, 0.5], "test_accuracy": [0.9, 0.8, 0.7]}
    assert hist.format_epoch(3, record) == ("[epoch  3] Train loss: 2.0000 +- 1.0000 / accuracy: 0.5000 +- 0.0000"
                                            " | Test loss: 0.5000 +- 0.2500 / accuracy: 0.8000 +- 0.1000")


def test_summarize_weights_every_example_once():
    # Two batches: 512 examples at mean loss 1.0, then a short one of 96 at mean loss 2.0.
    batches = sums([512.0, 192.0], [256, 96], [512, 96])
    summary = hist.summarize(batches)
    assert summary["train_loss"] == pytest.approx(704 / 608)
    assert summary["train_accuracy"] == pytest.approx(352 / 608)
    stacked = {k: tuple(np.stack([a, a]) for a in v) for k, v in batches.items()}  # two seeds
    np.testing.assert_allclose(hist.summarize(stacked)["train_loss"], [704 / 608] * 2)


def test_epoch_record_and_append_leave_the_old_history_alone():
    confusion = np.diag([3, 0, 2, 0, 0, 0, 0, 0, 0, 1])
    confusion[1, 2] = 4
    record = hist.epoch_record(sums([8.0], [6], [8]), sums([8.0], [6], [8], "test"), confusion, seconds=1.5,
                               learning_rate=1e-3)
    assert record["train_loss"] == 1.0 and record["test_accuracy"] == 0.75 and record["epoch_seconds"] == 1.5
    assert record["test_class_accuracy"][:3] == [1.0, 0.0, 1.0]
    first = hist.append(hist.empty(), record)
    second = hist.append(first, record)
    assert hist.epochs_done(first) == 1 and hist.epochs_done(second) == 2
    assert hist.epoch_entry(second, 1) == {m.key: record[m.key] for m in hist.METRICS}
    assert record["train_batch_loss"] == [1.0] and "train_batch_loss" not in second  # the logs' only


def test_every_metric_is_declared_once_with_its_tag():
    keys = [m.key for m in hist.METRICS]
    tags = [m.tag for m in hist.METRICS if m.tag is not None]
    assert len(set(keys)) == len(keys) and len(set(tags)) == len(tags)
    assert set(hist.NOTEBOOK_KEYS) <= set(keys) and hist.LOSS_KEY in keys
    assert all((m.per_batch is None) == (m.split == "epoch") for m in hist.METRICS)


def test_a_history_written_before_a_metric_existed_is_filled_in_and_resumes():
    """An older run lacks a newer metric: `upgrade` fills it in with the metric's own value for older
    runs, so appending the next epoch (as a resume does) raises no KeyError."""
    grad_norm = hist.Metric("train_grad_norm", "train/grad_norm", "train", lambda s: (s.loss, 1.0),
                            older_runs=lambda config: None)
    metrics = (*hist.METRICS, grad_norm)
    old = {k: v for k, v in hist.append(hist.empty(), RECORD).items() if k not in ("learning_rate",)}
    upgraded = hist.upgrade(old, TrainConfig(learning_rate=3e-4), metrics)
    assert upgraded["learning_rate"] == [3e-4] and upgraded["train_grad_norm"] == [None]
    hist.check(upgraded, metrics=metrics)  # None is an older run's unknown value, allowed
    again = hist.append(upgraded, {**RECORD, "train_grad_norm": 0.5}, metrics)
    assert again["train_grad_norm"] == [None, 0.5] and hist.epochs_done(again) == 2
    with pytest.raises(ValueError, match=r"history.train_loss\[0\] must be a number >= 0, got None"):
        hist.check({**upgraded, "train_loss": [None]}, metrics=metrics)


@pytest.mark.parametrize("key,value,message", [
    ("test_accuracy", 1.7e308, r"test_accuracy\[0\] must be a number in 0 ... 1, got 1.7e\+308"),
    ("train_loss", -1.7e308, r"train_loss\[0\] must be a number >= 0, got -1.7e\+308"),
    ("test_loss", float("inf"), r"test_loss\[0\] must be a number >= 0, got inf"),
    ("epoch_seconds", 10**400, r"epoch_seconds\[0\] must be a number >= 0, got 10{29}\.\.\. \(401 characters\)"),
    ("test_class_accuracy", [0.5] * 9 + [-1e-9], r"test_class_accuracy\[0\]\[9\] must be a number in 0 ... 1"),
], ids=["accuracy", "loss", "infinity", "int-past-float", "class-accuracy"])
def test_values_no_run_can_write_are_refused_and_quoted_short(key, value, message):
    """A hand edit that passes as a float but no run writes (the plot drew +-1.7e308 as a ValueError
    from numpy's arange)."""
    with pytest.raises(ValueError, match=message):
        hist.check(hist.append(hist.empty(), {**RECORD, key: value}))


RECORD = a_record(train_loss=1.0, train_accuracy=0.5, test_loss=1.1, test_accuracy=0.6, epoch_seconds=2.0,
                  test_class_accuracy=[0.5] * 10, learning_rate=1e-4)


def test_a_loss_that_is_not_finite_or_far_above_a_uniform_guess_has_diverged():
    record = {"train_loss": 2.31, "test_loss": 1.0}  # about ln 10: a run that has not learned yet
    assert not hist.diverged(record)
    assert not hist.diverged({**record, "train_loss": [0.1, 23.0]})
    assert hist.diverged({**record, "test_loss": [0.5, float("nan")]})
    assert hist.diverged({**record, "train_loss": float("inf")})
    assert hist.diverged({**record, "train_loss": 9.8e30})  # what --lr 1e9 gives: finite, and no model
    assert hist.diverged({**record, "test_loss": [0.5, 23.1]})


def test_seed_history_picks_one_seed_and_shares_the_seconds():
    history = {"train_loss": [[1.0, 2.0], [0.5, 0.6]], "epoch_seconds": [3.0, 2.0],
               "test_class_accuracy": [[[1.0] * 10, [0.5] * 10]] * 2}
    assert hist.seed_history(history, 1) == {"train_loss": [2.0, 0.6], "epoch_seconds": [3.0, 2.0],
                                             "test_class_accuracy": [[0.5] * 10] * 2}


def test_class_accuracy_is_recall_per_true_class():
    confusion = np.zeros((10, 10), int)
    confusion[3, 3], confusion[3, 5] = 3, 1
    accuracy = hist.class_accuracy(confusion)
    assert accuracy[3] == 0.75 and accuracy[0] == 0.0

"""The validation split (--validation-examples): held out once for good, never trained on, named in
the run's record, and the only accuracy that choices read where it exists; the test set is then
only reported."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import SMALL, a_record

from mnist_jax import sweep
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.run import experiment, loop
from mnist_jax.run import history as hist

# 1,280 examples less 256 held out: the suite's small setting's 1,024, so its programs are reused.
CONFIG = TrainConfig(epochs=2, validation_examples=256, **{**SMALL, "train_examples": 1280})


def test_the_held_out_examples_are_one_fixed_choice_for_every_seed():
    held_out = loop.validation_indices(1024, 256)
    assert len(np.unique(held_out)) == 256 and np.all(np.diff(held_out) > 0) and held_out.max() < 1024
    np.testing.assert_array_equal(held_out, loop.validation_indices(1024, 256))  # no seed reaches it
    with pytest.raises(ConfigError, match="--validation-examples 1024 leaves none of the 1024 training examples"):
        loop.validation_indices(1024, 1024)


def test_the_held_out_examples_never_train(small_data):
    """Training with 256 of 1,280 examples held out is training on the other 1,024, bit for bit."""
    (train_images, train_labels), test = small_data
    _, history = loop.fit(CONFIG, (train_images, train_labels), test)
    kept = np.setdiff1d(np.arange(1280), loop.validation_indices(1280, 256))
    plain = dataclasses.replace(CONFIG, validation_examples=None, train_examples=None)
    _, without = loop.fit(plain, (train_images[kept], train_labels[kept]), test)
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert history[key] == without[key], key
    assert len(history["validation_accuracy"]) == 2 and all(0.1 < a < 1 for a in history["validation_accuracy"])
    assert without["validation_accuracy"] == [None, None]


def test_choices_read_the_validation_split_and_the_test_set_only_reports():
    history = {k: [v] for k, v in a_record(test_accuracy=0.99, validation_accuracy=0.95, validation_loss=0.2).items()}
    assert hist.chosen_on(history) == "validation_accuracy"
    assert not hist.reached(history, 0.97) and hist.reached(history, 0.95)  # the test set's 0.99 is not read
    plain = {**history, "validation_accuracy": [None], "validation_loss": [None]}
    assert hist.chosen_on(plain) == "test_accuracy" and hist.reached(plain, 0.97)
    # A sweep's best is the value best on the held-out examples, though another tests better.
    config = TrainConfig(epochs=1, sweep="lr=1e-3,3e-3")
    swept = {k: [v] for k, v in a_record(seeds=2, test_accuracy=[0.99, 0.97], validation_accuracy=[0.95, 0.96]).items()}
    assert sweep.best_model(config, swept) == 1
    table = sweep.table(config, swept)
    assert table[0].endswith("| final validation accuracy (best chosen on it) |")
    assert "0.9600 **best**" in table[3] and "**best**" not in table[2]


def test_a_run_names_its_held_out_examples_and_where_its_threshold_was_chosen(data_dir, tmp_path):
    outcome = experiment.run(CONFIG, tmp_path / "run", RunOptions(data_dir=data_dir, tensorboard=False), hooks=[])
    assert outcome.status == "finished"
    record = json.loads((tmp_path / "run" / "history.json").read_text())
    assert record["validation_indices"] == loop.validation_indices(1280, 256).tolist()
    assert record["config"]["validation_examples"] == 256
    rule = record["unsure_rule"]
    assert rule["chosen_on"] == "the validation split" and rule["reported_on"] == "the test set"
    assert 0 <= rule["unsure_share_reported"] < 0.2 and record["not_a_digit"]["doubt_above"] > 0

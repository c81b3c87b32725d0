"""A run written by mnist-jax 0.2.0, before the layered redesign, is read, evaluated and resumed by
today's code: tests/fixtures/run-0.2 (its README.md says how it was made), the small setting stopped
after its first epoch of two. Bit for bit where this machine computes as the one that wrote it did
(environment.same_numerics), within 1e-5 elsewhere."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL
from test_cli import mnist_jax

from mnist_jax import metrics
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.fast import model_for, programs
from mnist_jax.run import environment, experiment, rundir
from mnist_jax.run import history as hist
from mnist_jax.steps import eval_batch_size

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.2"
CONFIG = TrainConfig(epochs=2, **SMALL)
TIMED = ("epoch_seconds",)  # the wall clock's: never the same twice


@pytest.fixture
def old_run(tmp_path) -> Path:
    """The fixture's run files, copied (a resume writes into its run): not its README.md or system.json."""
    run = tmp_path / "run-0.2"
    run.mkdir()
    shutil.copy2(FIXTURE / rundir.HISTORY_FILE, run)
    shutil.copytree(FIXTURE / rundir.CHECKPOINT_DIR, run / rundir.CHECKPOINT_DIR)
    return run


def recorded_history() -> dict:
    """The history as 0.2.0 wrote it in history.json, with the metrics declared since as unknown
    (None), as every reader of it sees it."""
    return hist.upgrade(json.loads((FIXTURE / rundir.HISTORY_FILE).read_text())["history"], CONFIG)


def same_bits_as_the_fixture() -> bool:
    # 0.2.0 records where a run ran only when it finishes: the writing process's record is system.json.
    return environment.same_numerics(json.loads((FIXTURE / "system.json").read_text()))


def assert_same_numbers(got, expected) -> None:
    """Equal trees of numbers: bit for bit where this machine computes as the fixture's did, else within 1e-5."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        if same_bits_as_the_fixture():
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def untimed(history: dict, epoch: int) -> dict:
    return {k: v for k, v in metrics.epoch_entry(history, epoch).items() if k not in TIMED}


def evaluated(params, images, labels) -> dict[str, float]:
    """What evaluating `params` on these examples gives, with the config's test batch (as the loop and evaluate do)."""
    program = programs.eval_program(model_for(CONFIG), eval_batch_size(CONFIG.test_batch_size, len(labels)))
    summary = jax.device_get(metrics.summarize(program(params, images, labels)[0]))
    return {"test_loss": float(summary["test_loss"]), "test_accuracy": float(summary["test_accuracy"])}


def test_the_old_run_is_read_with_its_checkpoint_params(old_run, mnist):
    record = rundir.read_record(old_run)
    assert record.config == CONFIG and not record.finished and record.history == recorded_history()
    loaded, params = rundir.load_record_and_params(old_run)  # unfinished: from its checkpoint
    assert loaded.history == recorded_history()
    # They are the params the old run tested after epoch 0: they give its recorded test numbers.
    images, labels = (a[:CONFIG.test_examples] for a in mnist["test"])
    epoch_0 = metrics.epoch_entry(recorded_history(), 0)
    assert_same_numbers(evaluated(params, images, labels),
                        {"test_loss": epoch_0["test_loss"], "test_accuracy": epoch_0["test_accuracy"]})


def test_evaluate_prints_the_accuracy_of_the_checkpoint_params(old_run, data_dir, mnist):
    _, params = rundir.load_record_and_params(old_run)
    expected = evaluated(params, *mnist["test"])  # the whole test set, as evaluate does
    code, out, err = mnist_jax("evaluate", old_run, "--data-dir", data_dir)
    assert code == 0, err
    assert out == (f"Test loss: {expected['test_loss']:.4f} / accuracy: {expected['test_accuracy']:.4f} "
                   f"(10000 test examples, params after epoch 0)\n")


def test_the_old_run_resumes_to_what_the_new_code_trains(old_run, data_dir, small_fits):
    outcome = experiment.resume(old_run, {}, RunOptions(data_dir=data_dir, doubts=False), hooks=[])
    assert outcome.status == "finished" and outcome.first_epoch == 1
    saved = rundir.read_record(old_run)
    assert saved.finished and saved.history == outcome.history
    assert metrics.epoch_entry(outcome.history, 0) == metrics.epoch_entry(recorded_history(), 0)  # kept as recorded
    # The old code's epoch 0, and epoch 1 trained on from its checkpoint, are what a straight
    # 2-epoch run of the new code trains.
    straight, straight_history = small_fits[1]
    for epoch in (0, 1):
        assert_same_numbers(untimed(outcome.history, epoch), untimed(straight_history, epoch))
    assert_same_numbers(outcome.state.params, straight.params)

"""A metric added to METRICS leaves every earlier run readable, evaluable and resumable: a run
written before it, then read, evaluated and resumed with one more (the gradient norm of
docs/extending.md, printed in the epoch line)."""

import json
import re
import shutil
from pathlib import Path

import jax.numpy as jnp
import optax
import pytest
from conftest import SMALL

from mnist_jax import metrics
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.run import experiment, rundir
from mnist_jax.run import history as hist

CONFIG = TrainConfig(epochs=2, **SMALL)
GRAD_NORM = metrics.Metric("train_grad_norm", "train/grad_norm", "train",
                           per_batch=lambda step: (optax.tree.norm(step.grads), jnp.ones((), jnp.float32)),
                           older_runs=lambda config: None, printed="grad norm")


@pytest.fixture
def stopped_run(tmp_path):
    """CONFIG's run stopped after its first epoch (its history in its checkpoint), as version 0.2.0
    wrote it (tests/fixtures/run-0.2), before the metric existed."""
    fixture = Path(__file__).parent / "fixtures" / "run-0.2"
    (tmp_path / "run").mkdir()
    shutil.copy(fixture / rundir.HISTORY_FILE, tmp_path / "run")
    shutil.copytree(fixture / rundir.CHECKPOINT_DIR, tmp_path / "run" / rundir.CHECKPOINT_DIR)
    return tmp_path / "run"


def with_grad_norm(monkeypatch):
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, GRAD_NORM))


def test_a_run_from_before_a_metric_existed_is_read_evaluated_and_resumed(stopped_run, data_dir, monkeypatch,
                                                                          capsys):
    with_grad_norm(monkeypatch)
    # Read: history.json, and the checkpoint an unfinished run's params come from.
    assert rundir.read_record(stopped_run).history[GRAD_NORM.key] == [None]
    config, history, _ = rundir.load_run(stopped_run)
    assert config == CONFIG and history[GRAD_NORM.key] == [None]

    # (`mnist-jax evaluate` of this run: tests/test_older_runs_fixture.py.)
    # Resumed: the new metric is computed for the new epoch, unknown for the old one, and printed.
    outcome = experiment.resume(stopped_run, {}, RunOptions(data_dir=data_dir, doubts=False))
    assert outcome.status == "finished" and outcome.history[GRAD_NORM.key][0] is None
    assert outcome.history[GRAD_NORM.key][1] > 0
    printed = capsys.readouterr().out
    assert re.search(r"^\[epoch  0\] Train loss: .* \| grad norm: n/a$", printed, re.MULTILINE)
    assert re.search(rf"^\[epoch  1\] .* \| grad norm: {outcome.history[GRAD_NORM.key][1]:.4f}$", printed, re.MULTILINE)
    saved = json.loads((stopped_run / rundir.HISTORY_FILE).read_text())["history"]
    assert saved[GRAD_NORM.key] == outcome.history[GRAD_NORM.key]
    assert rundir.load_run(stopped_run)[1] == outcome.history


def test_the_bundled_weights_load_with_a_metric_added(monkeypatch):
    with_grad_norm(monkeypatch)
    config, history, params = rundir.load_run(rundir.BUNDLED_RUN)
    assert history[GRAD_NORM.key] == [None] * 30 and len(history["test_accuracy"]) == 30


def test_a_metric_that_every_run_must_have_makes_older_runs_unreadable_in_one_line(stopped_run, monkeypatch):
    """No `older_runs`: the metric claims every run has it, so an older run is refused, named."""
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, GRAD_NORM.__class__(
        "train_grad_norm", "train/grad_norm", "train", GRAD_NORM.per_batch)))
    with pytest.raises(rundir.RunError, match=r"history.json: not a valid run history: history lacks train_grad_norm$"):
        rundir.read_record(stopped_run)


def test_a_multi_seed_history_gets_a_value_per_seed_for_a_metric_known_in_older_runs():
    per_seed = metrics.Metric("train_margin", None, "train", GRAD_NORM.per_batch, older_runs=lambda config: 0.0)
    two_seeds = TrainConfig(seeds=2)
    old = {"train_loss": [[1.0, 1.1]], "train_accuracy": [[0.5, 0.6]], "test_loss": [[1.0, 1.2]],
           "test_accuracy": [[0.5, 0.4]]}
    history = hist.from_saved(old, two_seeds, (*hist.METRICS, per_seed))
    assert history["train_margin"] == [[0.0, 0.0]] and history["learning_rate"] == [two_seeds.learning_rate]
    sweep = TrainConfig(sweep="lr=1e-4,1e-3")  # each value's learning rate is its own
    assert hist.from_saved(old, sweep)["learning_rate"] == [[1e-4, 1e-3]]

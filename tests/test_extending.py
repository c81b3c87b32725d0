"""The changes of docs/extending.md, applied through the seams they name: a model, a metric, an
augmentation and a hook, all defined here, trained one small epoch, resumed and evaluated."""

import csv

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from conftest import SMALL, StopAfterFirst

from mnist_jax.run import history as hist
from mnist_jax.run import loop
from mnist_jax.config import TrainConfig
from mnist_jax.hooks import Hook
from mnist_jax.model import NUM_CLASSES, LinenModel


class MLP(nn.Module):
    """The model change: a two-layer perceptron on the flattened pixels."""

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(NUM_CLASSES)(nn.relu(nn.Dense(64)(x)))


# The metric change: each step's gradient norm, its epoch value the mean over the batches.
GRAD_NORM = hist.Metric("train_grad_norm", "train/grad_norm", "train",
                        per_batch=lambda step: (optax.tree.norm(step.grads), jnp.ones((), jnp.float32)),
                        older_runs=lambda config: None)


def random_contrast(key, images):
    """The augmentation change: each digit's ink scaled by its own factor in [0.6, 1]."""
    scale = jax.random.uniform(key, (images.shape[0], 1, 1, 1), minval=0.6, maxval=1.0)
    return (images.astype(jnp.float32) * scale).astype(jnp.uint8)


class CsvLog(Hook):
    """The hook change: each epoch's losses and accuracies appended to a CSV file."""

    COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")

    def __init__(self, path):
        self.path = path

    def on_epoch(self, epoch, record, state, history):
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if f.tell() == 0:
                writer.writerow(["epoch", *self.COLUMNS])
            writer.writerow([epoch, *(record[k] for k in self.COLUMNS)])


def test_a_model_a_metric_an_augmentation_and_a_hook_of_ones_own(small_data, tmp_path):
    config = TrainConfig(epochs=2, **SMALL)
    seams = {"model": LinenModel(MLP()), "metrics": (*hist.METRICS, GRAD_NORM), "augment": random_contrast}
    log = CsvLog(tmp_path / "metrics.csv")
    first = loop.train(config, *small_data, hooks=[log, StopAfterFirst()], **seams)
    assert first.status == "stopped" and hist.epochs_done(first.history) == 1
    assert jax.tree_util.tree_structure(first.state.params) != jax.tree_util.tree_structure(
        loop.initial_state(config).params)  # the MLP's own params, not the CNN's

    # Resumed from a history written before the metric existed: it is filled in, not a KeyError.
    older = {k: v for k, v in first.history.items() if k != GRAD_NORM.key}
    resumed = loop.train(config, *small_data, start=(first.state, older), hooks=[log], **seams)
    assert resumed.status == "finished" and resumed.history[GRAD_NORM.key][0] is None
    assert np.isfinite(resumed.history[GRAD_NORM.key][1]) and resumed.history[GRAD_NORM.key][1] > 0
    assert resumed.history["test_accuracy"][1] > 0.5  # learning: a guess scores 0.1

    # Evaluated through the same seam: the record's test numbers again.
    test_images, test_labels = (a[:config.test_examples] for a in small_data[1])
    sums, confusion = loop.eval_program(seams["model"], 1024)(resumed.state.params, test_images, test_labels)
    summary = hist.summarize(jax.device_get(sums))
    assert float(summary["test_accuracy"]) == resumed.history["test_accuracy"][1]
    assert int(np.trace(confusion)) == round(resumed.history["test_accuracy"][1] * 1024)

    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[1]["test_accuracy"]) == resumed.history["test_accuracy"][1]

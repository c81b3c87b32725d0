"""The weights bundled in the package (mnist_jax/weights/notebook): the notebook's own run, which
`evaluate` and `predict` use when given no run directory."""

import jax
import numpy as np
import pytest

from mnist_jax import history as hist
from mnist_jax import loop, rundir
from mnist_jax.config import TrainConfig
from mnist_jax.models import model_for


def test_the_bundled_run_is_the_notebooks_30_epochs():
    config, history, params = rundir.load_run(rundir.BUNDLED_RUN)  # checks the params' SHA-256 too
    assert config == TrainConfig()  # the notebook's settings, seed 0
    assert hist.epochs_done(history) == 30 and rundir.read_record(rundir.BUNDLED_RUN).finished
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 34_826
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(params))


def test_the_bundled_weights_give_their_recorded_test_loss_and_accuracy(mnist):
    """Bit for bit on the platform that trained them (the record says which); within float
    differences elsewhere, e.g. TF32 matmuls on a GPU."""
    record = rundir.read_record(rundir.BUNDLED_RUN)
    _, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    metrics, _ = loop.eval_program(model_for(record.config), record.config.test_batch_size)(params, *mnist["test"])
    summary = hist.summarize(jax.device_get(metrics))
    loss, accuracy = record.history["test_loss"][-1], record.history["test_accuracy"][-1]
    device = jax.local_devices()[0]
    if (record.system["backend"], record.system["device"]) == (jax.default_backend(), device.device_kind):
        assert (float(summary["loss"]), float(summary["accuracy"])) == (loss, accuracy)
    else:
        assert float(summary["loss"]) == pytest.approx(loss, rel=0.05)
        assert float(summary["accuracy"]) == pytest.approx(accuracy, abs=2e-3)
    assert accuracy >= 0.98  # the notebook's own run ended at 0.9836

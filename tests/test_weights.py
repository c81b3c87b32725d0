"""The weights bundled in the package (mnist_jax/weights/notebook): the notebook's own run, which
`evaluate` and `predict` use when given no run directory."""

import jax
import numpy as np
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for, programs
from mnist_jax.run import environment, rundir
from mnist_jax.run import history as hist


def test_the_bundled_run_is_the_notebooks_30_epochs():
    config, history, params = rundir.load_run(rundir.BUNDLED_RUN)  # checks the params' SHA-256 too
    assert config == TrainConfig()  # the notebook's settings, seed 0
    assert hist.epochs_done(history) == 30 and rundir.read_record(rundir.BUNDLED_RUN).finished
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 34_826
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(params))


def test_the_bundled_weights_give_their_recorded_test_loss_and_accuracy(mnist):
    """Bit for bit where the record's numerics fields (`environment.NUMERICS_FIELDS`: device, JAX
    and jaxlib, XLA_FLAGS, the CPU's vendor, family, model and vector instruction sets, threads)
    match this process's; elsewhere within float rounding. On another CPU (AVX-512 against AVX2
    moved the loss by 1.4e-7 of itself): loss within 1e-4 relative, accuracy within 2 of 10,000
    test images (abs 2.5e-4, as float32 accuracies are not exact). On a GPU (TF32 matmuls, other
    kernels): loss within 5%, accuracy within 2e-3. The test prints which case ran (`pytest -rA`
    shows it) and names it when it fails."""
    record = rundir.read_record(rundir.BUNDLED_RUN)
    _, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    metrics, _ = programs.eval_program(model_for(record.config), record.config.test_batch_size)(params, *mnist["test"])
    summary = hist.summarize(jax.device_get(metrics))
    loss, accuracy = record.history["test_loss"][-1], record.history["test_accuracy"][-1]
    got = (float(summary["test_loss"]), float(summary["test_accuracy"]))
    if environment.same_numerics(record.system):
        case = "same numerics as the record: bit for bit"
        assert got == (loss, accuracy), case
    elif jax.default_backend() == "cpu":
        case = "another CPU: within float rounding (loss rel 1e-4, accuracy abs 2.5e-4, 2 of 10,000 images)"
        assert got[0] == pytest.approx(loss, rel=1e-4), case
        assert got[1] == pytest.approx(accuracy, abs=2.5e-4), case
    else:
        case = "an accelerator: loss rel 0.05, accuracy abs 2e-3"
        assert got[0] == pytest.approx(loss, rel=0.05), case
        assert got[1] == pytest.approx(accuracy, abs=2e-3), case
    print(case)
    assert accuracy >= 0.98  # the notebook's own run ended at 0.9836

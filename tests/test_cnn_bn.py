"""The second network, cnn_bn (mnist_jax.networks.NormalizedClassifier): batch norm's running
statistics carried in the params and the checkpoints, dropout drawn from each step's own key;
trained, stopped and resumed bit for bit, evaluated, and exported through the command line."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL, init_params
from test_cli import mnist_jax
from test_experiment import Stop

from mnist_jax.apps import inference
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fast import model_for
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.run import experiment, rundir

CONFIG = TrainConfig(network="cnn_bn", epochs=2, **{**SMALL, "batch_size": 128, "train_examples": 512, "test_examples": 512})


def leaves(tree):
    return jax.tree_util.tree_leaves(tree)


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cnn_bn") / "run"
    return run_dir, experiment.run(CONFIG, run_dir, RunOptions(data_dir=data_dir, doubts=False), hooks=[])


def test_the_running_statistics_train_and_are_what_evaluation_uses(straight, mnist):
    _, outcome = straight
    params = jax.device_get(outcome.state.params)
    fresh = init_params(model_for(CONFIG), CONFIG.seed)
    assert set(params) == {"params", "batch_stats"}
    for before, after in zip(leaves(fresh["batch_stats"]), leaves(params["batch_stats"])):
        assert not np.allclose(before, after)  # every batch moved them
    images = mnist["test"][0][:256]
    apply = quick_jit(model_for(CONFIG).apply)
    evaluated = apply(params, images)
    with_fresh_statistics = apply({**params, "batch_stats": fresh["batch_stats"]}, images)
    assert not np.allclose(evaluated, with_fresh_statistics)  # evaluation reads the running statistics
    assert float(np.mean(np.argmax(evaluated, -1) == mnist["test"][1][:256])) > 0.5  # chance: 0.1


def test_dropout_is_drawn_from_the_steps_key_and_only_in_training(straight, mnist):
    params = jax.device_get(straight[1].state.params)
    model, images = model_for(CONFIG), mnist["test"][0][:64]
    train_apply, apply = quick_jit(model.train_apply), quick_jit(model.apply)
    a, _ = train_apply(params, images, jax.random.key(1))
    b, _ = train_apply(params, images, jax.random.key(1))
    c, _ = train_apply(params, images, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(apply(params, images), apply(params, images))


def test_a_stopped_run_resumes_bit_for_bit(straight, data_dir, tmp_path):
    run_dir, whole = straight
    options = RunOptions(data_dir=data_dir, doubts=False)
    stopped = experiment.run(CONFIG, tmp_path / "run", options, hooks=[Stop(lambda epoch, done: True)])
    assert stopped.status == "stopped"
    resumed = experiment.resume(tmp_path / "run", {}, options, hooks=[])
    assert resumed.history["test_loss"] == whole.history["test_loss"]
    for a, b in zip(leaves(resumed.state.params), leaves(whole.state.params)):
        np.testing.assert_array_equal(a, b)


def test_a_resume_may_not_ask_for_gradient_slices_it_would_ignore(straight, data_dir, tmp_path):
    run_dir, _ = straight
    shutil.copytree(run_dir, tmp_path / "run")
    with pytest.raises(ConfigError, match="^--microbatch 32 has no effect without --network cnn$"):
        experiment.resume(tmp_path / "run", {"epochs": 3, "microbatch": 32}, RunOptions(data_dir=data_dir), hooks=[])


def test_the_onnx_export_reads_its_statistics(straight, mnist, tmp_path):
    run_dir, _ = straight
    onnxruntime = pytest.importorskip("onnxruntime")
    code, _, err = mnist_jax("export", run_dir, "--out", tmp_path / "model.onnx")
    assert code == 0, err
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    images = mnist["test"][0][:32]
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    _, _, params = rundir.load_run(run_dir)
    np.testing.assert_allclose(got, inference.classify(params, images, model_for(CONFIG)), atol=1e-5)


def test_the_faster_formulations_keep_its_params_statistics_and_numbers(mnist):
    apply = quick_jit(lambda model, params, images: model.apply(params, images), static_argnums=0)
    train_apply = quick_jit(lambda model, params, images, key: model.train_apply(params, images, key), static_argnums=0)
    reference = model_for(TrainConfig(network="cnn_bn", conv="xla"))
    params = init_params(reference)
    images, key = jnp.asarray(mnist["test"][0][:64]), jax.random.key(1)
    for conv in ("matmul", "custom_vjp"):
        model = model_for(TrainConfig(network="cnn_bn", conv=conv))
        for a, b in zip(leaves(init_params(model)), leaves(params)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(apply(model, params, images), apply(reference, params, images), atol=1e-5)
        got, want = train_apply(model, params, images, key), train_apply(reference, params, images, key)
        for a, b in zip(leaves(got), leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

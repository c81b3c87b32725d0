import jax
import numpy as np
import optax
import pytest

from mnist_jax.checkpoints import CheckpointError, Checkpointer
from mnist_jax.model import Classifier
from mnist_jax.train import NonFiniteLossError, TrainConfig, create_train_state, train_epochs

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@pytest.fixture(scope="module")
def small(mnist):
    return tuple(a[:1024] for a in mnist["train"]), tuple(a[:500] for a in mnist["test"])


def template(config: TrainConfig):
    return create_train_state(Classifier(conv=config.conv), optax.adam(config.learning_rate), jax.random.key(9))


def run(config, data, **kwargs):
    state = history = None
    for _, _, state, history in train_epochs(config, *data, **kwargs):
        pass
    return state, history


def test_two_epochs_then_two_resumed_equal_four_uninterrupted(small, tmp_path):
    config = TrainConfig(epochs=4, learning_rate=1e-3, batch_size=256)
    straight_state, straight_history = run(config, small)

    checkpointer = Checkpointer(tmp_path / "ckpt", keep=2)
    for epoch, _, state, history in train_epochs(TrainConfig(epochs=2, learning_rate=1e-3, batch_size=256), *small):
        checkpointer.save(epoch + 1, state, history)
    checkpointer.close()
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [1, 2]

    restorer = Checkpointer(tmp_path / "ckpt")
    state, history = restorer.restore_latest(template(config))
    restorer.close()
    assert len(history["train_loss"]) == 2
    resumed_state, resumed_history = run(config, small, state=state, history=history)

    for k in METRICS:
        assert resumed_history[k] == straight_history[k]
    assert int(resumed_state.step) == int(straight_state.step) == 16
    for a, b in zip(jax.tree_util.tree_leaves(resumed_state.params), jax.tree_util.tree_leaves(straight_state.params)):
        np.testing.assert_array_equal(a, b)


def test_only_the_last_few_checkpoints_are_kept(small, tmp_path):
    checkpointer = Checkpointer(tmp_path / "ckpt", keep=2)
    for epoch, _, state, history in train_epochs(TrainConfig(epochs=3, batch_size=512), *small):
        checkpointer.save(epoch + 1, state, history)
    checkpointer.close()
    assert checkpointer.latest_epoch() == 3
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [2, 3]


def test_divergence_names_the_epoch_and_keeps_the_last_good_checkpoint(small, tmp_path):
    config = TrainConfig(epochs=1, batch_size=512)
    checkpointer = Checkpointer(tmp_path / "ckpt")
    for epoch, _, state, history in train_epochs(config, *small):
        checkpointer.save(epoch + 1, state, history)
    poisoned = state.replace(params=jax.tree_util.tree_map(lambda p: p * np.inf, state.params))
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        run(TrainConfig(epochs=2, batch_size=512), small, state=poisoned, history=history)
    checkpointer.close()
    assert checkpointer.latest_epoch() == 1
    restored, _ = Checkpointer(tmp_path / "ckpt").restore_latest(template(config))
    assert all(np.isfinite(p).all() for p in jax.tree_util.tree_leaves(restored.params))


def test_absurd_learning_rate_diverges_in_epoch_zero(small):
    with pytest.raises(NonFiniteLossError, match="epoch 0"):
        run(TrainConfig(epochs=2, learning_rate=1e30, batch_size=512), small)


def test_checkpoint_of_another_model_is_refused(small, tmp_path):
    config = TrainConfig(epochs=1)
    state = template(config)
    other = state.replace(params={**state.params, "linear": {"kernel": np.zeros((1600, 5), np.float32),
                                                             "bias": np.zeros(5, np.float32)}})
    checkpointer = Checkpointer(tmp_path / "ckpt")
    checkpointer.save(1, other.replace(opt_state=optax.adam(1e-4).init(other.params)),
                      {k: [0.5] for k in (*METRICS, "epoch_seconds")})
    checkpointer.close()
    with pytest.raises(CheckpointError, match="cannot restore checkpoint"):
        Checkpointer(tmp_path / "ckpt").restore_latest(template(config))


def test_no_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpointer(tmp_path / "empty").restore_latest(template(TrainConfig()))

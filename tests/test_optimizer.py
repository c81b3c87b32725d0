"""The optimizer (mnist_jax.optimizer): built from the config, the same state whatever the run's length."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax.config import TrainConfig, resume_config
from mnist_jax.errors import ConfigError
from mnist_jax.optimizer import learning_rate, make_optimizer

PARAMS = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
GRADS = {"w": jnp.full((2, 3), 0.5), "b": jnp.array([1.0, -2.0, 0.0])}


def test_the_notebooks_optimizer_is_adam_at_its_learning_rate():
    config = TrainConfig(learning_rate=3e-3)
    ours = make_optimizer(config, steps_per_epoch=118)
    adam = optax.adam(3e-3)
    a, _ = ours.update(GRADS, ours.init(PARAMS), PARAMS)
    b, _ = adam.update(GRADS, adam.init(PARAMS), PARAMS)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "one_cycle"])
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_state_is_the_same_whatever_the_epoch_length(name, schedule):
    """mnist_jax.run.loop builds one initial state for every epoch length and restores checkpoints into
    it: the optimizer's state must not depend on the number of steps."""
    config = TrainConfig(epochs=7, optimizer=name, schedule=schedule)
    short, long = (make_optimizer(config, n).init(PARAMS) for n in (1, 1000))
    assert jax.tree_util.tree_structure(short) == jax.tree_util.tree_structure(long)
    for x, y in zip(jax.tree_util.tree_leaves(short), jax.tree_util.tree_leaves(long)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine", "one_cycle"])
def test_a_schedule_spans_the_whole_run_and_peaks_at_the_learning_rate(schedule):
    config = TrainConfig(epochs=4, learning_rate=1e-3, schedule=schedule, warmup_epochs=1)
    rates = [learning_rate(config, 10, step) for step in range(40)]  # 4 epochs of 10 steps
    assert max(rates) == pytest.approx(1e-3, rel=1e-6) and rates[-1] < 1e-4  # down to (nearly) nothing at the end
    if schedule == "cosine":
        assert rates[0] == pytest.approx(1e-3) and all(a >= b for a, b in zip(rates, rates[1:]))
    if schedule == "warmup_cosine":
        assert rates[0] == 0 and rates[10] == pytest.approx(1e-3)  # the rise takes the first epoch
    if schedule == "one_cycle":
        assert rates[0] < 1e-4 and np.argmax(rates) == 12  # up over the first 30% (12 of 40 steps)
    # And the optimizer steps with it: Adam's first update moves each weight by about the rate.
    optimizer = make_optimizer(config, 10)
    state = optimizer.init(PARAMS)
    for step in range(12):
        updates, state = optimizer.update(GRADS, state, PARAMS)
    np.testing.assert_allclose(np.abs(updates["w"]), rates[11], rtol=1e-3)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_the_other_optimizers_are_optaxs_with_their_settings(name):
    config = TrainConfig(learning_rate=0.1, optimizer=name, weight_decay=0.01, momentum=0.5)
    ours = make_optimizer(config, 10)
    theirs = optax.adamw(0.1, weight_decay=0.01) if name == "adamw" else optax.sgd(0.1, momentum=0.5)
    a, b = ours.init(PARAMS), theirs.init(PARAMS)
    for _ in range(3):
        (ua, a), (ub, b) = ours.update(GRADS, a, PARAMS), theirs.update(GRADS, b, PARAMS)
        for x, y in zip(jax.tree_util.tree_leaves(ua), jax.tree_util.tree_leaves(ub)):
            np.testing.assert_array_equal(x, y)


def test_a_scheduled_run_keeps_its_optimizer_schedule_and_length_on_resume():
    saved = TrainConfig(epochs=4, schedule="cosine")
    for given, message in (({"schedule": "constant"}, "--schedule constant differs"),
                           ({"optimizer": "sgd"}, "--optimizer sgd differs"),
                           ({"epochs": 8}, "--epochs 8 differs from the resumed run's 4, over which its cosine")):
        with pytest.raises(ConfigError, match=message):
            resume_config(saved, given)
    assert resume_config(TrainConfig(epochs=4), {"epochs": 8}).epochs == 8  # a constant rate may go on

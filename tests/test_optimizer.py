"""The optimizer (mnist_jax.optimizer): built from the config, the same state whatever the run's length."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnist_jax.config import TrainConfig
from mnist_jax.optimizer import make_optimizer

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


def test_the_state_is_the_same_whatever_the_epoch_length():
    """mnist_jax.loop builds one initial state for every epoch length and restores checkpoints into
    it: the optimizer's state must not depend on the number of steps."""
    config = TrainConfig(epochs=7)
    short, long = (make_optimizer(config, n).init(PARAMS) for n in (1, 1000))
    assert jax.tree_util.tree_structure(short) == jax.tree_util.tree_structure(long)
    for x, y in zip(jax.tree_util.tree_leaves(short), jax.tree_util.tree_leaves(long)):
        np.testing.assert_array_equal(x, y)

"""The memory estimate (mnist_jax.memory) against XLA's own analysis of the compiled programs."""

import dataclasses

import jax
import numpy as np
import pytest
from conftest import SMALL

from mnist_jax import loop, memory
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.loop import initial_state
from mnist_jax.models import model_for
from mnist_jax.steps import eval_batch_size


@pytest.mark.parametrize("conv,microbatch", [("matmul", 256), ("custom_vjp", 256), ("custom_vjp", 32)])
def test_the_estimate_bounds_xlas_analysis_of_the_small_settings_programs(conv, microbatch):
    config = TrainConfig(**SMALL, conv=conv, microbatch=microbatch)
    programs = loop.train_programs(config, steps_per_epoch=4)
    state = initial_state(config)
    images = jax.ShapeDtypeStruct((1024, 28, 28, 1), np.uint8)
    labels = jax.ShapeDtypeStruct((1024,), np.int32)
    indices, mask = jax.ShapeDtypeStruct((4, 256), np.int32), jax.ShapeDtypeStruct((4, 256), np.bool_)
    train = programs.steps.lower(state, images, labels, indices, mask, 0, length=4).compile()
    evaluate = loop.eval_program(model_for(config), config.test_batch_size).lower(state.params, images, labels).compile()
    train, evaluate = (p.memory_analysis().temp_size_in_bytes for p in (train, evaluate))
    estimate = memory.TRAIN_BYTES_PER_EXAMPLE * microbatch  # examples held at once
    assert 0.7 * estimate <= train <= estimate * 1.05  # "matmul" the most, "custom_vjp" about 75% of it
    assert evaluate == pytest.approx(memory.EVAL_BYTES_PER_EXAMPLE * config.test_batch_size, rel=0.1)


def test_the_estimate_grows_with_seeds_and_batches_and_evaluation_never_pads_past_the_test_set():
    config = TrainConfig(batch_size=512, test_batch_size=1024)
    one = memory.needed_bytes(config, num_test=10_000)
    assert memory.needed_bytes(dataclasses.replace(config, seeds=4), 10_000) - memory.DATASET_BYTES == pytest.approx(
        4 * (one - memory.DATASET_BYTES))
    assert eval_batch_size(100_000, 10_000) == 10_000 and eval_batch_size(1024, 10_000) == 1024
    huge_eval = dataclasses.replace(config, test_batch_size=100_000)
    assert memory.needed_bytes(huge_eval, 10_000) == memory.needed_bytes(
        dataclasses.replace(config, test_batch_size=10_000), 10_000)


def test_a_config_that_cannot_fit_is_refused_with_its_settings_named():
    config = TrainConfig(seeds=8)
    memory.check(config, 10_000, available=memory.needed_bytes(config, 10_000))
    with pytest.raises(ConfigError, match=r"--seeds 8 x --batch-size 512 / --test-batch-size 1024 needs about "
                                          r"2\.3 GB, more than the 1\.0 GB free on .*; use fewer seeds"):
        memory.check(config, 10_000, available=10**9)
    # On accelerators each device has its memory: 2 seeds on each of 4 fit, 4 on each of 2 do not.
    assert memory.needed_bytes(config, 10_000, 4) < 10**9 < memory.needed_bytes(config, 10_000, 2)
    assert memory.available_bytes() > 0  # this machine's free memory, as the commands check it

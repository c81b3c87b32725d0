"""mnist_jax.fast gives the core's numbers: the faster formulations against mnist_jax.model, the
compiled epoch against mnist_jax.steps.train_epoch, the sliced gradient against the whole batch's."""

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_params

from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.fast.programs import initial_state, run_epoch, sliced_gradient, train_programs
from mnist_jax.metrics import summarize
from mnist_jax.model import Classifier, LinenModel
from mnist_jax.optimizer import make_optimizer
from mnist_jax.run import environment
from mnist_jax.steps import Batch, create_train_state, loss_and_gradient, num_batches, train_epoch

# Full float32: under TF32 (a GPU's default) the formulations would differ by more than rounding.
REFERENCE = LinenModel(Classifier("highest"))
# Every faster linen formulation, and the NNX twin in the one a CPU trains with ("xla" is the reference).
FORMS = [dict(conv="matmul", model="linen"), dict(conv="custom_vjp", model="linen"), dict(conv="custom_vjp", model="nnx")]


def leaves(tree):
    return jax.tree_util.tree_leaves(tree)


# Jitted once for the module: the reference's programs compile once, each formulation's once.
gradient = quick_jit(loss_and_gradient, static_argnums=2)
apply = quick_jit(lambda model, params, images: model.apply(params, images), static_argnums=0)


# The tests that need no data first: the other worker may be preparing it when this file starts.
def test_multi_seed_state_stacks_the_single_seed_states_exactly():
    stacked = initial_state(TrainConfig(seed=7, seeds=2))  # the init program of the suite's 2-seed runs
    for i in range(2):
        single = initial_state(TrainConfig(seed=7 + i))
        for a, b in zip(leaves(stacked), leaves(single)):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_array_equal(a[i], b)


def test_the_config_precision_and_conv_leave_the_initial_params_alone():
    a = initial_state(TrainConfig())
    for other in (TrainConfig(precision="highest", conv="xla"), TrainConfig(conv="matmul", microbatch=64)):
        for x, y in zip(leaves(a.params), leaves(initial_state(other).params)):
            np.testing.assert_array_equal(x, y)


def test_the_init_program_compiled_quickly_draws_what_the_core_draws():
    """The init program is compiled quickly on a CPU (mnist_jax.fast.compiling): its
    state is the core's `create_train_state`, compiled as every other program is, to the last bit,
    for one model and for a sweep's stacked members."""
    def same(a, b):  # bit for bit on the 2 Zen 4 cores measured; elsewhere at most a float's last bit
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        if np.issubdtype(np.asarray(a).dtype, np.floating):
            np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(b), maxulp=1)
        else:
            np.testing.assert_array_equal(a, b)

    for config in (TrainConfig(seed=3), TrainConfig(network="cnn_bn", optimizer="adamw")):
        core = jax.jit(functools.partial(create_train_state, model_for(config), make_optimizer(config, 1)))
        for a, b in zip(leaves(initial_state(config)), leaves(core(jax.random.key(config.seed)))):
            same(a, b)
    swept = initial_state(TrainConfig(sweep="lr=1e-3,3e-3"))
    single = TrainConfig(learning_rate=1e-3)  # each member's params are seed 0's, whatever its rate
    core = jax.jit(functools.partial(create_train_state, model_for(single), make_optimizer(single, 1)))
    for i in range(2):
        for a, b in zip(leaves(swept.params), leaves(core(jax.random.key(0)).params)):
            same(a[i], b)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f"{f['model']}-{f['conv']}")
def test_every_formulation_draws_the_references_params_and_gives_its_logits_and_gradients(form, mnist):
    model = model_for(TrainConfig(precision="highest", **form))
    key = jax.random.key(5)
    params = init_params(REFERENCE, 5)
    for a, b in zip(leaves(init_params(model, 5)), leaves(params)):
        np.testing.assert_array_equal(a, b)
    images, labels = (jnp.asarray(a[:32]) for a in mnist["test"])
    np.testing.assert_allclose(apply(model, params, images), apply(REFERENCE, params, images), rtol=1e-5, atol=1e-5)
    batch = Batch(images, labels, jnp.ones(32, bool))
    _, _, got = gradient(params, batch, model, key)
    _, _, want = gradient(params, batch, REFERENCE, key)
    for a, b in zip(leaves(got), leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())


# Whether this machine computes the bits of the one that wrote tests/fixtures/run-0.2 (2 AMD EPYC
# Zen 4 cores), where the quickly compiled programs were compared with XLA's defaults bit for bit.
RECORDED_SYSTEM = environment.same_numerics(
    json.loads((Path(__file__).parent / "fixtures" / "run-0.2" / "system.json").read_text()))


def test_the_compiled_epoch_is_the_cores_epoch(mnist):
    """The run's programs (the CPU's formulation, gradient slices, the epoch in chunks) train the
    epoch that mnist_jax.steps.train_epoch trains with the reference model, within float rounding;
    with the reference's formulation and no slices, bit for bit where measured. The run's programs
    are compiled quickly (a short run), the core's at XLA's defaults (fast/compiling.py)."""
    images, labels = (jnp.asarray(a[:200]) for a in mnist["train"])
    config = TrainConfig(precision="highest", learning_rate=1e-3, batch_size=128, epochs=1)
    optimizer = make_optimizer(config, num_batches(200, 128))
    core = jax.jit(functools.partial(train_epoch, batch_size=128, model=REFERENCE, optimizer=optimizer))
    start = quick_jit(functools.partial(create_train_state, REFERENCE, optimizer), random_numbers=True)  # as runs do
    want_state, want_sums = core(start(jax.random.key(config.seed)), images, labels)
    for fast, exact in ((dict(conv="xla", microbatch=128), True), (dict(conv="custom_vjp", microbatch=32), False)):
        fast_config = dataclasses.replace(config, **fast)
        programs = train_programs(fast_config, num_batches(200, 128))
        state, sums = run_epoch(programs, initial_state(fast_config), images, labels, chunks=2)
        assert int(state.step) == int(want_state.step) == 2
        for a, b in zip(leaves(state.params), leaves(want_state.params)):
            if exact and RECORDED_SYSTEM:
                np.testing.assert_array_equal(a, b)
            elif exact:  # another CPU: XLA's two emitters, never compared there, may round apart
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        for key, value in summarize(sums).items():
            np.testing.assert_allclose(value, summarize(want_sums)[key], rtol=1e-4)


def test_a_gradient_in_slices_is_the_whole_batchs(mnist):
    images, labels = (jnp.asarray(a[:256]) for a in mnist["train"])
    batch = Batch(images, labels, jnp.arange(256) < 244)  # a short last batch: 12 padded examples
    params = init_params(REFERENCE)
    key = jax.random.key(1)
    whole = quick_jit(lambda p, b: loss_and_gradient(p, b, REFERENCE, key))(params, batch)
    sliced = quick_jit(lambda p, b: sliced_gradient(8)(p, b, REFERENCE, key))(params, batch)
    np.testing.assert_allclose(sliced[0], whole[0], rtol=1e-6)
    np.testing.assert_allclose(sliced[1][0], whole[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(leaves(sliced[2]), leaves(whole[2])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())

"""The programs a run compiles: mnist_jax.steps' functions jitted once, with what makes them fast.

    programs = train_programs(config, steps_per_epoch=118)          # cached per setting and epoch length
    state = initial_state(config)                                   # one model, or a run's models stacked
    state, sums = run_epoch(programs, state, images, labels)        # one epoch, as the loop runs it
    sums, confusion = eval_program(model, 1024)(state.params, test_images, test_labels)

What they add to the core, each the same numbers (tests/test_fast.py, tests/test_loop.py):
- gradient slices: on a CPU each batch's gradient in slices of 32 examples, added up;
- the models' axis: a run's seeds or sweep values stacked, vmapped or one after another;
- progress chunks: an epoch in several dispatches, for a progress bar;
- the cache: one compilation per setting and epoch length in a process; donated buffers;
- devices: the seeds or each batch split over a mesh (mnist_jax.fast.parallel).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mnist_jax import metrics, networks
from mnist_jax.augment import augmentation_for
from mnist_jax.config import OUTSIDE_PROGRAMS, TrainConfig
from mnist_jax.fast import model_for, parallel
from mnist_jax.fast.compiling import QUICK_RUN_STEPS, quick_jit
from mnist_jax.hooks import Hook
from mnist_jax.model import Model, Params
from mnist_jax.optimizer import make_optimizer, swept_values
from mnist_jax.steps import (Batch, TrainState, batch_losses, create_train_state, evaluate, loss_and_gradient, shuffle,
                             train_steps)


@dataclasses.dataclass(frozen=True)
class TrainPrograms:
    """The jitted training functions of one config, epoch length and mesh (see `train_programs`)."""

    shuffle: Callable  # (state, labels) -> (state, indices, mask), state donated
    steps: Callable  # (state, images, labels, indices, mask, start, *, length) -> (state, per-batch metrics)


def program_key(config: TrainConfig, **also: Any) -> TrainConfig:
    """`config` with the settings that do not change the compiled programs set to one value
    (`config.OUTSIDE_PROGRAMS`, and `also`): the key the programs are cached on."""
    return dataclasses.replace(config, **OUTSIDE_PROGRAMS, **also)


def train_programs(config: TrainConfig, steps_per_epoch: int, mesh: jax.sharding.Mesh | None = None) -> TrainPrograms:
    """The training programs for `config` over epochs of `steps_per_epoch` batches, built once per
    process: every run with the same settings reuses them, and with them their compilations."""
    # The epoch count stays in the key: a learning-rate schedule spans epochs * steps_per_epoch steps.
    return _train_programs(program_key(config), steps_per_epoch, mesh, metrics.METRICS)


# Examples per gradient slice where the config leaves it to the backend: on 2 AMD EPYC (Zen) cores
# slices of 32 made a 512-batch step 13% faster (184 against 212 ms); on a GPU the whole batch at once.
_MICROBATCH_BY_BACKEND = {"cpu": 32}


def gradient_slices(config: TrainConfig, mesh: jax.sharding.Mesh | None = None) -> int:
    """In how many slices each batch's gradient is computed (`sliced_gradient`): one for a batch
    split over devices, else batch_size / microbatch (auto: the backend's, if it divides)."""
    if parallel.batch_sharding(mesh) is not None or "microbatch" not in networks.NETWORKS[config.network].reads:
        return 1  # a network that does not read --microbatch (batch norm's statistics are the whole batch's)
    size = config.microbatch or _MICROBATCH_BY_BACKEND.get(jax.default_backend(), config.batch_size)
    return config.batch_size // size if config.batch_size % size == 0 else 1


def sliced_gradient(slices: int) -> Callable:
    """`steps.loss_and_gradient` computed in `slices` equal slices of the batch one after the other
    (a `lax.scan`) and their sums added: the same result up to float rounding, with each slice's
    activations small enough to stay in a CPU's cache."""
    if slices == 1:
        return loss_and_gradient

    def gradient(params: Params, batch: Batch, model: Model, key: jax.Array):
        def summed_loss(params: Params, part: Batch, part_key: jax.Array) -> tuple[jax.Array, jax.Array]:
            losses, (logits, _) = batch_losses(params, part, model, part_key)
            return jnp.sum(losses), logits

        def add_slice(total, part_and_index):
            part, index = part_and_index
            part_key = jax.random.fold_in(key, index)  # each slice its own draws (dropout)
            (loss, logits), grads = jax.value_and_grad(summed_loss, has_aux=True)(params, part, part_key)
            return jax.tree_util.tree_map(jnp.add, total, (loss, grads)), logits

        parts = jax.tree_util.tree_map(lambda a: a.reshape(slices, -1, *a.shape[1:]), batch)
        zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
        (loss_sum, grads), logits = jax.lax.scan(add_slice, zeros, (parts, jnp.arange(slices)))
        count = jnp.sum(batch.mask)
        # No running statistics: a network that keeps them (batch norm's) is not sliced (gradient_slices).
        return (loss_sum / count, (logits.reshape(-1, logits.shape[-1]), {}),
                jax.tree_util.tree_map(lambda g: g / count, grads))

    return gradient


# Backends whose one device trains a run's several models (seeds, a sweep's values) one after
# another inside the program (`lax.map`) rather than as one batch (`vmap`): on 2 AMD EPYC (Zen) cores
# a vmapped epoch took 52 s per model, a single model's 28 s (docs/measurements.md).
_MODELS_MAPPED_ON = ("cpu",)


def models_mapped(mesh: jax.sharding.Mesh | None = None) -> bool:
    """Whether the models of a run are trained one after another in its program (see above); a mesh
    splits them over its devices, vmapped."""
    return mesh is None and jax.default_backend() in _MODELS_MAPPED_ON


def over_models(fn: Callable, in_axes: tuple[int | None, ...], mesh: jax.sharding.Mesh | None = None) -> Callable:
    """`fn` over the models' leading axis of the arguments whose `in_axes` entry is 0, as `jax.vmap`
    takes it: vmapped, or one model after another (`lax.map`) where `models_mapped(mesh)`."""
    if not models_mapped(mesh):
        return jax.vmap(fn, in_axes=in_axes)

    def each_model_in_turn(*args):
        stacked = [i for i, axis in enumerate(in_axes) if axis == 0]

        def one(own):
            return fn(*(own[stacked.index(i)] if i in stacked else a for i, a in enumerate(args)))

        return jax.lax.map(one, [args[i] for i in stacked])

    return each_model_in_turn


@functools.lru_cache(maxsize=32)
def _train_programs(config: TrainConfig, steps_per_epoch: int, mesh: jax.sharding.Mesh | None,
                    metrics_key: tuple[metrics.Metric, ...]) -> TrainPrograms:
    # `metrics_key` (metrics.METRICS) is in the key so that a process that changes the metrics recompiles.
    steps_fn = functools.partial(
        train_steps, model=parallel.split_batches(model_for(config), mesh),
        optimizer=make_optimizer(config, steps_per_epoch), augment=augmentation_for(config),
        gradient=sliced_gradient(gradient_slices(config, mesh)))

    def shuffle_fn(state: TrainState, labels: jax.Array):
        return shuffle(state, labels.shape[0], config.batch_size)

    if config.models > 1:
        shuffle_fn = jax.vmap(shuffle_fn, in_axes=(0, None))
        steps_fn = over_models(steps_fn, (0, None, None, 0, 0), mesh)

    def chunk_fn(state, images, labels, indices, mask, start, *, length: int):
        # Batches start ... start+length-1 of the epoch's order: (..., batches, batch size).
        indices = jax.lax.dynamic_slice_in_dim(indices, start, length, axis=-2)
        mask = jax.lax.dynamic_slice_in_dim(mask, start, length, axis=-2)
        return steps_fn(state, images, labels, indices, mask)

    # Metrics come back replicated over a mesh, so that every host can read them.
    out = {} if mesh is None else {"out_shardings": (parallel.state_sharding(mesh), parallel.replicated(mesh))}
    short_run = config.epochs * steps_per_epoch * config.models <= QUICK_RUN_STEPS
    steps_jit = quick_jit if short_run else jax.jit
    return TrainPrograms(shuffle=quick_jit(shuffle_fn, donate_argnums=0),
                         steps=steps_jit(chunk_fn, donate_argnums=0, static_argnames="length", **out))


def eval_program(model: Model, batch_size: int, seeds: int = 1, mesh: jax.sharding.Mesh | None = None) -> Callable:
    """(params, images, labels) -> (per-batch metrics, confusion matrix), jitted once per setting."""
    return _eval_program(model, batch_size, seeds, mesh, metrics.METRICS)


@functools.lru_cache(maxsize=32)
def _eval_program(model: Model, batch_size: int, seeds: int, mesh: jax.sharding.Mesh | None,
                  metrics_key: tuple[metrics.Metric, ...]) -> Callable:
    fn = functools.partial(evaluate, model=parallel.split_batches(model, mesh), batch_size=batch_size)
    if seeds > 1:
        fn = over_models(fn, (0, None, None), mesh)
    return quick_jit(fn, **({} if mesh is None else {"out_shardings": parallel.replicated(mesh)}))


def initial_state(config: TrainConfig, sharding: jax.sharding.Sharding | None = None) -> TrainState:
    """A fresh TrainState for `config`; also the template that a checkpoint is restored into.

    With `config.seeds > 1`, the states of seeds `seed` ... `seed + seeds - 1` stacked on a leading
    axis, each equal to that seed's single state; a sweep stacks the states of
    `config.model_configs()`, each holding its swept value. `sharding` lays the result out over devices.
    """
    create = _initializer(program_key(config, epochs=1), sharding)
    if config.models == 1:
        return create(jax.random.key(config.seed))
    seeds = jnp.asarray([member.seed for member in config.model_configs()])
    return create(seeds) if config.sweep is None else create(seeds, swept_values(config))


@functools.lru_cache(maxsize=32)
def _initializer(config: TrainConfig, sharding: jax.sharding.Sharding | None) -> Callable[..., TrainState]:
    # An optimizer's state is the same whatever the length of its schedule (Optax's schedules are
    # functions of the step count; tests/test_optimizer.py checks it), so one init program serves
    # every epoch count and dataset size. Jitted: eagerly, its dozens of small ops compile one by one.
    create = functools.partial(create_train_state, model_for(config), make_optimizer(config, steps_per_epoch=1))
    jit = functools.partial(quick_jit, random_numbers=True, out_shardings=sharding)  # it runs once a run
    if config.models == 1:
        return jit(create)
    if config.sweep is None:
        return jit(jax.vmap(lambda seed: create(jax.random.key(seed))))
    name = config.sweep_name

    def create_member(seed: jax.Array, value: jax.Array) -> TrainState:
        state = create(jax.random.key(seed))
        opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, name: value})
        return state.replace(opt_state=opt_state)

    return jit(jax.vmap(create_member))


def run_epoch(programs: TrainPrograms, state: TrainState, images: jax.Array, labels: jax.Array, *,
              epoch: int = 0, chunks: int = 1, hooks: Hook = Hook()) -> tuple[TrainState, metrics.Sums | None]:
    """One epoch, as every caller trains one (the loop, the notebook, the benchmarks): a fresh order
    from the state's key, then the batches in `chunks` scans (one: the whole epoch in one dispatch),
    with `hooks.on_progress` between them. The state and the per-batch metrics (on the device), the
    same bit for bit whatever `chunks`; None for the metrics if a hook asked to stop "now" between
    two scans (the epoch is then abandoned)."""
    state, indices, mask = programs.shuffle(state, labels)
    total = indices.shape[-2]
    length = -(-total // chunks)
    if chunks > 1:
        hooks.on_progress(epoch, 0, total)
    parts = []
    for start in range(0, total, length):
        if start and hooks.stop() == "now":
            return state, None
        state, sums = programs.steps(state, images, labels, indices, mask, start, length=min(length, total - start))
        parts.append(sums)
        if not start:
            hooks.on_epoch_dispatched(epoch)
        if chunks > 1:
            jax.block_until_ready(sums)
            hooks.on_progress(epoch, min(start + length, total), total)
    return state, jax.tree_util.tree_map(lambda *p: jnp.concatenate(p, axis=-1), *parts) if len(parts) > 1 else parts[0]

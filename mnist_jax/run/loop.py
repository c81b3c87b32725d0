"""The training loop: the pure steps jitted once, run epoch after epoch, with hooks between them.

    state, history = fit(config, train_data, test_data)                  # in memory, nothing written
    outcome = train(config, train_data, test_data, hooks=[...])          # what mnist_jax.run.experiment runs
    outcome = train(config, train_data, test_data, start=(state, history))   # continue, bit for bit
    programs = train_programs(config, steps_per_epoch)                    # the notebook's way in:
    state, metrics = train_epoch(programs, state, images, labels)         # one epoch, as train runs it

Each epoch draws its order with `jax.random`, then runs as one `lax.scan` over the batches with the
dataset on the device (in several scans when a hook asks for progress; same numbers), then is
evaluated on the test set. A run ends "finished", "stopped" (a hook's `stop()`; resumable) or
"diverged" (a loss became NaN, infinite or far above a uniform guess's, see `history.diverged`).
With the notebook's defaults expect epoch 0 at test accuracy ~0.81 and epoch 29 at ~0.983 (the
notebook printed 0.7933 and 0.9836).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.run import history as hist
from mnist_jax.fast import parallel
from mnist_jax.augment import augmentation_for
from mnist_jax.config import OUTSIDE_PROGRAMS, TrainConfig, parse_sweep
from mnist_jax.errors import ConfigError
from mnist_jax.hooks import Hook, Hooks
from mnist_jax.model import Model
from mnist_jax.networks import model_for
from mnist_jax.optimizer import learning_rate, make_optimizer, swept_values, weight_decay
from mnist_jax.steps import (Augmentation, TrainState, create_train_state, eval_batch_size, evaluate, num_batches,
                             shuffle, train_steps)

Data = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 28, 28, 1), int32 labels (N,)
MAX_STEPS = 2**31  # TrainState.step is an int32, and so are the schedules' step counts


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: Literal["finished", "stopped", "diverged"]
    state: TrainState | None  # the last good state (None if diverged or stopped mid-epoch)
    history: hist.History
    first_epoch: int  # the first epoch this call trained (> 0 when resumed)
    seconds: float  # training time of this call
    diverged_at: tuple[int, dict[str, Any]] | None = None  # (epoch, record) of the epoch that diverged
    config: TrainConfig | None = None  # what was trained (its stop_at_accuracy: where the run may end early)
    # Set by mnist_jax.run.experiment:
    workdir: Path | None = None
    message: str = ""  # for "diverged": what happened and what is kept
    signal: int | None = None  # for "stopped": the signal that asked for it, if any
    copied_figures: tuple[tuple[Path, bool], ...] = ()  # --figures-dir's copies, and whether each replaced a file


@dataclasses.dataclass(frozen=True)
class TrainPrograms:
    """The jitted training functions of one config, epoch length and mesh (see `train_programs`)."""

    shuffle: Callable  # (state, labels) -> (state, indices, mask), state donated
    steps: Callable  # (state, images, labels, indices, mask, start, *, length) -> (state, per-batch metrics)


def program_key(config: TrainConfig, **also: Any) -> TrainConfig:
    """`config` with the settings that do not change the compiled programs set to one value
    (`config.OUTSIDE_PROGRAMS`, and `also`): the key the programs are cached on."""
    return dataclasses.replace(config, **OUTSIDE_PROGRAMS, **also)


def train_programs(config: TrainConfig, steps_per_epoch: int, mesh: jax.sharding.Mesh | None = None, *,
                   model: Model | None = None, metrics: Sequence[hist.Metric] = hist.METRICS,
                   augment: Augmentation | None = None) -> TrainPrograms:
    """The training programs for `config` over epochs of `steps_per_epoch` batches, built once per
    process: every run with the same settings reuses them, and with them their compilations.
    `model` and `augment` default to those `config` names (`models.model_for`, `augment.augmentation_for`)."""
    # The epoch count stays in the key: a learning-rate schedule spans epochs * steps_per_epoch steps.
    return _train_programs(program_key(config), steps_per_epoch, mesh, model, tuple(metrics), augment)


# Examples per gradient slice where the config leaves it to the backend: on 2 AMD EPYC (Zen) cores
# slices of 32 made a 512-batch step 13% faster (184 against 212 ms); on a GPU the whole batch at once.
_MICROBATCH_BY_BACKEND = {"cpu": 32}


def gradient_slices(config: TrainConfig, mesh: jax.sharding.Mesh | None = None) -> int:
    """In how many slices each batch's gradient is computed (`steps.loss_and_gradient`): one for a
    batch split over devices, else batch_size / microbatch (auto: the backend's, if it divides)."""
    if parallel.batch_sharding(mesh) is not None:
        return 1
    size = config.microbatch or _MICROBATCH_BY_BACKEND.get(jax.default_backend(), config.batch_size)
    return config.batch_size // size if config.batch_size % size == 0 else 1


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
def _train_programs(config: TrainConfig, steps_per_epoch: int, mesh: jax.sharding.Mesh | None, model: Model | None,
                    metrics: tuple[hist.Metric, ...], augment: Augmentation | None) -> TrainPrograms:
    steps_fn = functools.partial(
        train_steps, model=model or model_for(config), optimizer=make_optimizer(config, steps_per_epoch),
        slices=gradient_slices(config, mesh), augment=augment or augmentation_for(config), metrics=metrics,
        batch_sharding=parallel.batch_sharding(mesh))

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
    return TrainPrograms(shuffle=jax.jit(shuffle_fn, donate_argnums=0),
                         steps=jax.jit(chunk_fn, donate_argnums=0, static_argnames="length", **out))


@functools.lru_cache(maxsize=32)
def eval_program(model: Model, batch_size: int, seeds: int = 1, mesh: jax.sharding.Mesh | None = None,
                 metrics: tuple[hist.Metric, ...] = hist.METRICS) -> Callable:
    """(params, images, labels) -> (per-batch metrics, confusion matrix), jitted once per setting."""
    fn = functools.partial(evaluate, model=model, batch_size=batch_size, metrics=metrics,
                           batch_sharding=parallel.batch_sharding(mesh))
    if seeds > 1:
        fn = over_models(fn, (0, None, None), mesh)
    return jax.jit(fn, **({} if mesh is None else {"out_shardings": parallel.replicated(mesh)}))


def initial_state(config: TrainConfig, sharding: jax.sharding.Sharding | None = None,
                  model: Model | None = None) -> TrainState:
    """A fresh TrainState for `config`; also the template that a checkpoint is restored into.

    With `config.seeds > 1`, the states of seeds `seed` ... `seed + seeds - 1` stacked on a leading
    axis, each equal to that seed's single state; a sweep stacks the states of
    `config.model_configs()`, each holding its swept value. `sharding` lays the result out over devices.
    """
    create = _initializer(program_key(config, epochs=1), sharding, model)
    if config.models == 1:
        return create(jax.random.key(config.seed))
    seeds = jnp.asarray([member.seed for member in config.model_configs()])
    return create(seeds) if config.sweep is None else create(seeds, swept_values(config))


@functools.lru_cache(maxsize=32)
def _initializer(config: TrainConfig, sharding: jax.sharding.Sharding | None,
                 model: Model | None) -> Callable[..., TrainState]:
    # An optimizer's state is the same whatever the length of its schedule (Optax's schedules are
    # functions of the step count; tests/test_optimizer.py checks it), so one init program serves
    # every epoch count and dataset size. Jitted: eagerly, its dozens of small ops compile one by one.
    create = functools.partial(create_train_state, model or model_for(config), make_optimizer(config, steps_per_epoch=1))
    if config.models == 1:
        return jax.jit(create, out_shardings=sharding)
    if config.sweep is None:
        return jax.jit(jax.vmap(lambda seed: create(jax.random.key(seed))), out_shardings=sharding)
    name = parse_sweep(config.sweep)[0]

    def create_member(seed: jax.Array, value: jax.Array) -> TrainState:
        state = create(jax.random.key(seed))
        opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, name: value})
        return state.replace(opt_state=opt_state)

    return jax.jit(jax.vmap(create_member), out_shardings=sharding)


def train_epoch(programs: TrainPrograms, state: TrainState, images: jax.Array, labels: jax.Array, *,
                epoch: int = 0, chunks: int = 1, hooks: Hook = Hook()) -> tuple[TrainState, hist.Sums | None]:
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


def train(config: TrainConfig, train_data: Data, test_data: Data, *,
          start: tuple[TrainState, hist.History] | None = None, mesh: jax.sharding.Mesh | None = None,
          hooks: Sequence[Hook] = (), model: Model | None = None, metrics: Sequence[hist.Metric] = hist.METRICS,
          augment: Augmentation | None = None) -> Outcome:
    """Train `config` up to `config.epochs` epochs, from `start` (a state and the history of its
    epochs, as a checkpoint holds them) or from scratch; `hooks` are called as `Hook` says.

    `mesh` (from `parallel.make_mesh`) spreads the seeds, or each batch, over its devices. `model`,
    `metrics` and `augment` replace what `config` names (see `train_programs`).
    Continuing from a checkpoint gives the same numbers, bit for bit, as never stopping.
    """
    hooks = Hooks(hooks)
    model = model or model_for(config)
    train_images, train_labels = (a[:config.train_examples] for a in train_data)  # [:None] keeps all
    test_images, test_labels = (a[:config.test_examples] for a in test_data)
    steps_per_epoch = num_batches(len(train_labels), config.batch_size)
    if config.epochs * steps_per_epoch >= MAX_STEPS:
        raise ConfigError(f"--epochs {config.epochs} of {steps_per_epoch} steps is more steps than the step count "
                          f"holds ({MAX_STEPS - 1:_}); train fewer epochs or larger batches")
    programs = train_programs(config, steps_per_epoch, mesh, model=model, metrics=metrics, augment=augment)
    evaluate_fn = eval_program(model, eval_batch_size(config.test_batch_size, len(test_labels)), config.models, mesh,
                               tuple(metrics))
    arrays = (train_images, train_labels, test_images, test_labels)
    if mesh is None:
        train_images, train_labels, test_images, test_labels = (jax.device_put(a) for a in arrays)
        state_sharding = None
    else:
        train_images, train_labels, test_images, test_labels = parallel.put(arrays, parallel.replicated(mesh))
        state_sharding = parallel.state_sharding(mesh)
    if start is not None:
        state, history = start[0], hist.upgrade(start[1], config, metrics)
        if mesh is not None:
            state = parallel.put(state, state_sharding)
    else:
        state, history = initial_state(config, state_sharding, model), hist.empty(metrics)
    chunks = hooks.progress_chunks if mesh is None else 1

    first_epoch = hist.epochs_done(history)
    begin = time.perf_counter()
    status, diverged_at = "finished", None
    # A run that reached --stop-at-accuracy has ended, also when resumed with more epochs.
    last_epoch = first_epoch if hist.reached(history, config.stop_at_accuracy) else config.epochs
    for epoch in range(first_epoch, last_epoch):
        hooks.on_epoch_start(epoch)
        epoch_start = time.perf_counter()
        state, train_sums = train_epoch(programs, state, train_images, train_labels, epoch=epoch, chunks=chunks,
                                        hooks=hooks)
        if train_sums is None:  # abandoned mid-epoch: its state is of no epoch
            status, state = "stopped", None
            break
        # Dispatched before anything is fetched, so the device goes straight on to the test set.
        train_sums, (test_sums, confusion) = parallel.to_host(
            (train_sums, evaluate_fn(state.params, test_images, test_labels)))
        rate = learning_rate(config, steps_per_epoch, (epoch + 1) * steps_per_epoch - 1)  # its last step's
        record = hist.epoch_record(train_sums, test_sums, confusion, time.perf_counter() - epoch_start, rate)
        if hist.diverged(record):
            status, state, diverged_at = "diverged", None, (epoch, record)
            break
        history = hist.append(history, record, metrics)
        hooks.on_epoch(epoch, record, state, history)
        if hist.reached(history, config.stop_at_accuracy):  # the same on every process: it is the history's
            break
        if parallel.agree_any(hooks.stop() is not None) and epoch + 1 < config.epochs:
            status = "stopped"
            break
    outcome = Outcome(status, state, history, first_epoch, time.perf_counter() - begin, diverged_at, config)
    hooks.on_end(outcome)
    return outcome


def fit(config: TrainConfig, train_data: Data, test_data: Data, *, mesh: jax.sharding.Mesh | None = None,
        hooks: Sequence[Hook] = (), **seams: Any) -> tuple[TrainState, hist.History]:
    """Train `config` from scratch in memory; the same config on the same machine gives the same
    history, bit for bit. Raises ArithmeticError if the loss diverges. `seams`: `train`'s `model`,
    `metrics` and `augment`."""
    outcome = train(config, train_data, test_data, mesh=mesh, hooks=hooks, **seams)
    if outcome.status == "diverged":
        raise ArithmeticError(hist.divergence_message(*outcome.diverged_at, kept_epoch=None,
                                                      weight_decay=weight_decay(config)))
    return outcome.state, outcome.history

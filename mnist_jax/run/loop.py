"""The training loop: the pure steps jitted once, run epoch after epoch, with hooks between them.

    state, history = fit(config, train_data, test_data)                  # in memory, nothing written
    outcome = train(config, train_data, test_data, hooks=[...])          # what mnist_jax.run.experiment runs
    outcome = train(config, train_data, test_data, start=(state, history))   # continue, bit for bit

Each epoch runs the compiled programs of mnist_jax.fast.programs (mnist_jax.steps' epoch: a fresh
order, then one `lax.scan` over the batches with the dataset on the device), then is evaluated on
the test set. A run ends "finished", "stopped" (a hook's `stop()`; resumable) or
"diverged" (a loss became NaN, infinite or far above a uniform guess's, see `history.diverged`).
With the notebook's defaults expect epoch 0 at test accuracy ~0.81 and epoch 29 at ~0.983 (the
notebook printed 0.7933 and 0.9836).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Literal

import jax
import numpy as np

from mnist_jax import choices
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fast import model_for, parallel
from mnist_jax.fast.programs import eval_program, initial_state, run_epoch, train_programs
from mnist_jax.hooks import Hook, Hooks
from mnist_jax.optimizer import learning_rate, weight_decay
from mnist_jax.run import history as hist
from mnist_jax.steps import TrainState, eval_batch_size, num_batches

Data = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 28, 28, 1), int32 labels (N,)
MAX_STEPS = 2**31  # TrainState.step is an int32, and so are the schedules' step counts
# The validation split's own key, not a run's seed: every seed and sweep value of a run, and every
# run of the same data, holds the same examples out.
VALIDATION_KEY = 0x5EED_0F_0A


def validation_indices(num_examples: int, count: int) -> np.ndarray:
    """Which of `num_examples` training examples `--validation-examples count` holds out, sorted."""
    if count >= num_examples:
        raise ConfigError(f"--validation-examples {count} leaves none of the {num_examples} training examples "
                          f"to train on")
    return np.sort(np.asarray(jax.random.permutation(jax.random.key(VALIDATION_KEY), num_examples)[:count]))


def split_validation(config: TrainConfig, train_data: Data) -> tuple[Data, Data | None]:
    """The training examples a run trains on (the first `train_examples`, less those held out) and
    its validation split (None without `validation_examples`)."""
    images, labels = (a[:config.train_examples] for a in train_data)  # [:None] keeps all
    if not config.validation_examples:
        return (images, labels), None
    held_out = validation_indices(len(labels), config.validation_examples)
    kept = np.ones(len(labels), bool)
    kept[held_out] = False
    return (images[kept], labels[kept]), (images[held_out], labels[held_out])


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: Literal["finished", "stopped", "diverged"]
    state: TrainState | None  # the last good state (None if diverged or stopped mid-epoch)
    history: hist.History
    first_epoch: int  # the first epoch this call trained (> 0 when resumed)
    seconds: float  # training time of this call
    diverged_at: tuple[int, dict[str, Any]] | None = None  # (epoch, record) of the epoch that diverged
    config: TrainConfig | None = None  # what was trained (its stop_at_accuracy: where the run may end early)


def train(config: TrainConfig, train_data: Data, test_data: Data, *,
          start: tuple[TrainState, hist.History] | None = None, mesh: jax.sharding.Mesh | None = None,
          hooks: Sequence[Hook] = ()) -> Outcome:
    """Train `config` up to `config.epochs` epochs, from `start` (a state and the history of its
    epochs, as a checkpoint holds them) or from scratch; `hooks` are called as `Hook` says.

    `mesh` (from `parallel.make_mesh`) spreads the seeds, or each batch, over its devices.
    Continuing from a checkpoint gives the same numbers, bit for bit, as never stopping.
    """
    if start is None:
        choices.check(config)  # a new run: refuse a setting that none of its parts reads
    hooks = Hooks(hooks)
    (train_images, train_labels), validation = split_validation(config, train_data)
    test_images, test_labels = (a[:config.test_examples] for a in test_data)
    steps_per_epoch = num_batches(len(train_labels), config.batch_size)
    if config.epochs * steps_per_epoch >= MAX_STEPS:
        raise ConfigError(f"--epochs {config.epochs} of {steps_per_epoch} steps is more steps than the step count "
                          f"holds ({MAX_STEPS - 1:_}); train fewer epochs or larger batches")
    programs = train_programs(config, steps_per_epoch, mesh)
    evaluate_fn = eval_program(model_for(config), eval_batch_size(config.test_batch_size, len(test_labels)),
                               config.models, mesh)
    arrays = (train_images, train_labels, test_images, test_labels)
    if mesh is None:
        train_images, train_labels, test_images, test_labels = (jax.device_put(a) for a in arrays)
        validation = validation and tuple(jax.device_put(a) for a in validation)
        state_sharding = None
    else:
        train_images, train_labels, test_images, test_labels = parallel.put(arrays, parallel.replicated(mesh))
        validation = validation and parallel.put(validation, parallel.replicated(mesh))
        state_sharding = parallel.state_sharding(mesh)
    validate_fn = validation and eval_program(
        model_for(config), eval_batch_size(config.test_batch_size, len(validation[1])), config.models, mesh)
    if start is not None:
        state, history = start[0], hist.upgrade(start[1], config)
        if mesh is not None:
            state = parallel.put(state, state_sharding)
    else:
        state, history = initial_state(config, state_sharding), hist.empty()
    chunks = hooks.progress_chunks if mesh is None else 1

    first_epoch = hist.epochs_done(history)
    begin = time.perf_counter()
    status, diverged_at = "finished", None
    # A run that reached --stop-at-accuracy has ended, also when resumed with more epochs.
    last_epoch = first_epoch if hist.reached(history, config.stop_at_accuracy) else config.epochs
    for epoch in range(first_epoch, last_epoch):
        hooks.on_epoch_start(epoch)
        epoch_start = time.perf_counter()
        state, train_sums = run_epoch(programs, state, train_images, train_labels, epoch=epoch, chunks=chunks,
                                        hooks=hooks)
        if train_sums is None:  # abandoned mid-epoch: its state is of no epoch
            status, state = "stopped", None
            break
        # Dispatched before anything is fetched, so the device goes straight on to the test set.
        dispatched = (train_sums, evaluate_fn(state.params, test_images, test_labels),
                      validation and validate_fn(state.params, *validation))
        # Its last step's rate, computed while the device trains: eager ops, 0.2 s of a CPU's epoch line.
        rate = learning_rate(config, steps_per_epoch, (epoch + 1) * steps_per_epoch - 1)
        train_sums, (test_sums, confusion), validated = parallel.to_host(dispatched)
        record = hist.epoch_record(train_sums, test_sums, confusion, time.perf_counter() - epoch_start, rate,
                                   validated and validated[0])
        if hist.diverged(record):
            status, state, diverged_at = "diverged", None, (epoch, record)
            break
        history = hist.append(history, record)
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
        hooks: Sequence[Hook] = ()) -> tuple[TrainState, hist.History]:
    """Train `config` from scratch in memory; the same config on the same machine gives the same
    history, bit for bit. Raises ArithmeticError if the loss diverges."""
    outcome = train(config, train_data, test_data, mesh=mesh, hooks=hooks)
    if outcome.status == "diverged":
        raise ArithmeticError(hist.divergence_message(*outcome.diverged_at, kept_epoch=None,
                                                      weight_decay=weight_decay(config)))
    return outcome.state, outcome.history

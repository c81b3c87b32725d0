"""The training loop: epochs, checkpoints, stopping, divergence and the run's final files.

    outcome = train_and_evaluate(config, run, train_data, test_data)     # what `mnist-jax train` does
    outcome = train_and_evaluate(config, run, train_data, test_data, start=restore(config, run))  # resume
    state, history = fit(config, train_data, test_data)                   # in memory, no files

`train_and_evaluate` trains from a checkpoint (or from scratch), checkpoints after every epoch, and
ends in one of three ways (`Outcome.status`): "finished" (params, seed runs and figures written,
then history.json marked finished), "stopped" (`should_stop()` said so after an epoch, or
`stop_now()` during one; resume continues exactly from the last checkpoint) or "diverged" (a loss
became NaN, infinite or far above a uniform guess's, see `history.diverged`; the last good
checkpoint stays). With the notebook's defaults expect epoch 0 at test accuracy ~0.81 and epoch 29
at ~0.983 (the notebook printed 0.7933 and 0.9836).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, Literal

import jax
import numpy as np
import optax

from mnist_jax import history as hist
from mnist_jax import memory, parallel
from mnist_jax.checkpoints import Checkpointer, Restored
from mnist_jax.config import TrainConfig
from mnist_jax.model import classifier_for
from mnist_jax.runs import Run
from mnist_jax.train import TrainState, evaluate, initial_state, num_batches, shuffle, train_epoch, train_steps

Data = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 28, 28, 1), int32 labels (N,)
# A progress bar's hook: (epoch, batches done, batches in the epoch), called between chunks of an epoch.
ProgressFn = Callable[[int, int, int], Any]
# Updates per epoch when a progress bar is shown: the epoch runs as that many scans, one dispatch each.
# Each dispatch costs about 70 ms on a 2-core CPU (an epoch in 20 scans took 17.6 s against 16.2 s in
# one), so the bar moves in tenths.
PROGRESS_CHUNKS = 10


@dataclasses.dataclass
class Outcome:
    status: Literal["finished", "stopped", "diverged"]
    state: TrainState | None  # the last good state (None if diverged or stopped mid-epoch)
    history: hist.History
    first_epoch: int  # the first epoch this call trained (> 0 when resumed)
    seconds: float  # training time of this call
    message: str = ""  # for "diverged": what happened


@dataclasses.dataclass(frozen=True)
class Programs:
    """The jitted functions of one config and mesh, compiled once per process (see `programs`)."""

    epoch: Callable  # (state, images, labels) -> (state, per-batch metrics), state donated
    shuffle: Callable  # (state, labels) -> (state, indices, mask)
    steps: Callable  # (state, images, labels, indices, mask, start, *, length) -> (state, per-batch metrics)
    evaluate: Callable  # (params, images, labels) -> (per-batch metrics, confusion)


def programs(config: TrainConfig, mesh: jax.sharding.Mesh | None) -> Programs:
    """The training and evaluation programs for `config` (its model, optimizer and batch sizes).

    Cached, so every run in this process with the same model, optimizer, batch sizes, seed count
    and mesh reuses the programs, and with them their compilations.
    """
    # The epoch count, seed and dataset size are arguments of the programs, not part of them.
    return _build_programs(dataclasses.replace(config, epochs=1, seed=0, train_examples=None, test_examples=None), mesh)


@functools.lru_cache(maxsize=32)
def _build_programs(config: TrainConfig, mesh: jax.sharding.Mesh | None) -> Programs:
    model, optimizer = classifier_for(config), optax.adam(config.learning_rate)
    batch_sharding = parallel.batch_sharding(mesh)
    epoch_fn = functools.partial(train_epoch, model=model, optimizer=optimizer, batch_size=config.batch_size,
                                 batch_sharding=batch_sharding)
    steps_fn = functools.partial(train_steps, model=model, optimizer=optimizer, batch_sharding=batch_sharding)
    eval_fn = functools.partial(evaluate, model=model, batch_size=config.test_batch_size,
                                batch_sharding=batch_sharding)

    def shuffle_fn(state: TrainState, labels: jax.Array):
        return shuffle(state, labels.shape[0], config.batch_size)

    if config.seeds > 1:
        epoch_fn = jax.vmap(epoch_fn, in_axes=(0, None, None))
        shuffle_fn = jax.vmap(shuffle_fn, in_axes=(0, None))
        steps_fn = jax.vmap(steps_fn, in_axes=(0, None, None, 0, 0))
        eval_fn = jax.vmap(eval_fn, in_axes=(0, None, None))

    def chunk_fn(state, images, labels, indices, mask, start, *, length: int):
        # Batches start ... start+length-1 of the epoch's order: (..., batches, batch size).
        indices = jax.lax.dynamic_slice_in_dim(indices, start, length, axis=-2)
        mask = jax.lax.dynamic_slice_in_dim(mask, start, length, axis=-2)
        return steps_fn(state, images, labels, indices, mask)

    if mesh is None:
        shardings: dict[str, Any] = {}
        eval_shardings: dict[str, Any] = {}
    else:
        # Metrics come back replicated, so every host can read them.
        shardings = {"out_shardings": (parallel.state_sharding(mesh), parallel.replicated(mesh))}
        eval_shardings = {"out_shardings": parallel.replicated(mesh)}
    return Programs(
        epoch=jax.jit(epoch_fn, donate_argnums=0, **shardings),
        shuffle=jax.jit(shuffle_fn, donate_argnums=0),
        steps=jax.jit(chunk_fn, donate_argnums=0, static_argnames="length"),
        evaluate=jax.jit(eval_fn, **eval_shardings),
    )


def _run_chunked(program: Programs, state: TrainState, images: jax.Array, labels: jax.Array, epoch: int,
                 batch_size: int, on_progress: ProgressFn, stop_now: Callable[[], bool]) -> tuple[TrainState, Any]:
    """An epoch as PROGRESS_CHUNKS scans, reporting between them; the same numbers as one scan.
    The metrics are None if `stop_now()` said so between two chunks (the epoch is then abandoned)."""
    total = num_batches(labels.shape[0], batch_size)
    length = -(-total // PROGRESS_CHUNKS)
    state, indices, mask = program.shuffle(state, labels)
    chunks = []
    on_progress(epoch, 0, total)
    for start in range(0, total, length):
        if stop_now():
            return state, None
        state, metrics = program.steps(state, images, labels, indices, mask, start, length=min(length, total - start))
        chunks.append(metrics)
        jax.block_until_ready(metrics)
        on_progress(epoch, min(start + length, total), total)
    return state, jax.tree_util.tree_map(lambda *parts: np.concatenate(parts, axis=-1), *jax.device_get(chunks))


def restore(config: TrainConfig, run: Run) -> Restored:
    """Where a resume of `run` starts: its newest intact checkpoint (`Restored.damaged` lists the
    newer ones that were skipped). A CheckpointError if there is none."""
    checkpointer = Checkpointer(run.checkpoint_dir, create=False)
    try:
        return checkpointer.restore_latest(initial_state(config))
    finally:
        checkpointer.close()


def train_and_evaluate(config: TrainConfig, run: Run | None, train_data: Data, test_data: Data, *,
                       start: Restored | None = None, mesh: jax.sharding.Mesh | None = None,
                       on_epoch: Callable[[int, dict[str, Any]], Any] | None = None,
                       on_progress: ProgressFn | None = None,
                       should_stop: Callable[[], bool] = lambda: False,
                       stop_now: Callable[[], bool] = lambda: False,
                       keep_checkpoints: int = 3) -> Outcome:
    """Train `config` up to `config.epochs` epochs; write checkpoints and the run's files into `run`.

    `start`: continue from that checkpoint (from `restore(config, run)`), bit for bit as if never
    stopped; otherwise from scratch. After each epoch its checkpoint is saved, `on_epoch(epoch,
    record)` is called, and training stops if `should_stop()` is true in any process. `on_progress`
    (a progress bar) runs each epoch in chunks and is called between them; `stop_now()` is asked
    between chunks and abandons the epoch. `mesh` (from `parallel.make_mesh`) spreads the seeds, or
    each batch, over its devices. With `run=None` nothing is written.

    Each checkpoint is saved asynchronously, while the next epoch runs, and history.json is
    rewritten only once the checkpoint is committed: history.json never claims an epoch that no
    checkpoint holds. A failed write raises CheckpointError before another epoch is recorded.
    """
    train_data = tuple(a[:config.train_examples] for a in train_data)  # [:None] keeps all
    test_data = tuple(a[:config.test_examples] for a in test_data)
    program = programs(dataclasses.replace(
        config, test_batch_size=memory.eval_batch_size(config.test_batch_size, len(test_data[1]))), mesh)
    arrays = (*train_data, *test_data)
    if mesh is None:
        train_images, train_labels, test_images, test_labels = (jax.device_put(a) for a in arrays)
        state_sharding = None
    else:
        train_images, train_labels, test_images, test_labels = parallel.put(arrays, parallel.replicated(mesh))
        state_sharding = parallel.state_sharding(mesh)

    if start is not None:
        state, history = start.state, start.history
        if mesh is not None:
            state = parallel.put(state, state_sharding)
    else:
        state, history = initial_state(config, state_sharding), hist.empty()
    checkpointer = Checkpointer(run.checkpoint_dir, keep=keep_checkpoints) if run is not None else None
    uncommitted: hist.History | None = None  # the history of the checkpoint being written, if any

    def commit() -> None:
        """Wait for the pending checkpoint, then write the history that claims it."""
        nonlocal uncommitted
        if uncommitted is not None:
            history, uncommitted = uncommitted, None  # a failed wait must not be followed by a write
            checkpointer.wait()
            run.write_history(history)

    first_epoch = hist.epochs_done(history)
    begin = time.perf_counter()
    status, diverged_at = "finished", None
    try:
        for epoch in range(first_epoch, config.epochs):
            epoch_start = time.perf_counter()
            if on_progress is not None and mesh is None:
                commit()
                state, train_metrics = _run_chunked(program, state, train_images, train_labels, epoch,
                                                    config.batch_size, on_progress, stop_now)
                if train_metrics is None:  # abandoned mid-epoch: its state is of no epoch
                    status, state = "stopped", None
                    break
            else:
                # Dispatched asynchronously: the device trains while the last checkpoint commits.
                state, train_metrics = program.epoch(state, train_images, train_labels)
                commit()
            test_metrics, confusion = program.evaluate(state.params, test_images, test_labels)
            train_metrics, test_metrics, confusion = parallel.to_host((train_metrics, test_metrics, confusion))
            record = hist.epoch_record(train_metrics, test_metrics, confusion, time.perf_counter() - epoch_start)
            if hist.diverged(record):
                status, diverged_at = "diverged", (epoch, record)
                break
            history = hist.append(history, record)
            if run is not None:
                checkpointer.save(epoch + 1, state, history)
                uncommitted = history
            if on_epoch is not None:
                on_epoch(epoch, record)
            if parallel.agree_any(should_stop() or stop_now()) and epoch + 1 < config.epochs:
                status = "stopped"
                break
        commit()  # the last epoch's checkpoint, then the history that claims it
    except BaseException:
        if checkpointer is not None:
            with contextlib.suppress(Exception):  # the error in flight says more than a second one
                checkpointer.close()
        raise
    if checkpointer is not None:
        checkpointer.close()
    seconds = time.perf_counter() - begin
    if status == "diverged":  # the message names the newest checkpoint: asked once all saves are done
        return Outcome("diverged", None, history, first_epoch, seconds, _divergence_message(*diverged_at, checkpointer))
    if status == "stopped":
        return Outcome("stopped", state, history, first_epoch, seconds)
    if run is not None:
        _finish(config, run, state, history, test_data, seconds)
    return Outcome("finished", state, history, first_epoch, seconds)


def _divergence_message(epoch: int, record: dict[str, Any], checkpointer: Checkpointer | None) -> str:
    done = checkpointer.latest_epoch() if checkpointer is not None else None
    kept = f"the last good checkpoint (after epoch {done - 1}) is kept" if done else "no checkpoint was written"
    return (f"epoch {epoch}: the loss became {record['train_loss']} (train) / {record['test_loss']} (test), "
            f"beyond {hist.DIVERGED_LOSS:.0f} (ten times a uniform guess's); lower the learning rate; {kept}")


def _finish(config: TrainConfig, run: Run, state: TrainState, history: hist.History, test_data: Data,
            seconds: float) -> None:
    """The run's final files: params, seed runs, the two figures, then history.json marked finished."""
    device = jax.local_devices()[0]
    memory = device.memory_stats() or {}  # None on a CPU
    system = {"backend": jax.default_backend(), "device": device.device_kind, "jax": jax.__version__,
              "processes": jax.process_count(), "devices": jax.device_count(),
              "train_seconds": seconds, "peak_device_bytes": memory.get("peak_bytes_in_use")}
    params = parallel.to_host(state.params)  # a collective where the params span hosts
    if not run.primary:
        return
    from mnist_jax import plotting  # matplotlib takes half a second to import; only this needs it

    first_seed = params if config.seeds == 1 else jax.tree_util.tree_map(lambda p: p[0], params)
    images, labels = test_data
    figures = {
        "training.svg": plotting.plot_history(history),
        "classification.svg": plotting.classification_sample(first_seed, classifier_for(config), images, labels,
                                                             jax.random.key(config.seed)),
    }
    run.finish(history, params, system, {name: plotting.figure_bytes(fig) for name, fig in figures.items()})


def fit(config: TrainConfig, train_data: Data, test_data: Data, *, mesh: jax.sharding.Mesh | None = None,
        on_epoch: Callable[[int, dict[str, Any]], Any] | None = None) -> tuple[TrainState, hist.History]:
    """Train `config` from scratch in memory; the same config on the same platform gives the same
    history, bit for bit. Raises ArithmeticError if the loss diverges."""
    outcome = train_and_evaluate(config, None, train_data, test_data, mesh=mesh, on_epoch=on_epoch)
    if outcome.status == "diverged":
        raise ArithmeticError(outcome.message)
    return outcome.state, outcome.history

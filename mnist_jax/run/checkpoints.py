"""Orbax checkpoints of the whole `TrainState` and the history, one per epoch, the last few kept.

    checkpointer = Checkpointer(run_dir / "checkpoints", keep=3)
    checkpointer.save(epochs_done, state, history)     # asynchronous
    checkpointer.wait()                                 # committed (or a CheckpointError)
    restored = checkpointer.restore_latest(template_state)   # the newest intact one
    hook = CheckpointHook(checkpointer, write_history)  # both, after every epoch of mnist_jax.run.loop

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a crash
mid-save leaves the previous checkpoints intact (and the next Checkpointer removes the leftover).
Saving is asynchronous: Orbax serializes what `save` hands it later, on another thread, so `save`
hands it copies that nothing else holds.

Each checkpoint also holds the SHA-256 of its state and history (the `digest` item, computed with
hashlib from the arrays' bytes as saved); a restore recomputes it, so a checkpoint damaged on disk is
refused instead of training on from wrong numbers, and `restore_latest` falls back to an older one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from mnist_jax.errors import CheckpointError
from mnist_jax.fast import parallel
from mnist_jax.hooks import Hook
from mnist_jax.run.history import History
from mnist_jax.steps import TrainState

ITEMS = ("state", "history", "digest")


class Restored(NamedTuple):
    state: TrainState
    history: History
    epoch: int  # epochs done: the checkpoint's step
    damaged: tuple[CheckpointError, ...]  # newer checkpoints that were skipped, newest first


def _to_tree(state: TrainState) -> dict[str, Any]:
    # Host copies: the device buffers are donated to the next epoch while Orbax may still write.
    # The typed PRNG key is stored as its raw uint32 data.
    return parallel.to_host({"params": state.params, "opt_state": state.opt_state, "step": state.step,
                             "key": jax.random.key_data(state.key)})


def digest(tree: Any, history: History) -> str:
    """SHA-256 of a state tree (each leaf's path, dtype, shape and bytes) and of the history."""
    sha = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.ascontiguousarray(leaf)
        sha.update(f"{jax.tree_util.keystr(path)} {array.dtype.str} {array.shape}\n".encode())
        sha.update(array.tobytes())
    sha.update(json.dumps(history, sort_keys=True).encode())
    return f"sha256:{sha.hexdigest()}"


def reason(error: BaseException) -> str:
    """The gist of an I/O error in a few words: the OS's own words where the error carries them."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    code = re.search(r"os_error_code='(\d+)'", text) or re.search(r"OS error (\d+):", text)  # tensorstore's
    if code:
        return os.strerror(int(code.group(1)))
    return text.splitlines()[0][:200] if text else type(error).__name__


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, keep: int = 3, create: bool = True):
        """`create=False` only reads: a missing directory then means no checkpoints, and is not made."""
        self.directory = Path(directory).absolute()
        self._saving: int | None = None  # the epoch whose checkpoint is being written
        try:
            self.manager = ocp.CheckpointManager(
                self.directory, item_names=ITEMS,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep, create=create, read_only=not create, cleanup_tmp_directories=create,
                    # Deleting the oldest checkpoint in a thread of its own: done inside the save, it
                    # held each 0.05 s epoch on an NVIDIA H200 to 0.14 s (close() waits for it).
                    enable_background_delete=True,
                    # A step directory that cannot be made fails in save() itself; made asynchronously,
                    # Orbax's other threads wait 300 s for it before the error surfaces.
                    async_options=ocp.AsyncOptions(create_directories_asynchronously=False)))
        except Exception as e:  # noqa: BLE001 - OSError, or Orbax's own errors about the directory
            raise CheckpointError(f"{self.directory}: cannot use as a checkpoint directory ({reason(e)})") from None

    def save(self, epochs_done: int, state: TrainState, history: History) -> None:
        """Checkpoint after `epochs_done` epochs, asynchronously: `wait()` says when it is committed.

        The state and history are copied first: the caller may go on to change them (the next
        epoch reuses the state's donated buffers and extends the history) while Orbax writes.
        A damaged checkpoint of the same epoch (one that a resume skipped) is replaced.
        """
        history_snapshot = json.loads(json.dumps(history))
        tree = _to_tree(state)
        try:
            if epochs_done in self.manager.all_steps():
                self._remove(epochs_done)
            self.manager.save(epochs_done, args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), history=ocp.args.JsonSave(history_snapshot),
                digest=ocp.args.JsonSave({"state_and_history": digest(tree, history_snapshot)})))
            self._saving = epochs_done
        except Exception as e:  # noqa: BLE001 - OSError and the wrappers of tensorstore's errors
            raise CheckpointError(f"{self.directory / str(epochs_done)}: cannot write the checkpoint "
                                  f"({reason(e)}); the earlier checkpoints are kept") from None

    def _remove(self, epochs_done: int) -> None:
        """Remove a checkpoint at once (Orbax's delete runs in the background here): process 0
        removes it, the others wait, up to a minute, until they see it gone."""
        path = self.directory / str(epochs_done)
        if jax.process_index() == 0:
            shutil.rmtree(path)
        deadline = time.monotonic() + 60
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.manager.reload()

    def wait(self) -> None:
        """Block until the pending save is committed; a CheckpointError if it failed."""
        saving, self._saving = self._saving, None
        where = self.directory if saving is None else self.directory / str(saving)
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{where}: cannot write the checkpoint ({reason(e)}); "
                                  f"the earlier checkpoints are kept") from None
        # Orbax renames a checkpoint into place when it is complete; its wait can return quietly
        # after a failure it has already reported once.
        if saving is not None and not where.is_dir():
            raise CheckpointError(f"{where}: the checkpoint was not written; the earlier checkpoints are kept")

    def epochs(self) -> list[int]:
        """Epochs done of the checkpoints on disk, oldest first."""
        return sorted(self.manager.all_steps()) if self.directory.is_dir() else []

    def latest_epoch(self) -> int | None:
        epochs = self.epochs()
        return epochs[-1] if epochs else None

    def restore(self, epoch: int, template: TrainState) -> tuple[TrainState, History]:
        """The checkpoint after `epoch` epochs, shaped like `template` (a state of the same model and
        optimizer), verified against its digest."""
        where = self.directory / str(epoch)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _to_tree(template))
        try:
            restored = self.manager.restore(epoch, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore(),
                digest=ocp.args.JsonRestore()))
            tree, history, saved_digest = restored["state"], restored["history"], restored["digest"]
            for got, want in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(abstract)):
                if np.shape(got) != want.shape:
                    raise ValueError(f"shape {np.shape(got)} where the model has {want.shape}")
        except Exception as e:  # noqa: BLE001 - Orbax and tensorstore raise many types for unreadable data
            raise CheckpointError(f"{where}: cannot restore checkpoint ({reason(e)})") from None
        tree = jax.tree_util.tree_map(np.asarray, tree)
        if not isinstance(saved_digest, dict) or saved_digest.get("state_and_history") != digest(tree, history):
            raise CheckpointError(f"{where}: damaged checkpoint (its content does not match the SHA-256 "
                                  f"saved with it)")
        if not isinstance(history, dict) or len(history.get("train_loss", [])) != epoch:
            raise CheckpointError(f"{where}: history does not match the checkpoint")
        state = TrainState(params=tree["params"], opt_state=tree["opt_state"], step=tree["step"],
                           key=jax.random.wrap_key_data(tree["key"]))
        return state, history

    def restore_latest(self, template: TrainState) -> Restored:
        """The newest checkpoint that restores and matches its digest; the damaged newer ones are
        listed in `damaged`. A CheckpointError if there is none, naming the newest's fault."""
        damaged: list[CheckpointError] = []
        for epoch in reversed(self.epochs()):
            try:
                return Restored(*self.restore(epoch, template), epoch, tuple(damaged))
            except CheckpointError as e:
                damaged.append(e)
        if damaged:
            older = f" (and the {len(damaged) - 1} older ones too)" if len(damaged) > 1 else ""
            raise CheckpointError(f"{damaged[0]}{older}")
        raise CheckpointError(f"{self.directory}: no checkpoint found")

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, error_type, *rest) -> None:
        if error_type is None:
            self.close()
        else:
            with contextlib.suppress(Exception):  # the error in flight says more than a second one
                self.close()

    def close(self) -> None:
        """Wait for pending saves and release Orbax's threads; a CheckpointError if a save failed."""
        try:
            self.wait()
        finally:
            try:
                self.manager.close()
            except Exception:  # noqa: BLE001 - the failed save's error again; wait() said it
                pass


class CheckpointHook(Hook):
    """Checkpoints every epoch, asynchronously, and calls `write_history` (the run's history.json)
    only once that checkpoint is committed: the history never claims an epoch no checkpoint holds.

    Epoch N's checkpoint is written while epoch N+1 trains: the hook waits for it once epoch N+1 is
    dispatched, then writes the history. A failed write raises CheckpointError there, before
    another epoch is recorded.
    """

    def __init__(self, checkpointer: Checkpointer, write_history: Callable[[History], None]):
        self.checkpointer = checkpointer
        self.write_history = write_history
        self.pending: History | None = None  # the history of the checkpoint being written

    def on_epoch(self, epoch, record, state, history):
        self.checkpointer.save(epoch + 1, state, history)
        self.pending = history

    def on_epoch_dispatched(self, epoch):
        self.commit()

    def on_end(self, outcome):
        self.commit()

    def commit(self) -> None:
        """Wait for the pending checkpoint, then write the history that claims it."""
        history, self.pending = self.pending, None  # a failed wait must not be followed by a write
        if history is not None:
            self.checkpointer.wait()
            self.write_history(history)

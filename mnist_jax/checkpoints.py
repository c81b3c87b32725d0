"""Orbax checkpoints of the whole `TrainState` and the history, one per epoch, the last few kept.

    checkpointer = Checkpointer(run_dir / "checkpoints", keep=3)
    checkpointer.save(epochs_done, state, history)
    state, history = checkpointer.restore_latest(template_state)

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a crash
mid-save leaves the previous checkpoints intact. Saving is asynchronous: Orbax serializes what
`save` hands it later, on another thread, so `save` hands it copies that nothing else holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mnist_jax import parallel
from mnist_jax.errors import UserError
from mnist_jax.history import History
from mnist_jax.train import TrainState


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable or does not fit the model; the message is one line."""


def _to_tree(state: TrainState) -> dict[str, Any]:
    # Host copies: the device buffers are donated to the next epoch while Orbax may still write.
    # The typed PRNG key is stored as its raw uint32 data.
    return parallel.to_host({"params": state.params, "opt_state": state.opt_state, "step": state.step,
                             "key": jax.random.key_data(state.key)})


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, keep: int = 3, create: bool = True):
        """`create=False` only reads: a missing directory then means no checkpoints, and is not made."""
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "history"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, read_only=not create),
        )

    def save(self, epochs_done: int, state: TrainState, history: History) -> None:
        """Checkpoint after `epochs_done` epochs (asynchronously; `close()` waits).

        The state and history are copied first: the caller may go on to change them (the next
        epoch reuses the state's donated buffers and extends the history) while Orbax writes.
        """
        history_snapshot = json.loads(json.dumps(history))
        self.manager.save(epochs_done, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_tree(state)), history=ocp.args.JsonSave(history_snapshot)))

    def latest_epoch(self) -> int | None:
        return self.manager.latest_step() if self.directory.is_dir() else None

    def restore_latest(self, template: TrainState) -> tuple[TrainState, History]:
        """The newest checkpoint, shaped like `template` (a state of the same model and optimizer)."""
        epoch = self.latest_epoch()
        if epoch is None:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _to_tree(template))
        try:
            restored = self.manager.restore(epoch, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
            tree, history = restored["state"], restored["history"]
            for got, want in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(abstract)):
                if np.shape(got) != want.shape:
                    raise ValueError(f"shape {np.shape(got)} where the model has {want.shape}")
        except Exception as e:  # Orbax and tensorstore raise many types for unreadable data
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise CheckpointError(f"{self.directory / str(epoch)}: cannot restore checkpoint ({reason})") from None
        if not isinstance(history, dict) or len(history.get("train_loss", [])) != epoch:
            raise CheckpointError(f"{self.directory / str(epoch)}: history does not match the checkpoint")
        state = TrainState(params=tree["params"], opt_state=tree["opt_state"], step=tree["step"],
                           key=jax.random.wrap_key_data(tree["key"]))
        return state, history

    def close(self) -> None:
        """Wait for pending saves and release Orbax's threads."""
        self.manager.wait_until_finished()
        self.manager.close()

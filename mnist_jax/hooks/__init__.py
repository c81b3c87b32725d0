"""Hooks: the one way to watch or steer a run. Subclass `Hook` and override what you need.

    class PrintAccuracy(Hook):
        def on_epoch(self, epoch, record, state, history):
            print(epoch, record["test_accuracy"])

    experiment.run(config, "runs/x", hooks=[*console.default_hooks(), PrintAccuracy()])
    loop.fit(config, train_data, test_data, hooks=[PrintAccuracy()])

The training loop (`mnist_jax.run.loop`) calls `on_epoch_start`, `on_epoch_dispatched`, `on_progress`,
`on_epoch`, `stop` and `on_end`; the experiment (`mnist_jax.run.experiment`) also calls `on_prepare` and `on_start` before
training. The command line's output, the progress bar, stopping on Ctrl-C and the checkpoints are
hooks too (`mnist_jax.hooks.console`, `mnist_jax.run.checkpoints.CheckpointHook`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mnist_jax.config import TrainConfig

if TYPE_CHECKING:  # for the annotations only
    from mnist_jax.steps import TrainState

Stop = Literal["after-epoch", "now"]


class Ended(Protocol):
    """How training ended, as `on_end` gets it: a `mnist_jax.run.loop.Outcome`, described here
    because the loop, a higher layer, imports this module (not the other way round)."""

    status: Literal["finished", "stopped", "diverged"]
    state: TrainState | None  # the last good state (None if diverged or stopped mid-epoch)
    history: dict[str, list]
    config: TrainConfig | None


@dataclasses.dataclass(frozen=True)
class Start:
    """What a run is about to train, as the experiment found it."""

    config: TrainConfig
    workdir: Path | None
    dataset: Path  # the prepared dataset's directory
    num_train: int
    num_test: int
    layout: str  # how the work is spread over devices (mnist_jax.fast.parallel.describe)
    history: dict[str, list]  # the epochs already done (a resumed run), else empty
    skipped: tuple[str, ...] = ()  # newer checkpoints a resume passed over as damaged, newest first


class Hook:
    """Called at fixed points of a run; every method does nothing unless overridden."""

    # More than 1: run each epoch as that many scans and call `on_progress` between them (one
    # dispatch each, about 70 ms on a 2-core CPU; 1 runs the epoch as one scan). Ignored for a run
    # spread over several devices, where every process must dispatch the same programs.
    progress_chunks: int = 1

    def on_prepare(self, source: Path, dataset: str = "mnist") -> None:
        """The dataset `dataset` (a name in data.DATASETS) is about to be prepared from the IDX files
        in `source` (once per data dir)."""

    def on_start(self, start: Start) -> None:
        """Data, devices and the starting point are settled; training starts next."""

    def on_epoch_start(self, epoch: int) -> None:
        """Epoch `epoch` is about to start: nothing of it is dispatched yet (a profiler starts here)."""

    def on_epoch_dispatched(self, epoch: int) -> None:
        """Epoch `epoch`'s first chunk has been handed to the device: host work here overlaps it."""

    def on_progress(self, epoch: int, done: int, total: int) -> None:
        """`done` of the epoch's `total` batches are trained (with progress_chunks > 1 only)."""

    def on_epoch(self, epoch: int, record: dict[str, Any], state: TrainState, history: dict[str, list]) -> None:
        """Epoch `epoch` is done: its history `record`, the state after it, and the whole history."""

    def stop(self) -> Stop | None:
        """Asked after each epoch (stop if not None) and between chunks (abandon the epoch if "now")."""
        return None

    def on_end(self, outcome: Ended) -> None:
        """Training ended: finished, stopped or diverged."""


class Hooks(Hook):
    """Several hooks as one, called in their order."""

    def __init__(self, hooks: Sequence[Hook]):
        self.hooks = tuple(hooks)

    @property
    def progress_chunks(self) -> int:  # asked when training starts: a hook may set its own in on_start
        return max((h.progress_chunks for h in self.hooks), default=1)

    def on_prepare(self, source, dataset="mnist"):
        for h in self.hooks:
            h.on_prepare(source, dataset)

    def on_start(self, start):
        for h in self.hooks:
            h.on_start(start)

    def on_epoch_start(self, epoch):
        for h in self.hooks:
            h.on_epoch_start(epoch)

    def on_epoch_dispatched(self, epoch):
        for h in self.hooks:
            h.on_epoch_dispatched(epoch)

    def on_progress(self, epoch, done, total):
        for h in self.hooks:
            h.on_progress(epoch, done, total)

    def on_epoch(self, epoch, record, state, history):
        for h in self.hooks:
            h.on_epoch(epoch, record, state, history)

    def stop(self):
        asked = {h.stop() for h in self.hooks}
        return "now" if "now" in asked else "after-epoch" if "after-epoch" in asked else None

    def on_end(self, outcome):
        for h in self.hooks:
            h.on_end(outcome)


def __getattr__(name: str):  # the shipped hooks' modules, imported on first use
    import mnist_jax

    return mnist_jax.lazy_submodules(__name__, __path__)(name)

"""A `jax.profiler` trace of one epoch, as a hook: `mnist-jax train --profile-epoch N`.

    experiment.run(config, "runs/x", RunOptions(profile_epoch=1))    # epoch 1 traced into runs/x/profile/
    tensorboard --logdir runs/x/profile                               # the Profile tab (tensorboard-plugin-profile)

The trace covers the epoch's training scans and its test set, from its first dispatch to its record
on the host. It is written as TensorBoard's profile (plugins/profile/<time>/<host>.xplane.pb) and
as perfetto_trace.json.gz, which https://ui.perfetto.dev opens as it is. Profile epoch 1 or later
to leave compilation out of it: epoch 0 compiles every program first.
"""

from __future__ import annotations

from pathlib import Path

import jax

from mnist_jax.hooks import Hook


class ProfileEpoch(Hook):
    """Traces epoch `epoch` into `directory` (the experiment: RUN_DIR/profile)."""

    def __init__(self, epoch: int, directory: str | Path):
        self.epoch = epoch
        self.directory = Path(directory)
        self.tracing = False

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == self.epoch:
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self.tracing = True

    def on_epoch(self, epoch, record, state, history) -> None:
        if self.tracing:  # the record is on the host: everything of the epoch has run
            self._stop()

    def on_end(self, outcome) -> None:
        if self.tracing:  # stopped or diverged inside the traced epoch
            self._stop()

    def _stop(self) -> None:
        self.tracing = False
        jax.profiler.stop_trace()

    def traces(self) -> list[Path]:
        """The Perfetto trace files written so far."""
        return sorted(self.directory.rglob("perfetto_trace.json.gz"))

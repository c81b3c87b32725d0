"""A `jax.profiler` trace of one epoch, as a hook: `mnist-jax train --profile-epoch N`.

    experiment.run(config, "runs/x", RunOptions(profile_epoch=1))    # epoch 1 traced into runs/x/profile/
    tensorboard --logdir runs/x/profile                               # the Profile tab (tensorboard-plugin-profile)

The trace covers the epoch's training scans and its test set, from its first dispatch to its record
on the host. It is written as TensorBoard's profile (plugins/profile/<time>/<host>.xplane.pb) and
as perfetto_trace.json.gz, which https://ui.perfetto.dev opens as it is. Profile epoch 1 or later
to leave compilation out of it: epoch 0 compiles every program first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

from mnist_jax.errors import UserError
from mnist_jax.hooks import Hook, Start


class ProfileEpoch(Hook):
    """Traces epoch `epoch` into `directory` (the experiment: RUN_DIR/profile)."""

    def __init__(self, epoch: int, directory: str | Path):
        self.epoch = epoch
        self.directory = Path(directory)
        self.tracing = False

    def on_start(self, start: Start) -> None:
        # Checked before training, not after the epoch it would trace has been trained.
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reason = "not a folder" if self.directory.exists() and not self.directory.is_dir() else e.strerror
            raise UserError(f"{self.directory}: cannot write the profile here ({reason}); move it away or "
                            f"train without --profile-epoch") from None
        if self.epoch == 0:
            print("note: epoch 0 compiles every program first, so its trace is mostly compiling; "
                  "--profile-epoch 1 or later shows training", file=sys.stderr)

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

    def summary(self) -> str | None:
        """Where the trace went, for the command's last lines; None before it is written."""
        traces = self.traces()
        if not traces:
            return None
        size = sum(p.stat().st_size for p in traces[-1].parent.iterdir() if p.is_file())
        return (f"Profiled epoch {self.epoch} into {traces[-1].parent} ({size / 2**20:.0f} MB): "
                f"tensorboard --logdir {self.directory} (its Profile tab needs tensorboard-plugin-profile, "
                f"in the [profile] extra), or open {traces[-1].name} in https://ui.perfetto.dev")

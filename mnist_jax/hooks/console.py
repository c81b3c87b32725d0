"""What a run shows in a terminal and how it hears Ctrl-C, as hooks (`mnist_jax.hooks`).

    hooks = default_hooks(progress="auto")   # the notebook's lines; a progress bar on a CPU terminal
    experiment.run(config, "runs/x", hooks=hooks)

`Printer` prints what `mnist-jax train` prints: the dataset, the devices, the model summary and one
line per epoch in the notebook's format. `ProgressBar` draws a bar within each epoch. `StopOnSignal`
turns Ctrl-C and SIGTERM into a stop after the epoch; the experiment installs it around training.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import jax

from mnist_jax.config import Progress, TrainConfig
from mnist_jax.hooks import Hook, Start
from mnist_jax.metrics import epoch_entry, format_epoch
from mnist_jax.networks import model_summary, param_shapes
from mnist_jax.sweep import value_records

# Updates per epoch when a progress bar is shown: each is one more dispatch, about 70 ms on a 2-core
# CPU (an epoch in 20 scans took 17.6 s against 16.2 s in one), so the bar moves in tenths.
PROGRESS_CHUNKS = 10


class Printer(Hook):
    """The command line's output: what will be trained, on what, then the notebook's epoch lines."""

    def __init__(self):
        self.config: TrainConfig | None = None  # the run's, from on_start

    def on_prepare(self, source, dataset="mnist"):
        from mnist_jax.data.datasets import DATASETS

        print(f"Preparing {DATASETS[dataset].title} from {source} (once, a few seconds)", flush=True)

    def on_start(self, start: Start):
        from mnist_jax.data.datasets import DATASETS

        config = self.config = start.config
        print(f"{DATASETS[config.dataset].title}: {start.num_train} train / {start.num_test} test examples "
              f"from {start.dataset}")
        device = jax.local_devices()[0]
        print(f"JAX {jax.__version__} on {device.device_kind} ({jax.default_backend()}): {start.layout}; "
              f"matmul precision {config.precision}")
        if (config.optimizer, config.schedule) != ("adam", "constant"):  # the notebook's says nothing
            print(f"Optimizer: {config.optimizer}, learning rate {config.learning_rate:g} on a {config.schedule} "
                  f"schedule")
        if (config.network, config.model, config.augment) != ("cnn", "linen", "none"):  # idem
            shift = f" of up to {config.augment_shift} pixels" if config.augment == "shift" else ""
            print(f"Network: {config.network} (Flax {config.model}); augmentation: {config.augment}{shift}")
        if config.sweep is not None:
            name, values = config.sweep_name, config.sweep_values
            seeds = f" x {config.seeds} seeds ({config.seed}-{config.seed + config.seeds - 1})" if config.seeds > 1 else ""
            print(f"Sweep of {name}: {', '.join(repr(float(v)) for v in values)}{seeds}, {config.models} models in one "
                  f"program; one line per value{', each value the mean +- std over its seeds' if seeds else ''}")
        elif config.seeds > 1:
            print(f"{config.seeds} seeds ({config.seed}-{config.seed + config.seeds - 1}); "
                  f"each value below is the mean +- std over the seeds")
        print(model_summary(param_shapes(config)), flush=True)
        for skipped in start.skipped:
            print(f"{skipped}: skipped", file=sys.stderr)
        done = len(start.history["train_loss"])
        if start.skipped:
            print(f"Resuming from the checkpoint after epoch {done - 1} instead", file=sys.stderr)
        if done:
            print(f"Resuming {start.workdir} after epoch {done - 1}")
            for epoch in range(done):
                self._print_epoch(epoch, epoch_entry(start.history, epoch))

    def on_epoch(self, epoch, record, state, history):
        self._print_epoch(epoch, record)

    def _print_epoch(self, epoch: int, record: dict) -> None:
        if self.config is None or self.config.sweep is None:
            print(format_epoch(epoch, record), flush=True)
            return
        for name, part in value_records(self.config, record):  # the notebook's line, then the value
            print(f"{format_epoch(epoch, part)} ({name})", flush=True)


class ProgressBar(Hook):
    """A tqdm bar per epoch, on stderr, fed between chunks of the epoch; it clears itself when the
    epoch ends, so the terminal keeps only the notebook's lines."""

    progress_chunks = PROGRESS_CHUNKS

    def __init__(self):
        self.bar = None

    def on_progress(self, epoch: int, done: int, total: int) -> None:
        from tqdm import tqdm

        if done == 0:
            self.bar = tqdm(total=total, desc=f"epoch {epoch:2d}", unit="batch", leave=False, file=sys.stderr,
                            dynamic_ncols=True)
        elif self.bar is not None:
            self.bar.update(done - self.bar.n)
        if done == total and self.bar is not None:
            self.bar.close()
            self.bar = None


class StepLines(Hook):
    """A line every `interval` training steps of an epoch (`--log-interval`, as pytorch/examples'):
    a sign of life where no progress bar is drawn. The epoch runs as that many scans."""

    def __init__(self, interval: int):
        self.interval = interval
        self.progress_chunks = 1
        self.started = 0.0

    def on_start(self, start: Start) -> None:
        steps = -(-start.num_train // start.config.batch_size)
        self.progress_chunks = max(1, -(-steps // self.interval))

    def on_progress(self, epoch: int, done: int, total: int) -> None:
        if done == 0:
            self.started = time.perf_counter()
        else:
            print(f"[epoch {epoch:2d}] step {done}/{total} ({done / total:.0%}), "
                  f"{time.perf_counter() - self.started:.1f} s", flush=True)


class StopOnSignal(Hook):
    """SIGINT and SIGTERM ask training to stop after the current epoch, once its checkpoint is saved;
    a second Ctrl-C asks it to stop sooner, at the next chunk of the epoch (with a progress bar),
    keeping the checkpoints of every epoch printed so far.

    Neither signal raises an exception: the handler only sets flags that the training loop reads
    between steps, so no write (a checkpoint, history.json, the final files) is ever cut halfway.
    Use as a context manager: it handles both signals inside the block and restores the old handlers.
    Outside the main thread, where Python cannot take signals, it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None
        self.now = False
        self._previous: dict[int, object] = {}

    def __call__(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            self.now = True
            message = ("SIGINT again: stopping at the next chunk of the epoch (or its end, without a progress "
                       "bar or --log-interval); every checkpoint written is kept")
        else:
            self.signal = self.signal or signum
            message = (f"{signal.Signals(signum).name}: stopping after this epoch, once its checkpoint is saved "
                       f"(Ctrl-C again to stop sooner)")
        # os.write, not print: a handler may run while the main thread is inside a print to stderr.
        os.write(sys.stderr.fileno(), f"\n{message}\n".encode())

    def stop(self):
        return "now" if self.now else "after-epoch" if self.signal is not None else None

    def __enter__(self) -> StopOnSignal:
        try:
            self._previous = {s: signal.signal(s, self) for s in self.SIGNALS}
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def default_hooks(progress: Progress = "auto", log_interval: int | None = None) -> list[Hook]:
    """What `mnist-jax train` shows: the `Printer`, a `ProgressBar` when `progress` is "on", or
    "auto" on a CPU with stderr a terminal, and `StepLines` with a `log_interval` (process 0 only)."""
    primary = jax.process_index() == 0
    show = primary and (progress == "on" or (
        progress == "auto" and jax.default_backend() == "cpu" and sys.stderr.isatty()))
    lines = [StepLines(log_interval)] if log_interval and primary else []
    return [Printer(), *([ProgressBar()] if show else []), *lines]


def seeds_summary(final_accuracies, workdir) -> str:
    """The line after a run of several seeds: their final test accuracies' mean, spread and range
    (`final_accuracies`, one a seed), and where each seed's run is."""
    import numpy as np

    final = np.asarray(final_accuracies)
    return (f"Final test accuracy over {len(final)} seeds: {final.mean():.4f} +- {final.std(ddof=1):.4f} "
            f"(min {final.min():.4f}, max {final.max():.4f}); each seed's run is in {workdir}/seed-S")


def epochs_phrase(first: int, last: int) -> str:
    """The epochs a run trained, `first` to `last`: "30 epochs" from the start, else "epochs 3-5"."""
    if first == 0:
        return f"{last + 1} epoch{'s' if last else ''}"
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def stopped_line(workdir, last: int, mid_epoch: bool, by_hook: bool = False) -> str:
    """The line after a run stopped (by a signal, or a hook's `stop`) with `last` its last finished
    epoch (-1: none yet): where it stands and the command that goes on."""
    import shlex

    if last < 0:
        return (f"Stopped in the first epoch, before any checkpoint. Start again with: "
                f"mnist-jax train --run-dir {shlex.quote(str(workdir))} --overwrite")
    where = "mid-epoch" if mid_epoch else f"after epoch {last}"
    return (f"Stopped {where}{' as a hook asked' if by_hook else ''}; the checkpoint after epoch {last} and the history are in {workdir}. "
            f"Resume with: mnist-jax train --resume {shlex.quote(str(workdir))}")


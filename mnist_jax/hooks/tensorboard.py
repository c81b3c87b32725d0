"""TensorBoard event files of a run, written from history.json's records (no TensorFlow): a hook.

    tensorboard --logdir runs         # every run's RUN_DIR/tensorboard/, side by side

Per epoch: the train and test loss and accuracy, the learning rate, the epoch's seconds and each
class's test accuracy (test/accuracy_class_C, and the class's name after C where it is not the
digit C: test/accuracy_class_0_T_shirt_top); per train step: the batch's loss (what the scan
already returns). The values are history.json's, as float32. A run of several seeds writes each
seed's under seed_S/. The experiment adds this hook on process 0 unless `RunOptions.tensorboard` is off.

The logs follow the history through every stop and resume: each directory holds one event file,
`events.out.tfevents.mnist_jax`. Each epoch's events are appended and flushed to the operating
system before history.json claims the epoch (tensorboardX's writer would queue them on a thread
that a kill loses). When a run resumes, the file is rewritten (atomically) with the epochs of the
history it resumes from, the epoch values from the history and the batch losses from the file, so
a resume past a damaged checkpoint repeats no step and an epoch cut off by a kill is not kept.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mnist_jax.errors import UserError
from mnist_jax.files import write_atomic
from mnist_jax.hooks import Hook, Start
from mnist_jax.metrics import Metric, declared, epoch_entry, epochs_done
from mnist_jax.steps import num_batches
from mnist_jax.sweep import model_dir_names

EVENT_FILE = "events.out.tfevents.mnist_jax"  # TensorBoard reads any file with "tfevents" in its name


def class_tags(class_names: Sequence[str]) -> list[str]:
    """The per-class accuracy tags: test/accuracy_class_C, with the name (letters and digits, the
    rest "_") appended where it is not C itself."""
    tags = []
    for c, name in enumerate(class_names):
        slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
        tags.append(f"test/accuracy_class_{c}" if slug == str(c) else f"test/accuracy_class_{c}_{slug}")
    return tags


def epoch_scalars(epoch: int, record: dict[str, Any], class_tags: Sequence[str], seed: int | None,
                  metrics: Sequence[Metric] | None = None, batch_losses: bool = True) -> Iterator[tuple[str, float, int]]:
    """(tag, value, step) of every scalar of one epoch's `record` (the batch losses too, unless not
    `batch_losses`: a history holds none); `seed`: that seed's values of a multi-seed record, None
    for a one-seed run."""
    def of_seed(value):
        return value if seed is None or np.ndim(value) == 0 else value[seed]

    for metric in declared(metrics):
        if metric.tag is not None and record.get(metric.key) is not None:
            yield metric.tag, of_seed(record[metric.key]), epoch
    for tag, accuracy in zip(class_tags, of_seed(record["test_class_accuracy"]), strict=True):
        yield tag, accuracy, epoch
    if not batch_losses:
        return
    losses = of_seed(record["train_batch_loss"])
    for step, loss in enumerate(losses, start=epoch * len(losses)):
        yield "train/batch_loss", loss, step


def _frame(event) -> bytes:
    """An event as a TFRecord: its length, the length's CRC, the event, its CRC."""
    from tensorboardX.record_writer import masked_crc32c

    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _records(scalars, wall_time: float) -> bytes:
    """One scalar event each, framed."""
    from tensorboardX.proto import event_pb2, summary_pb2

    return b"".join(_frame(event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]))) for tag, value, step in scalars)


def _read_events(path: Path) -> Iterator[Any]:
    """The events of an event file, up to the first record that is cut off or damaged."""
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    data, at = path.read_bytes(), 0
    while at + 12 <= len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        body = data[at + 12:at + 12 + length]
        end = at + 16 + length
        if (struct.unpack("<I", data[at + 8:at + 12])[0] != masked_crc32c(header) or end > len(data)
                or struct.unpack("<I", data[end - 4:end])[0] != masked_crc32c(body)):
            return
        yield event_pb2.Event.FromString(body)
        at = end


def _batch_losses(folder: Path, steps: int) -> list[tuple[str, float, int]]:
    """The batch losses of the first `steps` train steps logged in `folder`'s event files, each once."""
    losses = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        if path.is_file():
            for event in _read_events(path):
                for value in event.summary.value:
                    if value.tag == "train/batch_loss" and event.step < steps:
                        losses[event.step] = value.simple_value
    return [("train/batch_loss", loss, step) for step, loss in sorted(losses.items())]


def _file_version(wall_time: float) -> bytes:
    """The event every event file starts with."""
    from tensorboardX.proto import event_pb2

    return _frame(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2"))


class TensorBoard(Hook):
    """Keeps `directory` (the experiment: RUN_DIR/tensorboard) an event-file copy of the run's history."""

    def __init__(self, directory: str | Path, metrics: Sequence[Metric] | None = None):
        self.directory = Path(directory)
        self.metrics = declared(metrics)
        self.files: list[BinaryIO] = []  # one per seed, appended to
        self.class_tags: list[str] = []

    def on_start(self, start: Start) -> None:
        from mnist_jax.data.datasets import DATASETS

        self.class_tags = class_tags(DATASETS[start.config.dataset].class_names)
        seeds = start.config.models
        folders = [self.directory] if seeds == 1 else [self.directory / name.replace("seed-", "seed_")
                                                        for name in model_dir_names(start.config)]
        done = epochs_done(start.history)
        steps_done = done * num_batches(start.num_train, start.config.batch_size)
        now = time.time()
        for i, folder in enumerate(folders):
            seed = None if seeds == 1 else i
            path = folder / EVENT_FILE
            try:
                folder.mkdir(parents=True, exist_ok=True)
                logged = [scalar for e in range(done) for scalar in epoch_scalars(
                    e, epoch_entry(start.history, e), self.class_tags, seed, self.metrics, batch_losses=False)]
                logged += _batch_losses(folder, steps_done) if done else []
                write_atomic(path, _file_version(now) + _records(logged, now))
                for other in folder.glob("events.out.tfevents.*"):  # an older writer's, or a half-moved one
                    if other.name != EVENT_FILE and other.is_file():
                        other.unlink()
                self.files.append(open(path, "ab"))  # noqa: SIM115 -- closed by on_end
            except OSError as e:
                self.on_end(None)
                reason = "not a folder" if folder.exists() and not folder.is_dir() else e.strerror
                raise UserError(f"{folder}: cannot write the TensorBoard logs here ({reason}); "
                                f"move it away or train with --no-tensorboard") from None

    def on_epoch(self, epoch, record, state, history) -> None:
        now = time.time()
        for i, file in enumerate(self.files):
            seed = None if len(self.files) == 1 else i
            file.write(_records(epoch_scalars(epoch, record, self.class_tags, seed, self.metrics), now))
            file.flush()  # in the OS's hands: a kill of this process no longer loses it

    def on_end(self, outcome) -> None:
        for file in self.files:
            file.close()
        self.files = []

"""TensorBoard event files of a run, written with tensorboardX (no TensorFlow): a hook.

    tensorboard --logdir runs         # every run's RUN_DIR/tensorboard/, side by side

Per epoch: the train and test loss and accuracy, the learning rate, the epoch's seconds and each
class's test accuracy (test/accuracy_class_C, and the class's name after C where it is not the
digit C: test/accuracy_class_0_T_shirt_top); per train step: the batch's loss (what the scan already returns). The
values are history.json's, as float32. A run of several seeds writes each seed's under seed_S/.
The experiment adds this hook on process 0 unless `RunOptions.tensorboard` is off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_jax.history import METRICS, Metric
from mnist_jax.hooks import Hook, Start



def class_tags(class_names: Sequence[str]) -> list[str]:
    """The per-class accuracy tags: test/accuracy_class_C, with the name (letters and digits, the
    rest "_") appended where it is not C itself."""
    tags = []
    for c, name in enumerate(class_names):
        slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
        tags.append(f"test/accuracy_class_{c}" if slug == str(c) else f"test/accuracy_class_{c}_{slug}")
    return tags


class TensorBoard(Hook):
    """Writes each epoch's record into event files in `directory` (the experiment: RUN_DIR/tensorboard)."""

    def __init__(self, directory: str | Path, metrics: tuple[Metric, ...] = METRICS):
        self.directory = Path(directory)
        self.metrics = metrics
        self.writers: dict[str, object] = {}
        self.seeds = 1
        self.steps_per_epoch = 0
        self.class_tags: list[str] = []

    def on_start(self, start: Start) -> None:
        from tensorboardX import SummaryWriter

        from mnist_jax.datasets import DATASETS

        self.class_tags = class_tags(DATASETS[start.config.dataset].class_names)
        directory = self.directory
        self.seeds = start.config.seeds
        names = [""] if self.seeds == 1 else [f"seed_{start.config.seed + i}" for i in range(self.seeds)]
        # Flushed at each epoch's end, by on_epoch: the writer's own thread would only add work.
        self.writers = {name: SummaryWriter(str(directory / name), flush_secs=3600, max_queue=10_000)
                        for name in names}

    def on_epoch(self, epoch, record, state, history) -> None:
        for i, writer in enumerate(self.writers.values()):
            def of_seed(value):
                return value if self.seeds == 1 or np.ndim(value) == 0 else value[i]

            for metric in self.metrics:
                if metric.tag is not None and record.get(metric.key) is not None:
                    writer.add_scalar(metric.tag, of_seed(record[metric.key]), epoch)
            for tag, accuracy in zip(self.class_tags, of_seed(record["test_class_accuracy"]), strict=True):
                writer.add_scalar(tag, accuracy, epoch)
            losses = of_seed(record["train_batch_loss"])
            first = epoch * len(losses)
            for step, loss in enumerate(losses):
                writer.add_scalar("train/batch_loss", loss, first + step)
            writer.flush()

    def on_end(self, outcome) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

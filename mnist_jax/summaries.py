"""TensorBoard event files of a run, written with tensorboardX (no TensorFlow): a hook.

    tensorboard --logdir runs         # every run's RUN_DIR/tensorboard/, side by side

Per epoch: the train and test loss and accuracy, the learning rate, the epoch's seconds and each
class's test accuracy; per train step: the batch's loss (what the scan already returns). The
values are history.json's, as float32. A run of several seeds writes each seed's under seed_S/.
The experiment adds this hook on process 0 unless `RunOptions.tensorboard` is off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_jax.history import METRICS, Metric
from mnist_jax.hooks import Hook, Start



class TensorBoard(Hook):
    """Writes each epoch's record into event files in `directory` (the experiment: RUN_DIR/tensorboard)."""

    def __init__(self, directory: str | Path, metrics: tuple[Metric, ...] = METRICS):
        self.directory = Path(directory)
        self.metrics = metrics
        self.writers: dict[str, object] = {}
        self.seeds = 1
        self.steps_per_epoch = 0

    def on_start(self, start: Start) -> None:
        from tensorboardX import SummaryWriter

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
            for c, accuracy in enumerate(of_seed(record["test_class_accuracy"])):
                writer.add_scalar(f"test/accuracy_class_{c}", accuracy, epoch)
            losses = of_seed(record["train_batch_loss"])
            first = epoch * len(losses)
            for step, loss in enumerate(losses):
                writer.add_scalar("train/batch_loss", loss, first + step)
            writer.flush()

    def on_end(self, outcome) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

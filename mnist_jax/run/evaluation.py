"""A saved run's params measured on its dataset's test split, as `mnist-jax evaluate` reports them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from mnist_jax import data
from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for, programs
from mnist_jax.run import history, memory
from mnist_jax.steps import eval_batch_size


def evaluate_on_test_set(config: TrainConfig, params: Any, data_dir: Path | None = None, batch_size: int | None = None,
                         batch_size_flag: str = "--batch-size") -> tuple[dict[str, Any], int]:
    """The test metrics of `params` (`history.summarize`'s dict) and the number of test examples.
    `batch_size` (default: the run's test_batch_size) is checked against the memory first;
    `batch_size_flag` names where a given one came from in that check's error."""
    images, labels = data.load("test", data_dir, dataset=config.dataset)
    source = batch_size_flag if batch_size else "the run's test_batch_size"
    batch_size = batch_size or config.test_batch_size
    memory.check_evaluation(config, batch_size, len(labels), source)
    program = programs.eval_program(model_for(config), eval_batch_size(batch_size, len(labels)))
    metrics, _ = program(params, images, labels)
    return history.summarize(jax.device_get(metrics)), len(labels)

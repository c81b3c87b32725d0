"""Shared fixtures: the real MNIST, prepared once per test session into a temporary TFDS data dir."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mnist_jax import data


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    tfds.display_progress_bar(False)
    directory = tmp_path_factory.mktemp("tfds")
    data.prepare(directory)
    return directory


@pytest.fixture(scope="session")
def mnist(data_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {split: data.load_split(split, data_dir) for split in data.SPLITS}

"""Shared fixtures: the real MNIST, prepared once per test session into a temporary TFDS data dir,
and one persistent compilation cache for the session, which the subprocess tests share through
$JAX_COMPILATION_CACHE_DIR, so that a program compiled once is not compiled again."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pytest

# Before JAX starts: every test, in this process or a child, compiles into the same cache
# (pytest-xdist's workers inherit the variable), removed when the run ends.
_OWN_COMPILE_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _OWN_COMPILE_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mnist-jax-test-cache-")

from mnist_jax import data  # noqa: E402
from mnist_jax.fast.compiling import quick_jit  # noqa: E402
from mnist_jax.hooks import Hook  # noqa: E402
from mnist_jax.run import environment

environment.configure()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_COMPILE_CACHE:
        shutil.rmtree(_OWN_COMPILE_CACHE, ignore_errors=True)


# On Ampere and newer GPUs JAX's default float32 matmul is TF32, whose rounding (about 1e-3 of a
# logit on an NVIDIA H200) is larger than what the tests' comparisons of two programs allow: there
# the tests, and the processes they start, compute in full float32, as a CPU does.
if jax.default_backend() != "cpu":
    os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    jax.config.update("jax_default_matmul_precision", "highest")


def need_fashion_mnist() -> None:
    """Skip where Debian's dataset-fashion-mnist is missing, but under CI, which installs it."""
    if not data.FASHION_MNIST.source_dir.is_dir() and not os.environ.get("CI"):
        pytest.skip(f"{data.FASHION_MNIST.source_dir} is missing: apt-get install dataset-fashion-mnist")

# The slowest test files, slowest first (seconds on 2 Zen 4 cores, two workers): pytest-xdist hands
# whole files to its workers in collection order (`--no-loadscope-reorder` in pyproject.toml, else
# it orders them by their count of tests and a file of few slow tests ends the run alone). The
# others follow in their usual order. test_fast.py goes second: while the first worker prepares the
# data and compiles the small setting's programs, the second compiles programs no other file uses.
SLOWEST_FILES = ("test_cli.py", "test_fast.py", "test_scripts.py", "test_parallel.py", "test_experiment.py",
                 "test_web.py", "test_cnn_bn.py", "test_extending.py", "test_data.py", "test_demo.py", "test_sweep.py",
                 "test_steps.py", "test_export.py", "test_images.py", "test_loop.py", "test_explain.py")
# 69, 25, 55, 32, 39, 26, 17, 23, 19, 14, 19, 12, 9, 5, 8, 7


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FILES)))  # stable: file order kept


# A model's params drawn as a run draws them: its init program compiled quickly (the same bits,
# tests/test_fast.py), where full optimisation took 1-3 s a model to compile on a CPU.
_draw = quick_jit(lambda model, key: model.init(key), random_numbers=True, static_argnums=0)


def init_params(model, seed: int = 0):
    """`model.init(jax.random.key(seed))`, one compiled program per model."""
    return _draw(model, jax.random.key(seed))


# The small training setting that every short-run test uses, so that their programs compile once.
SMALL = {"batch_size": 256, "learning_rate": 1e-3, "train_examples": 1024, "test_examples": 1024}
SMALL_FLAGS = ["--batch-size", "256", "--lr", "1e-3", "--train-examples", "1024", "--test-examples", "1024"]


# What a hand-made epoch record holds where a test names no value: a plausible number per metric.
TYPICAL_VALUES = {"train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.4, "test_accuracy": 0.9,
                  "epoch_seconds": 1.0, "test_class_accuracy": 0.9, "learning_rate": 1e-3}


def a_record(seeds: int = 1, **values) -> dict:
    """One epoch's record with an entry for every metric of METRICS as declared now (so that adding
    a metric breaks no test that writes records by hand): `values`, else TYPICAL_VALUES, else 0.5;
    ten of it for a per-class metric, and one per seed (the shared metrics excepted) for `seeds` > 1."""
    from mnist_jax import metrics

    record = {}
    for metric in metrics.declared():
        value = values.get(metric.key, TYPICAL_VALUES.get(metric.key, 0.5))
        if metric.per_class and metric.key not in values:
            value = [value] * 10
        record[metric.key] = value if seeds == 1 or metric.shared or metric.key in values else [value] * seeds
    return record


class StopAfterFirst(Hook):
    """Stops a run after its first epoch, as Ctrl-C would: resumable."""

    def __init__(self):
        self.done = False

    def on_epoch(self, epoch, record, state, history):
        self.done = True

    def stop(self):
        return "after-epoch" if self.done else None


def wait_for_output(process: subprocess.Popen, out: Path, err: Path, text: str, timeout: float = 300) -> None:
    """Wait until `text` is in `out`, the file that `process` writes its stdout to; fail, with the end
    of its stderr file `err`, if it exits first."""
    deadline = time.monotonic() + timeout
    while text not in out.read_text():
        assert process.poll() is None, err.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s"
        time.sleep(0.05)


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that every pytest-xdist worker of this run sees (their temporary roots' parent)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.getbasetemp().parent
    return tmp_path_factory.getbasetemp()


@contextlib.contextmanager
def exclusive(path: Path):
    """One process at a time in the block, across the workers."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Prepared once for the whole run: data.prepare lets one worker prepare while the others wait."""
    directory = shared_dir(tmp_path_factory) / "tfds"
    data.prepare(directory)
    return directory


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST, prepared once for the whole run from Debian's dataset-fashion-mnist, in a data
    dir of its own. `.ci/run` installs the package; elsewhere the tests that need it are skipped
    without it (failed under CI)."""
    need_fashion_mnist()
    directory = shared_dir(tmp_path_factory) / "tfds-fashion"
    data.prepare(directory, dataset="fashion_mnist")
    return directory


@pytest.fixture(scope="session")
def mnist(data_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {split: data.load_split(split, data_dir) for split in data.SPLITS}


@pytest.fixture(scope="session")
def small_data(mnist) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Both splits, for the loop with the small setting."""
    return mnist["train"], mnist["test"]  # the configs' train_examples and test_examples cut them


class Trained(NamedTuple):
    params: dict


@pytest.fixture(scope="session")
def small_fits(small_data, tmp_path_factory) -> dict:
    """The small setting trained 2 epochs from scratch, in memory on one device, for one seed and for
    two seeds at once: each (a state with its params, history). The references that sharded and
    resumed runs must match; trained by the first worker that needs them, read by the others."""
    from mnist_jax.config import TrainConfig
    from mnist_jax.run import loop

    shared = shared_dir(tmp_path_factory)
    with exclusive(shared / "small_fits.lock"):
        if not (shared / "small_fits.pickle").exists():
            fits = {seeds: loop.fit(TrainConfig(epochs=2, seeds=seeds, **SMALL), *small_data) for seeds in (1, 2)}
            content = pickle.dumps({seeds: (jax.device_get(state.params), history)
                                    for seeds, (state, history) in fits.items()})
            (shared / "small_fits.pickle.tmp").write_bytes(content)
            (shared / "small_fits.pickle.tmp").rename(shared / "small_fits.pickle")
    fits = pickle.loads((shared / "small_fits.pickle").read_bytes())
    return {seeds: (Trained(params), history) for seeds, (params, history) in fits.items()}


# Digits as a hand draws them on the 280 x 280 pad (mnist_jax.apps.drawing.PAD_SIZE): each a list of
# strokes, each a list of points; some in two strokes (the 4, the 5's bar), some symmetric (the 1, the 0).
DRAWN_DIGITS = {
    "0": [[(140, 40), (195, 70), (215, 140), (195, 215), (140, 245), (85, 215), (65, 140), (85, 70), (140, 40)]],
    "1": [[(150, 40), (150, 240)]],
    "2": [[(80, 90), (120, 45), (180, 50), (195, 110), (85, 235), (215, 235)]],
    "3": [[(80, 60), (180, 50), (190, 110), (120, 140), (200, 170), (190, 230), (80, 230)]],
    "4": [[(150, 40), (70, 170), (220, 170)], [(180, 90), (180, 245)]],
    "5": [[(110, 45), (205, 45)], [(100, 55), (90, 130), (170, 120), (200, 180), (170, 235), (85, 225)]],
    "7": [[(70, 50), (210, 50), (120, 240)]],
    "8": [[(190, 70), (140, 40), (90, 70), (190, 190), (140, 240), (90, 190), (190, 70)]],
}


def pad_drawing(strokes: list[list[tuple[int, int]]], width: int = 24):
    """The strokes in black on a transparent 280 x 280 picture, as the drawing pads hand it over."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(stroke, fill=(0, 0, 0, 255), width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):  # round ends, as the pads' pens have
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=(0, 0, 0, 255))
    return image

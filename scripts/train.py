"""Train the notebook's CNN on MNIST and reproduce its log and figures.

    python scripts/train.py                      # the notebook: 30 epochs, Adam 1e-4, batch 512
    python scripts/train.py --epochs 3 --run-dir runs/quick --no-refresh-figures

Prints the model summary, then one line per epoch in the notebook's format, e.g.
    [epoch  0] Train loss: 1.8407 / accuracy: 0.6246 | Test loss: 1.0855 / accuracy: 0.8155
and ends near the notebook's `Test loss: 0.0504 / accuracy: 0.9836` (0.980-0.988 by seed).
Writes history.json, params.msgpack, training.svg and classification.svg into the run directory,
and by default refreshes figures/training.svg and figures/classification.svg.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import shutil
import sys
import time
from pathlib import Path

from mnist_jax.cli import fail, positive

ROOT = Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-jax" / "jax-compile"


class EpochProgress:
    """A tqdm bar per epoch, fed from inside the jitted scan; it clears itself when the epoch ends,
    so the terminal keeps only the notebook's lines."""

    def __init__(self, batches_per_epoch: int):
        self.total = batches_per_epoch
        self.epoch = 0
        self.bar = None

    def __call__(self, batch_index) -> None:
        from tqdm import tqdm

        i = int(batch_index)
        if i == 0:
            self.bar = tqdm(total=self.total, desc=f"epoch {self.epoch:2d}", unit="batch", leave=False,
                            file=sys.stderr, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(1)
            if i == self.total - 1:
                self.bar.close()
                self.bar, self.epoch = None, self.epoch + 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive(int), default=30, help="passes over the training set (default: %(default)s)")
    p.add_argument("--learning-rate", "--lr", type=positive(float), default=1e-4, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--batch-size", type=positive(int), default=512, help="training batch size (default: %(default)s)")
    p.add_argument("--test-batch-size", type=positive(int), default=1024, help="evaluation batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the jax.random key (initialisation, shuffling) (default: %(default)s)")
    p.add_argument("--conv", choices=("auto", "matmul", "xla"), default="auto",
                   help="convolution formulation: auto picks the fastest measured for the backend (default: %(default)s)")
    p.add_argument("--train-examples", type=positive(int), default=None,
                   help="train on only the first N training examples (quick runs)")
    p.add_argument("--data-dir", default=None,
                   help="TFDS data dir for the prepared dataset (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    p.add_argument("--manual-dir", default=None,
                   help="directory with your own four MNIST IDX files (.gz or not) instead of the bundled ones")
    p.add_argument("--run-dir", default=None, help="where to write this run's outputs (default: runs/<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow a run directory that holds a finished run")
    p.add_argument("--figures-dir", default=str(ROOT / "figures"),
                   help="where to refresh training.svg and classification.svg (default: %(default)s)")
    p.add_argument("--no-refresh-figures", action="store_true", help="leave --figures-dir untouched")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="a progress bar within each epoch; auto: on a CPU when stderr is a terminal "
                        "(on a GPU an epoch takes well under a second) (default: %(default)s)")
    p.add_argument("--compile-cache", default=str(default_cache_dir()),
                   help="JAX's persistent compilation cache, so later runs skip compiling (default: %(default)s)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile from scratch, cache nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.run_dir or ROOT / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))

    # Allocate GPU memory as needed instead of XLA's default 75% of the card: this model needs little.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # Heavy imports after argument parsing, so --help and flag errors are instant.
    import jax
    import tensorflow_datasets as tfds

    from mnist_jax import data, plotting, runs
    from mnist_jax.model import Classifier, init_params, model_summary
    from mnist_jax.train import TrainConfig, fit, format_epoch, num_batches

    if not args.no_compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    config = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                         test_batch_size=args.test_batch_size, seed=args.seed, conv=args.conv)
    if (run_dir / runs.HISTORY_FILE).exists() and not args.overwrite:
        fail(f"{run_dir} already holds a finished run; pick another --run-dir or pass --overwrite")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_atomic(run_dir / ".write-test", b"")
        (run_dir / ".write-test").unlink()
    except OSError as e:
        fail(f"{run_dir}: cannot write the run directory ({e.strerror})")

    tfds.display_progress_bar(False)
    try:
        path = data.prepare(args.data_dir, args.manual_dir)
        train_images, train_labels = data.load_split("train", args.data_dir)
        test_images, test_labels = data.load_split("test", args.data_dir)
    except data.DataError as e:
        fail(str(e))
    if args.train_examples is not None:
        train_images, train_labels = train_images[: args.train_examples], train_labels[: args.train_examples]
    if config.batch_size > len(train_labels):
        fail(f"--batch-size {config.batch_size} is larger than the {len(train_labels)} training examples")
    print(f"MNIST: {len(train_labels)} train / {len(test_labels)} test examples from {path}")
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()})")

    model = Classifier(conv=config.conv)
    print(model_summary(jax.eval_shape(functools.partial(init_params, model), jax.random.key(0))), flush=True)

    def on_epoch(epoch: int, record: dict[str, float]) -> None:
        print(format_epoch(epoch, record), flush=True)

    show_progress = args.progress == "on" or (
        args.progress == "auto" and jax.default_backend() == "cpu" and sys.stderr.isatty())
    on_step = EpochProgress(num_batches(len(train_labels), config.batch_size)) if show_progress else None
    start = time.perf_counter()
    state, history = fit(config, (train_images, train_labels), (test_images, test_labels),
                         on_epoch=on_epoch, on_step=on_step)
    seconds = time.perf_counter() - start
    params = state.params

    device = jax.devices()[0]
    memory = device.memory_stats() or {}  # None on CPU
    system = {"backend": jax.default_backend(), "device": device.device_kind, "jax": jax.__version__,
              "train_seconds": seconds, "peak_device_bytes": memory.get("peak_bytes_in_use")}
    runs.save_run(run_dir, config, history, params, system)
    plotting.save_figure(plotting.plot_history(history), run_dir / "training.svg")
    plotting.save_figure(plotting.classification_sample(params, model, test_images, test_labels,
                                                        jax.random.key(config.seed)),
                         run_dir / "classification.svg")
    print(f"Trained {config.epochs} epochs in {seconds:.1f} s. Wrote {run_dir}/"
          f"{{{runs.HISTORY_FILE}, {runs.PARAMS_FILE}, training.svg, classification.svg}}")
    if not args.no_refresh_figures:
        figures = Path(args.figures_dir)
        figures.mkdir(parents=True, exist_ok=True)
        for name in ("training.svg", "classification.svg"):
            runs.write_atomic(figures / name, (run_dir / name).read_bytes())
        print(f"Refreshed {figures}/training.svg and {figures}/classification.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())

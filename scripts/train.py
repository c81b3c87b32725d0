"""Train the notebook's CNN on MNIST and reproduce its log and figures.

    python scripts/train.py                      # the notebook: 30 epochs, Adam 1e-4, batch 512
    python scripts/train.py --epochs 3 --run-dir runs/quick --no-refresh-figures
    python scripts/train.py --seeds 8            # 8 models at once (vmap), mean +- std per epoch

Prints the model summary, then one line per epoch in the notebook's format, e.g.
    [epoch  0] Train loss: 1.8407 / accuracy: 0.6246 | Test loss: 1.0855 / accuracy: 0.8155
and ends near the notebook's `Test loss: 0.0504 / accuracy: 0.9836` (0.980-0.988 by seed).
Writes history.json, params.msgpack, training.svg and classification.svg into the run directory,
and by default refreshes figures/training.svg and figures/classification.svg.
With --seeds N, each line shows mean +- std over the seeds; each seed's own run (history.json,
params.msgpack) goes into RUN_DIR/seed-S, and the figure with the seeds' mean and min-max band
refreshes figures/training_seeds.svg instead. With several devices the seeds (or, for one seed,
every batch) are split over all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_jax.cli import EXIT_DIVERGED, EpochProgress, StopRequest, fail, positive

if TYPE_CHECKING:
    from mnist_jax.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-jax" / "jax-compile"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Training settings default to None so that --resume can tell which ones were given.
    p.add_argument("--epochs", type=positive(int), default=None, help="passes over the training set (default: 30)")
    p.add_argument("--learning-rate", "--lr", type=positive(float), default=None, help="Adam learning rate (default: 1e-4)")
    p.add_argument("--batch-size", type=positive(int), default=None, help="training batch size (default: 512)")
    p.add_argument("--test-batch-size", type=positive(int), default=None, help="evaluation batch size (default: 1024)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the jax.random key: initialisation, shuffling, digits shown (default: 0)")
    p.add_argument("--conv", choices=("auto", "matmul", "xla"), default=None,
                   help="convolution formulation: auto picks the fastest measured for the backend (default: auto)")
    p.add_argument("--train-examples", type=positive(int), default=None,
                   help="train on only the first N training examples (quick runs)")
    p.add_argument("--seeds", type=positive(int), default=None,
                   help="train N models at once, seeds SEED ... SEED+N-1, in one vmapped program (default: 1)")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first and run the same command on every "
                        "host; SLURM, Open MPI, Kubernetes and Cloud TPU fill in the three flags below")
    p.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="with --distributed: the address of process 0 (default: $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=positive(int), default=None, help="with --distributed: how many processes")
    p.add_argument("--process-id", type=int, default=None, help="with --distributed: this process's index, from 0")
    p.add_argument("--data-dir", default=None,
                   help="TFDS data dir for the prepared dataset (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    p.add_argument("--manual-dir", default=None,
                   help="directory with your own four MNIST IDX files (.gz or not) instead of the bundled ones")
    p.add_argument("--run-dir", default=None, help="where to write this run's outputs (default: runs/<date>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (with --epochs: up to that many)")
    p.add_argument("--overwrite", action="store_true", help="allow a run directory that already holds a run")
    p.add_argument("--keep-checkpoints", type=positive(int), default=3,
                   help="checkpoints kept, one per epoch, newest first (default: %(default)s)")
    p.add_argument("--figures-dir", default=str(ROOT / "figures"),
                   help="where to refresh training.svg and classification.svg (default: %(default)s)")
    p.add_argument("--no-refresh-figures", action="store_true", help="leave --figures-dir untouched")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="a progress bar within each epoch; auto: on a CPU when stderr is a terminal "
                        "(on a GPU an epoch takes well under a second) (default: %(default)s)")
    p.add_argument("--compile-cache", default=str(default_cache_dir()),
                   help="JAX's persistent compilation cache, so later runs skip compiling (default: %(default)s)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile from scratch, cache nothing")
    args = p.parse_args(argv)
    if args.resume and args.run_dir:
        p.error("--resume RUN_DIR continues that run in place; drop --run-dir")
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite contradict each other")
    if not args.distributed and (args.coordinator or args.num_processes or args.process_id is not None):
        p.error("--coordinator, --num-processes and --process-id need --distributed")
    return args


SETTINGS = ("epochs", "learning_rate", "batch_size", "test_batch_size", "seed", "conv", "train_examples", "seeds")


def resolve_config(args: argparse.Namespace, saved: TrainConfig | None) -> TrainConfig:
    """The flags over the defaults; or, when resuming, the run's own settings, only --epochs changed."""
    from mnist_jax.train import TrainConfig

    given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    if saved is None:
        return TrainConfig(**given)
    for name, value in given.items():
        if name not in ("epochs", "conv") and value != getattr(saved, name):
            fail(f"--{name.replace('_', '-')} {value} differs from the resumed run's {getattr(saved, name)}; "
                 f"a resumed run keeps its settings (only --epochs and --conv may change)")
    return dataclasses.replace(saved, **{k: v for k, v in given.items() if k in ("epochs", "conv")})


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        fail(f"{directory}: cannot write here ({e.strerror})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Allocate GPU memory as needed instead of XLA's default 75% of the card: this model needs little.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # Heavy imports after argument parsing, so --help and flag errors are instant.
    import jax
    import numpy as np
    import tensorflow_datasets as tfds

    if args.distributed:
        # CPU processes need gloo for their cross-process collectives; GPUs use NCCL regardless.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        except (RuntimeError, ValueError, TypeError) as e:
            fail(f"--distributed: cannot start the multi-host runtime ({str(e).splitlines()[0]})")

    from mnist_jax import data, parallel, plotting, runs
    from mnist_jax.checkpoints import CheckpointError, Checkpointer
    from mnist_jax.model import Classifier, init_params, model_summary
    from mnist_jax.train import (HISTORY_KEYS, NonFiniteLossError, format_epoch, initial_state, num_batches,
                                 seed_history, train_epochs)

    if not args.no_compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    # Settle the run directory and config before any data or training work, so mistakes fail fast.
    if args.resume:
        run_dir = Path(args.resume)
        try:
            record = runs.load_record(run_dir)
        except runs.RunError as e:
            fail(f"cannot resume: {e}")
        config = resolve_config(args, record.config)
        if len(record.history["train_loss"]) >= config.epochs:
            fail(f"{run_dir} already trained {len(record.history['train_loss'])} epochs; "
                 f"pass --epochs N with N larger to train on")
    else:
        run_dir = Path(args.run_dir or ROOT / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        if (run_dir / runs.HISTORY_FILE).exists() and not args.overwrite:
            fail(f"{run_dir} already holds a run; --resume it, pick another --run-dir, or pass --overwrite")
        config = resolve_config(args, None)
    check_writable(run_dir)
    if not args.no_refresh_figures:
        check_writable(Path(args.figures_dir))

    tfds.display_progress_bar(False)
    try:
        path = data.prepare(args.data_dir, args.manual_dir)
        train_images, train_labels = data.load_split("train", args.data_dir)
        test_images, test_labels = data.load_split("test", args.data_dir)
    except data.DataError as e:
        fail(str(e))
    num_train = min(config.train_examples or len(train_labels), len(train_labels))
    if config.batch_size > num_train:
        fail(f"--batch-size {config.batch_size} is larger than the {num_train} training examples")

    model = Classifier(conv=config.conv)
    state, history = None, None
    checkpointer = Checkpointer(run_dir / runs.CHECKPOINT_DIR, keep=args.keep_checkpoints)
    if args.resume:
        try:
            state, history = checkpointer.restore_latest(initial_state(config))
        except CheckpointError as e:
            checkpointer.close()
            fail(f"cannot resume: {e}")
    elif (run_dir / runs.HISTORY_FILE).exists():  # --overwrite: nothing of the earlier run may be mistaken for ours
        checkpointer.close()
        shutil.rmtree(run_dir / runs.CHECKPOINT_DIR, ignore_errors=True)
        (run_dir / runs.PARAMS_FILE).unlink(missing_ok=True)
        for seed_dir in run_dir.glob("seed-*"):
            shutil.rmtree(seed_dir, ignore_errors=True)
        checkpointer = Checkpointer(run_dir / runs.CHECKPOINT_DIR, keep=args.keep_checkpoints)

    try:
        mesh = parallel.make_mesh(config)
    except ValueError as e:
        fail(str(e))
    # Every process trains; only the first writes the run's files (the others hold the same values).
    primary = jax.process_index() == 0
    print(f"MNIST: {num_train} train / {len(test_labels)} test examples from {path}")
    device = jax.local_devices()[0]
    print(f"JAX {jax.__version__} on {device.device_kind} ({jax.default_backend()}): {parallel.describe(mesh)}")
    if config.seeds > 1:
        print(f"{config.seeds} seeds ({config.seed}-{config.seed + config.seeds - 1}); each figure below is mean +- std")
    print(model_summary(jax.eval_shape(functools.partial(init_params, model), jax.random.key(0))), flush=True)
    if history:
        print(f"Resuming {run_dir} after epoch {len(history['train_loss']) - 1}")
        for epoch in range(len(history["train_loss"])):
            print(format_epoch(epoch, {k: v[epoch] for k, v in history.items()}))

    first_epoch = len(history["train_loss"]) if history else 0
    # The bar's callback would run once per device when the work is split.
    show_progress = mesh is None and (args.progress == "on" or (
        args.progress == "auto" and jax.default_backend() == "cpu" and sys.stderr.isatty()))
    on_step = EpochProgress(num_batches(num_train, config.batch_size), first_epoch) if show_progress else None
    stop = StopRequest()
    previous_handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()
    if primary:
        runs.write_history(run_dir, config, history or {k: [] for k in HISTORY_KEYS}, finished=False)
    try:
        for epoch, record, state, history in train_epochs(
                config, (train_images, train_labels), (test_images, test_labels),
                state=state, history=history, on_step=on_step, mesh=mesh):
            print(format_epoch(epoch, record), flush=True)
            checkpointer.save(epoch + 1, state, history)
            if primary:
                runs.write_history(run_dir, config, history, finished=False)
            if stop.signal is not None:
                break
    except NonFiniteLossError as e:
        checkpointer.close()
        done = checkpointer.latest_epoch()
        kept = f"the last good checkpoint (after epoch {done - 1}) is kept" if done else "no checkpoint was written"
        print(f"train.py: error: {e}; {kept}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        checkpointer.close()
        print(f"Stopped mid-epoch. Resume from the last checkpoint with: python scripts/train.py --resume {run_dir}",
              file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    checkpointer.close()
    seconds = time.perf_counter() - start
    if stop.signal is not None and len(history["train_loss"]) < config.epochs:
        print(f"Stopped after epoch {len(history['train_loss']) - 1}; checkpoint and history are in {run_dir}. "
              f"Resume with: python scripts/train.py --resume {run_dir}", file=sys.stderr)
        return 128 + stop.signal

    memory = device.memory_stats() or {}  # None on CPU
    system = {"backend": jax.default_backend(), "device": device.device_kind, "jax": jax.__version__,
              "train_seconds": seconds, "peak_device_bytes": memory.get("peak_bytes_in_use")}
    params = parallel.to_host(state.params)
    if not primary:
        return 0
    runs.save_run(run_dir, config, history, params, system)
    per_seed = [params] if config.seeds == 1 else [
        jax.tree_util.tree_map(lambda p, i=i: p[i], params) for i in range(config.seeds)]
    if config.seeds > 1:
        for i, seed_params in enumerate(per_seed):
            seed = config.seed + i
            runs.save_run(run_dir / f"seed-{seed}", dataclasses.replace(config, seed=seed, seeds=1),
                          seed_history(history, i), seed_params, system)
    plotting.save_figure(plotting.plot_history(history), run_dir / "training.svg")
    plotting.save_figure(plotting.classification_sample(per_seed[0], model, test_images, test_labels,
                                                        jax.random.key(config.seed)),
                         run_dir / "classification.svg")
    trained = config.epochs - first_epoch
    what = f"epochs {first_epoch}-{config.epochs - 1}" if first_epoch else f"{trained} epochs"
    if config.seeds > 1:
        what += f" of {config.seeds} seeds"
        final = np.asarray(history["test_accuracy"][-1])
        print(f"Final test accuracy over {config.seeds} seeds: {final.mean():.4f} +- {final.std(ddof=1):.4f} "
              f"(min {final.min():.4f}, max {final.max():.4f}); each seed's run is in {run_dir}/seed-S")
    print(f"Trained {what} in {seconds:.1f} s. Wrote {run_dir}/"
          f"{{{runs.HISTORY_FILE}, {runs.PARAMS_FILE}, training.svg, classification.svg}}")
    if not args.no_refresh_figures:
        figures = Path(args.figures_dir)
        # A multi-seed run draws a different figure; the notebook's own figures stay as they are.
        refreshed = {"training.svg": "training_seeds.svg"} if config.seeds > 1 else {
            "training.svg": "training.svg", "classification.svg": "classification.svg"}
        for source, target in refreshed.items():
            runs.write_atomic(figures / target, (run_dir / source).read_bytes())
        print(f"Refreshed {', '.join(str(figures / t) for t in refreshed.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `mnist-jax` command: one function per subcommand, the shared flags, and the error exits.

    mnist-jax train [--epochs N] [--seeds N] [--run-dir DIR | --resume DIR] ...
    mnist-jax evaluate [RUN_DIR]      mnist-jax predict IMAGE... [--run RUN_DIR]
    mnist-jax plot-history RUN_DIR    mnist-jax plot-classification RUN_DIR    mnist-jax plot-errors RUN_DIR
    mnist-jax demo [--run RUN_DIR] [--host H] [--port P]
    mnist-jax benchmark               mnist-jax benchmark-data          mnist-jax benchmark-use

`python scripts/NAME.py ...` runs the same commands. Exit status: 0 done; 2 a user error (one line
on stderr: `PROG: error: ...`, from any `mnist_jax.errors.UserError`, or from argparse); 3 the loss
diverged; 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM), resumable.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mnist_jax.errors import CheckpointError, UserError

EXIT_USER_ERROR = 2  # argparse uses 2 for bad flags too
EXIT_DIVERGED = 3
MAX_GRID = 16  # rows or columns of digits in a figure: 16 x 16 = 256 digits is already hard to read
TRAIN_SETTINGS = ("epochs", "learning_rate", "batch_size", "test_batch_size", "seed", "seeds", "train_examples",
                  "test_examples", "conv", "precision")


def positive(kind: type, maximum: int | None = None) -> Callable[[str], int | float]:
    """argparse type: a number of `kind` that is > 0 (and <= `maximum`)."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum}, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


# Shared parser pieces -------------------------------------------------------------------------

def _runtime_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="JAX's persistent compilation cache, so later runs skip compiling "
                        "(default: $JAX_COMPILATION_CACHE_DIR, else ~/.cache/mnist-jax/jax-compile)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile from scratch, cache nothing")
    return p


def _data_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir", default=None,
                   help="TFDS data dir for the prepared dataset (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    return p


def _run_dir_arg() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("run_dir", type=Path, help="a run directory written by mnist-jax train (one seed's, seed-S, "
                                              "for a run of several seeds)")
    return p


def _configure(args: argparse.Namespace, distributed=None) -> None:
    from mnist_jax import runtime

    cache = None if args.no_compile_cache else (args.compile_cache or runtime.default_compile_cache())
    runtime.configure(compile_cache=cache, distributed=distributed)


# train ----------------------------------------------------------------------------------------

def _add_train(p: argparse.ArgumentParser) -> None:
    # Training settings default to None so that --resume can tell which ones were given.
    p.add_argument("--epochs", type=positive(int), default=None, help="passes over the training set (default: 30)")
    p.add_argument("--learning-rate", "--lr", type=positive(float), default=None, help="Adam learning rate (default: 1e-4)")
    p.add_argument("--batch-size", type=positive(int), default=None, help="training batch size (default: 512)")
    p.add_argument("--test-batch-size", type=positive(int), default=None, help="evaluation batch size (default: 1024)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the jax.random key: initialisation, shuffling, digits shown (default: 0)")
    p.add_argument("--seeds", type=positive(int), default=None,
                   help="train N models at once, seeds SEED ... SEED+N-1, in one vmapped program (default: 1)")
    p.add_argument("--train-examples", type=positive(int), default=None,
                   help="train on only the first N training examples (quick runs)")
    p.add_argument("--test-examples", type=positive(int), default=None,
                   help="evaluate each epoch on only the first N test examples (quick runs)")
    p.add_argument("--conv", choices=("auto", "matmul", "xla"), default=None,
                   help="convolution formulation: auto picks the fastest measured for the backend (default: auto)")
    p.add_argument("--precision", choices=("default", "high", "highest"), default=None,
                   help="float32 matmul precision: default is JAX's (full float32 on a CPU, TF32 on Ampere and "
                        "newer GPUs), highest is full float32 everywhere, as PyTorch (default: default)")
    p.add_argument("--manual-dir", default=None,
                   help="directory with your own four MNIST IDX files (.gz or not) instead of the bundled ones")
    p.add_argument("--run-dir", default=None, help="where to write this run (default: runs/<date>-<time> "
                                                   "under the current directory)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (with --epochs: up to that many)")
    p.add_argument("--overwrite", action="store_true", help="replace the run that the run directory holds")
    p.add_argument("--keep-checkpoints", type=positive(int), default=3,
                   help="checkpoints kept, one per epoch, newest first (default: %(default)s)")
    p.add_argument("--figures-dir", default=None,
                   help="also copy the run's figures here (training.svg and classification.svg; "
                        "training_seeds.svg for several seeds), e.g. the repository's figures/")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="a progress bar within each epoch; auto: on a CPU when stderr is a terminal "
                        "(on a GPU an epoch takes well under a second) (default: %(default)s)")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first and run the same command on every "
                        "host; SLURM, Open MPI, Kubernetes and Cloud TPU fill in the three flags below")
    p.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="with --distributed: the address of process 0 (default: $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=positive(int), default=None, help="with --distributed: how many processes")
    p.add_argument("--process-id", type=int, default=None, help="with --distributed: this process's index, from 0")


def _check_train_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.resume and args.run_dir:
        p.error("--resume RUN_DIR continues that run in place; drop --run-dir")
    if args.resume and args.overwrite:
        p.error("--resume and --overwrite contradict each other")
    if not args.distributed and (args.coordinator or args.num_processes or args.process_id is not None):
        p.error("--coordinator, --num-processes and --process-id need --distributed")


def _epochs_phrase(first: int, last: int) -> str:
    if first == 0:
        return f"{last + 1} epoch{'s' if last else ''}"
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def _resumed_run(run_dir: str, given: dict):
    """The run to resume, locked, and where it starts: its newest intact checkpoint (that, not
    history.json, is where training goes on from); damaged newer checkpoints are named and skipped."""
    from mnist_jax import parallel, runs, trainer
    from mnist_jax.checkpoints import Checkpointer
    from mnist_jax.history import epochs_done

    run = runs.Run.resume(run_dir, given, primary=parallel.is_primary())
    try:
        if run.saved.finished and epochs_done(run.saved.history) >= run.config.epochs:
            raise runs.RunError(f"{run.path} already trained {epochs_done(run.saved.history)} epochs; "
                                f"pass --epochs N with N larger to train on")
        if not Checkpointer(run.checkpoint_dir, create=False).epochs():
            raise runs.RunError(f"{run.path}: no checkpoint to resume from (the run stopped in its first epoch); "
                                f"start it again with --run-dir {run.path} --overwrite")
        start = trainer.restore(run.config, run)
    except BaseException:
        run.close()
        raise
    for damaged in start.damaged:
        print(f"{damaged}: skipped", file=sys.stderr)
    if start.damaged:
        print(f"Resuming from the checkpoint after epoch {start.epoch - 1} instead", file=sys.stderr)
    return run, start


def _new_run(args: argparse.Namespace, config):
    """A new run in --run-dir, or in runs/<date>-<time>; with several processes, process 0 decides."""
    from mnist_jax import parallel, runs

    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:  # one process picks the name, so that every host writes into the same directory
        now = datetime.datetime.now()
        stamp = parallel.from_primary((int(now.strftime("%Y%m%d")), int(now.strftime("%H%M%S"))))
        run_dir = Path("runs") / "-".join(f"{part:0{width}d}" for part, width in zip(stamp, (8, 6)))
    try:
        run, refused = runs.Run.create(run_dir, config, overwrite=args.overwrite, primary=parallel.is_primary()), None
    except runs.RunError as e:
        run, refused = None, e
    if parallel.agree_any(refused is not None):  # all processes fail together, none waits for the others
        raise refused or runs.RunError(f"{run_dir}: process 0 could not create the run directory")
    parallel.barrier("run directory ready")  # process 0 has cleared an overwritten run
    return run


def train(args: argparse.Namespace) -> int:
    """Train the notebook's CNN on MNIST and reproduce its log and figures."""
    from mnist_jax import runtime

    _configure(args, runtime.Distributed(args.coordinator, args.num_processes, args.process_id)
               if args.distributed else None)
    from mnist_jax.config import TrainConfig

    # Settle the run directory and config before any data or training work, so mistakes fail fast.
    # The run directory stays locked until training ends, so no other process writes into it.
    given = {k: getattr(args, k) for k in TRAIN_SETTINGS if getattr(args, k) is not None}
    run, start = _resumed_run(args.resume, given) if args.resume else (_new_run(args, TrainConfig(**given)), None)
    with run:
        return _train(args, run, start)


def _train(args: argparse.Namespace, run, start) -> int:
    import functools

    import jax
    import numpy as np

    from mnist_jax import data, memory, parallel, runs, trainer
    from mnist_jax.console import EpochProgress, StopRequest
    from mnist_jax.errors import ConfigError
    from mnist_jax.history import epoch_entry, format_epoch
    from mnist_jax.model import classifier_for, init_params, model_summary

    config, primary = run.config, run.primary
    if args.figures_dir:
        runs.check_writable(Path(args.figures_dir))

    if not data.is_prepared(args.data_dir):
        print(f"Preparing MNIST from {args.manual_dir or data.BUNDLED_DIR} (once, a few seconds)", flush=True)
    path = data.prepare(args.data_dir, args.manual_dir)
    train_data = data.load_split("train", args.data_dir)
    test_data = data.load_split("test", args.data_dir)
    num_train = len(train_data[1][:config.train_examples])
    num_test = len(test_data[1][:config.test_examples])
    if config.batch_size > num_train:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the {num_train} training examples")
    mesh = parallel.make_mesh(config.seeds, (config.batch_size, memory.eval_batch_size(config.test_batch_size,
                                                                                        num_test)))
    memory.check(config, num_test, mesh)

    print(f"MNIST: {num_train} train / {num_test} test examples from {path}")
    device = jax.local_devices()[0]
    print(f"JAX {jax.__version__} on {device.device_kind} ({jax.default_backend()}): {parallel.describe(mesh)}; "
          f"matmul precision {config.precision}")
    if config.seeds > 1:
        print(f"{config.seeds} seeds ({config.seed}-{config.seed + config.seeds - 1}); "
              f"each value below is the mean +- std over the seeds")
    print(model_summary(jax.eval_shape(functools.partial(init_params, classifier_for(config)), jax.random.key(0))),
          flush=True)
    if start is not None:
        print(f"Resuming {run.path} after epoch {start.epoch - 1}")
        for epoch in range(start.epoch):
            print(format_epoch(epoch, epoch_entry(start.history, epoch)))

    show_progress = primary and (args.progress == "on" or (
        args.progress == "auto" and jax.default_backend() == "cpu" and sys.stderr.isatty()))
    with StopRequest() as stop:
        outcome = trainer.train_and_evaluate(
            config, run, train_data, test_data, start=start, mesh=mesh,
            on_epoch=lambda epoch, record: print(format_epoch(epoch, record), flush=True),
            on_progress=EpochProgress() if show_progress else None, should_stop=stop.requested,
            stop_now=stop.requested_now, keep_checkpoints=args.keep_checkpoints)
    if outcome.status == "diverged":
        print(f"{args.prog}: error: {outcome.message}", file=sys.stderr)
        return EXIT_DIVERGED
    last = len(outcome.history["train_loss"]) - 1
    if outcome.status == "stopped":
        if last < 0:
            print(f"Stopped in the first epoch, before any checkpoint. Start again with: "
                  f"mnist-jax train --run-dir {run.path} --overwrite", file=sys.stderr)
        else:
            where = "mid-epoch" if outcome.state is None else f"after epoch {last}"
            print(f"Stopped {where}; the checkpoint after epoch {last} and the history are in {run.path}. "
                  f"Resume with: mnist-jax train --resume {run.path}", file=sys.stderr)
        return 128 + (stop.signal or signal.SIGTERM)  # or stopped because another process was asked to
    if not primary:
        return 0
    what = _epochs_phrase(outcome.first_epoch, last) if last >= outcome.first_epoch else "no epoch (all were done)"
    if config.seeds > 1:
        what += f" of {config.seeds} seeds"
        final = np.asarray(outcome.history["test_accuracy"][-1])
        print(f"Final test accuracy over {config.seeds} seeds: {final.mean():.4f} +- {final.std(ddof=1):.4f} "
              f"(min {final.min():.4f}, max {final.max():.4f}); each seed's run is in {run.path}/seed-S")
    print(f"Trained {what} in {outcome.seconds:.1f} s. Wrote {run.path}/"
          f"{{{runs.HISTORY_FILE}, {runs.PARAMS_FILE}, {', '.join(runs.FIGURE_FILES)}}}")
    if args.figures_dir:
        copied = runs.copy_figures(run.path, Path(args.figures_dir), seeds=config.seeds)
        print(f"Copied the figures to {', '.join(map(str, copied))}")
    return 0


# Using a saved run ----------------------------------------------------------------------------

def evaluate(args: argparse.Namespace) -> int:
    """Report the test loss and accuracy of a saved run (an unfinished run: its latest checkpoint)."""
    _configure(args)
    import dataclasses

    import jax

    from mnist_jax import data, history, memory, runs, trainer

    config, hist, params = runs.load_run(args.run_dir or runs.BUNDLED_RUN)
    images, labels = data.load("test", args.data_dir)
    batch_size = memory.eval_batch_size(args.batch_size or config.test_batch_size, len(labels))
    metrics, _ = trainer.programs(dataclasses.replace(config, test_batch_size=batch_size), None).evaluate(
        params, images, labels)
    summary = history.summarize(jax.device_get(metrics))
    print(f"Test loss: {summary['loss']:.4f} / accuracy: {summary['accuracy']:.4f} "
          f"({len(labels)} test examples, params after epoch {len(hist['train_loss']) - 1})")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Classify your own digit images with a trained run: the top classes and their probabilities."""
    _configure(args)
    import numpy as np

    from mnist_jax import images, inference, runs
    from mnist_jax.model import classifier_for

    config, _, params = runs.load_run(args.run_dir or runs.BUNDLED_RUN)
    if args.save_inputs:
        runs.check_writable(args.save_inputs)
    paths, digits = [], []
    for path in args.images:  # a bad file is reported and skipped; the others are still classified
        try:
            digits.append(images.load_image(path))
            paths.append(path)
        except images.ImageError as e:
            print(f"{args.prog}: error: {e}", file=sys.stderr)
    if digits:
        probabilities = inference.classify(params, np.stack(digits), classifier_for(config))
        for path, probs in zip(paths, probabilities):
            ranked = "  ".join(f"{label} ({p:.4f})" for label, p in inference.top_k(probs, min(args.top, 10)))
            print(f"{path}: {ranked}")
    if args.save_inputs and digits:
        for digit, out in zip(digits, _input_files(paths, args.save_inputs)):
            images.save_digit(digit, out)
        print(f"Wrote the 28x28 images the model saw to {args.save_inputs}/ (NAME-28x28.png)")
    return 0 if len(paths) == len(args.images) else EXIT_USER_ERROR


def _input_files(paths: Sequence[Path], directory: Path) -> list[Path]:
    """DIR/NAME-28x28.png for each input NAME.EXT; NAME-2-28x28.png ... when two inputs share a name."""
    seen: dict[str, int] = {}
    files = []
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        suffix = "" if seen[path.stem] == 1 else f"-{seen[path.stem]}"
        files.append(directory / f"{path.stem}{suffix}-28x28.png")
    return files


def plot_history(args: argparse.Namespace) -> int:
    """Redraw the training-history figure of a saved run, without retraining."""
    _configure(args)
    from mnist_jax import plotting, runs

    _, history = runs.load_history(args.run_dir)
    out = args.out or args.run_dir / "training.svg"
    plotting.save_figure(plotting.plot_history(history), out)
    print(f"Wrote {out}")
    return 0


def plot_classification(args: argparse.Namespace) -> int:
    """Redraw the classification figure of a saved run: random test digits with label and prediction."""
    _configure(args)
    import jax

    from mnist_jax import data, plotting, runs
    from mnist_jax.model import classifier_for

    config, _, params = runs.load_run(args.run_dir)
    images, labels = data.load("test", args.data_dir)
    key = jax.random.key(config.seed if args.seed is None else args.seed)
    fig = plotting.classification_sample(params, classifier_for(config), images, labels, key,
                                         size=(args.rows, args.cols))
    out = args.out or args.run_dir / "classification.svg"
    plotting.save_figure(fig, out)
    print(f"Wrote {out}")
    return 0


def plot_errors(args: argparse.Namespace) -> int:
    """Where a trained run fails: the confusion matrix and the most confidently wrong test digits."""
    _configure(args)
    import numpy as np

    from mnist_jax import data, plotting, runs
    from mnist_jax.history import class_accuracy
    from mnist_jax.inference import classify
    from mnist_jax.model import classifier_for

    config, _, params = runs.load_run(args.run_dir)
    images, labels = data.load("test", args.data_dir)
    probs = classify(params, images, classifier_for(config), batch_size=config.test_batch_size)
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, probs.argmax(1)), 1)
    out_dir = args.out_dir or args.run_dir
    runs.check_writable(out_dir)
    plotting.save_figure(plotting.plot_confusion_matrix(confusion), out_dir / "confusion.svg")
    plotting.save_figure(plotting.plot_confident_mistakes(images, labels, probs, size=(args.rows, args.cols)),
                         out_dir / "mistakes.svg")
    accuracy = class_accuracy(confusion)
    print("per-class test accuracy: " + "  ".join(f"{c}: {a:.4f}" for c, a in enumerate(accuracy)))
    print(f"{int(confusion.sum() - np.trace(confusion))} errors in {len(labels)}. "
          f"Wrote {out_dir}/confusion.svg and {out_dir}/mistakes.svg")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Serve a drawing pad in the browser: draw a digit and watch the model read it (needs the demo extra)."""
    import socket

    try:  # before anything slow: a taken port is the commonest reason the demo cannot start
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the server binds: a port left in TIME_WAIT by a demo just stopped is free to take.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except socket.gaierror:
        raise UserError(f"--host {args.host}: not an address of this machine") from None
    except OSError as e:
        reason = "already in use; pick another with --port" if e.errno == errno.EADDRINUSE else e.strerror
        raise UserError(f"cannot serve on {args.host} port {args.port}: {reason}") from None
    try:
        import gradio  # noqa: F401  (only to say at once that it is missing)
    except ImportError:
        raise UserError("the demo needs Gradio, which the core install leaves out: "
                        "pip install 'mnist-jax[demo]' (from a clone: pip install -e '.[demo]')") from None
    _configure(args)
    from mnist_jax import demo as pad
    from mnist_jax import runs
    from mnist_jax.model import classifier_for

    config, _, params = runs.load_run(args.run_dir or runs.BUNDLED_RUN)
    source = f"the run in {args.run_dir}" if args.run_dir else "bundled with the package (the notebook's 30 epochs)"
    pad.serve(params, classifier_for(config), source, args.host, args.port,
              on_start=lambda url: print(f"The drawing pad is at {url} (Ctrl-C stops it)", flush=True))
    print("stopped")
    return 0


def benchmark(args: argparse.Namespace) -> int:
    """Benchmark mnist-jax against the notebook's PyTorch code, side by side on this machine."""
    _configure(args)
    from mnist_jax import benchmark as bench

    return bench.run(args)


def benchmark_use(args: argparse.Namespace) -> int:
    """Time using the model: `mnist-jax predict one.png` end to end, and the demo's answer to a drawing."""
    from mnist_jax import benchmark as bench

    _configure(args)
    return bench.run_use(args)


def benchmark_data(args: argparse.Namespace) -> int:
    """Time the data pipeline: first preparation into an empty TFDS data dir, then loading both splits."""
    from mnist_jax import benchmark as bench

    return bench.run_data(args)


# The parser and the exits ---------------------------------------------------------------------

def _add_commands(sub) -> dict[str, argparse.ArgumentParser]:
    runtime, data_dir, run_dir = _runtime_flags(), _data_flags(), _run_dir_arg()
    parsers = {}

    def command(name: str, func: Callable, parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=list(parents), help=func.__doc__.splitlines()[0],
                           description=func.__doc__.splitlines()[0])
        p.set_defaults(func=func)
        parsers[name] = p
        return p

    p = command("train", train, [runtime, data_dir])
    _add_train(p)
    p = command("evaluate", evaluate, [runtime, data_dir])
    p.add_argument("run_dir", type=Path, nargs="?", default=None,
                   help="a run directory written by mnist-jax train (default: the weights bundled in the package)")
    p.add_argument("--batch-size", type=positive(int), default=None, help="evaluation batch (default: the run's)")
    p = command("predict", predict, [runtime])
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    p.add_argument("--run", dest="run_dir", type=Path, default=None, metavar="RUN_DIR",
                   help="a run directory written by mnist-jax train (default: the weights bundled in the package)")
    p.add_argument("--top", type=positive(int), default=3, help="classes shown per image (default: %(default)s)")
    p.add_argument("--save-inputs", type=Path, default=None, metavar="DIR",
                   help="also write the 28x28 image the model saw for each input, as DIR/NAME-28x28.png")
    p = command("plot-history", plot_history, [run_dir, runtime])
    p.add_argument("--out", type=Path, default=None, help="output file, .svg or .png (default: RUN_DIR/training.svg)")
    p = command("plot-classification", plot_classification, [run_dir, runtime, data_dir])
    p.add_argument("--out", type=Path, default=None,
                   help="output file, .svg or .png (default: RUN_DIR/classification.svg)")
    p.add_argument("--seed", type=int, default=None, help="which digits to show (default: the run's seed)")
    p.add_argument("--rows", type=positive(int, MAX_GRID), default=2, help="grid rows, at most 16 (default: %(default)s)")
    p.add_argument("--cols", type=positive(int, MAX_GRID), default=3, help="grid columns, at most 16 (default: %(default)s)")
    p = command("plot-errors", plot_errors, [run_dir, runtime, data_dir])
    p.add_argument("--out-dir", type=Path, default=None, help="where to write the figures (default: RUN_DIR)")
    p.add_argument("--rows", type=positive(int, MAX_GRID), default=3, help="rows of mistakes shown (default: %(default)s)")
    p.add_argument("--cols", type=positive(int, MAX_GRID), default=6, help="columns of mistakes shown (default: %(default)s)")
    p = command("demo", demo, [runtime])
    p.add_argument("--run", dest="run_dir", type=Path, default=None, metavar="RUN_DIR",
                   help="a run directory written by mnist-jax train (default: the weights bundled in the package)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: %(default)s, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=positive(int, 65535), default=7860, help="port (default: %(default)s)")
    p = command("benchmark", benchmark, [runtime, data_dir])
    p.add_argument("--epochs", type=positive(int), default=30, help="mnist-jax epochs (default: %(default)s)")
    p.add_argument("--torch-epochs", type=positive(int), default=3, help="epochs of each torch variant (default: %(default)s)")
    p.add_argument("--repeat", type=positive(int), default=1, help="mnist-jax runs of each kind; medians reported (default: %(default)s)")
    p.add_argument("--skip-torch", action="store_true", help="do not run the PyTorch variants")
    p.add_argument("--train-examples", type=positive(int), default=None,
                   help="mnist-jax trains on the first N examples only (a smoke run, not a benchmark)")
    p.add_argument("--test-examples", type=positive(int), default=None,
                   help="mnist-jax evaluates on the first N test examples only (a smoke run, not a benchmark)")
    p.add_argument("--seeds", type=positive(int), default=None,
                   help="also time train --seeds N: N models at once (default: not run)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p = command("benchmark-use", benchmark_use, [runtime])
    p.add_argument("--repeat", type=positive(int), default=5, help="warm predict runs; 4x as many demo requests (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p = command("benchmark-data", benchmark_data, [])
    p.add_argument("--repeat", type=positive(int), default=3, help="measurements of each (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parsers


def parser(prog: str = "mnist-jax") -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(prog=prog, description="The PyTorch MNIST notebook in JAX: train its CNN, evaluate it, use it.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return p, _add_commands(sub)


def run(argv: Sequence[str], prog: str = "mnist-jax", command: str | None = None, *,
        leave_after_checkpoint_error: bool = False) -> int:
    """Parse `argv` and run the command; `command` fixes it (as `python scripts/train.py` does),
    and error messages then start with `prog` alone.

    `leave_after_checkpoint_error` (for a process of its own): after a checkpoint error, end the
    process at once with exit status 2: a failed Orbax save leaves threads mid-write that can crash
    the interpreter as it shuts down (seen as SIGSEGV after the error line on this project's CPU).
    """
    top, parsers = parser(prog)
    if command is not None:
        parsers[command].prog = prog
        args = parsers[command].parse_args(list(argv))
    else:
        args, unknown = top.parse_known_args(list(argv))
        command = args.command
        if unknown:  # said by the command's own parser, which names the command
            parsers[command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.prog = parsers[command].prog
    if command == "train":
        _check_train_args(parsers[command], args)
    try:
        return args.func(args)
    except UserError as e:
        print(f"{args.prog}: error: {e}", file=sys.stderr)
        if leave_after_checkpoint_error and isinstance(e, CheckpointError):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_USER_ERROR)
        return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """The `mnist-jax` console script."""
    try:
        return run(sys.argv[1:] if argv is None else argv, leave_after_checkpoint_error=True)
    except KeyboardInterrupt:  # Ctrl-C outside training (which handles its own), e.g. while importing
        print("interrupted", file=sys.stderr)
        return 128 + 2


def script_main(command: str) -> int:
    """`python scripts/NAME.py ...`: the command `command`, its errors named after the script."""
    try:
        return run(sys.argv[1:], prog=Path(sys.argv[0]).name, command=command, leave_after_checkpoint_error=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + 2

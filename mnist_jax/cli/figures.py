"""The commands that measure a saved run and redraw its figures: evaluate, plot-history, -classification, -errors."""

from __future__ import annotations

import argparse

from mnist_jax import config as cfg
from mnist_jax.cli.common import configure, load, model_and_names, params_phrase, say
from mnist_jax.cli.flags import common_flags, data_flag, grid_flags, number, path, run_flags


def evaluate(args: argparse.Namespace) -> int:
    """Report the test loss and accuracy of a saved run (an unfinished run: its latest checkpoint)."""
    configure(args)
    from mnist_jax.run.evaluation import evaluate_on_test_set

    config, history, params = load(args)
    summary, count = evaluate_on_test_set(config, params, args.data_dir, args.batch_size)
    print(f"Test loss: {summary['test_loss']:.4f} / accuracy: {summary['test_accuracy']:.4f} "
          f"({count} test examples, {params_phrase(history)})")
    return 0


def plot_history(args: argparse.Namespace) -> int:
    """Redraw the training-history figure of a saved run, without retraining."""
    configure(args)
    from mnist_jax.apps import plotting
    from mnist_jax.run import rundir

    _, history = rundir.load_history(args.run_dir or rundir.BUNDLED_RUN)
    out = args.out or rundir.figure_path(args.run_dir, "training.svg")
    plotting.save_figure(plotting.plot_history(history), out)
    say(f"Wrote {out}")
    return 0


def plot_classification(args: argparse.Namespace) -> int:
    """Redraw the classification figure of a saved run: random test digits with label and prediction."""
    configure(args)
    import jax

    from mnist_jax import data
    from mnist_jax.apps import plotting
    from mnist_jax.run import rundir

    config, _, params = load(args)
    (model, names), (images, labels) = model_and_names(config), data.load("test", args.data_dir, dataset=config.dataset)
    key = jax.random.key(config.seed if args.seed is None else args.seed)
    fig = plotting.classification_sample(params, model, images, labels, key, size=(args.rows, args.cols), class_names=names)
    out = args.out or rundir.figure_path(args.run_dir, "classification.svg")
    plotting.save_figure(fig, out)
    say(f"Wrote {out}")
    return 0


def plot_errors(args: argparse.Namespace) -> int:
    """Where a trained run fails: the confusion matrix and the most confidently wrong test digits."""
    configure(args)
    import numpy as np

    from mnist_jax import data
    from mnist_jax.apps import plotting
    from mnist_jax.run import memory, rundir
    from mnist_jax.run.history import class_accuracy

    config, _, params = load(args)
    (model, names), (images, labels) = model_and_names(config), data.load("test", args.data_dir, dataset=config.dataset)
    memory.check_evaluation(config.test_batch_size, len(labels), "the run's test_batch_size")
    probs, confusion = plotting.test_errors(params, model, images, labels, config.test_batch_size)
    out_dir = args.out_dir or rundir.figure_path(args.run_dir, ".")
    rundir.check_writable(out_dir)
    plotting.save_error_figures(images, labels, probs, confusion, out_dir, (args.rows, args.cols), names)
    print("per-class test accuracy: " + "  ".join(f"{names[c]}: {a:.4f}" for c, a in enumerate(class_accuracy(confusion))))
    say(f"{int(confusion.sum() - np.trace(confusion))} errors in {len(labels)}. "
        f"Wrote {out_dir / 'confusion.svg'} and {out_dir / 'mistakes.svg'}")
    return 0


def add_evaluate(command) -> None:
    p = command("evaluate", evaluate, [run_flags(True), common_flags(), data_flag()])
    p.add_argument("--batch-size", type=number("batch_size", minimum=1), default=None,
                   help="evaluation batch (default: the run's)")


def add_plot_history(command) -> None:
    p = command("plot-history", plot_history, [run_flags(True), common_flags()])
    p.add_argument("--out", type=path, default=None,
                   help="output file, .svg or .png (default: RUN_DIR/training.svg; ./training.svg for the bundled run)")


def add_plot_classification(command) -> None:
    p = command("plot-classification", plot_classification, [run_flags(True), common_flags(), data_flag()])
    p.add_argument("--out", type=path, default=None, help="output file, .svg or .png (default: RUN_DIR/"
                                                          "classification.svg; ./classification.svg for the bundled run)")
    p.add_argument("--seed", type=number("seed", minimum=0, maximum=cfg.MAX_SEED), default=None,
                   help="which digits to show (default: the run's seed)")
    grid_flags(p, 2, 3, "digits")


def add_plot_errors(command) -> None:
    p = command("plot-errors", plot_errors, [run_flags(True), common_flags(), data_flag()])
    p.add_argument("--out-dir", type=path, default=None,
                   help="where to write confusion.svg and mistakes.svg (default: RUN_DIR; . for the bundled run)")
    grid_flags(p, 3, 6, "mistakes")

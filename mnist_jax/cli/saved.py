"""The commands that read a saved run (RUN_DIR, or the bundled weights): each loads it, calls the
library and says what it did."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax import apps, run  # packages whose modules import on first use, so --help stays instant
from mnist_jax import config as cfg
from mnist_jax.cli.common import EXIT_USER_ERROR, configure, run_dir, say
from mnist_jax.cli.flags import grid_flags, number, path
from mnist_jax.errors import UserError
from mnist_jax.files import check_new_output

IMAGES_HELP = "image files (PNG, JPEG, ...), or folders of them (every file in each, sorted by name)"


def evaluate(args: argparse.Namespace) -> int:
    """Report the test loss and accuracy of a saved run (an unfinished run: its latest checkpoint)."""
    configure(args)
    config, history, params = run.rundir.load_run(args.run_dir)
    summary, count = run.evaluation.evaluate_on_test_set(config, params, args.data_dir, args.batch_size)
    print(f"Test loss: {summary['test_loss']:.4f} / accuracy: {summary['test_accuracy']:.4f} "
          f"({count} test examples, {run.rundir.params_phrase(history)})")
    return 0


def plot_history(args: argparse.Namespace) -> int:
    """Redraw the training-history figure of a saved run (a sweep's figure for a sweep), without retraining."""
    configure(args)
    if args.out is not None and args.format is not None:  # the file's suffix says its format
        raise UserError(f"--out {args.out} names the file and its format; leave out --format")
    fig, name = apps.plotting.history_figure(*run.rundir.load_history(run_dir(args)), args.format or "svg")
    out = args.out or run.rundir.figure_path(args.run_dir, name)
    apps.plotting.save_figure(fig, out)
    say(f"Wrote {out}")
    return 0


def _run_and_test_set(args: argparse.Namespace):
    """For the figures of a saved run: its config, params, model, class names and test set."""
    configure(args)
    from mnist_jax import data

    config, _, params = run.rundir.load_run(args.run_dir)
    model, names = apps.inference.model_and_names(config)
    return config, params, model, names, data.load("test", args.data_dir, dataset=config.dataset)


def plot_classification(args: argparse.Namespace) -> int:
    """Redraw the classification figure of a saved run: random test digits with label and prediction."""
    import jax

    config, params, model, names, (images, labels) = _run_and_test_set(args)
    key = jax.random.key(config.seed if args.seed is None else args.seed)
    fig = apps.plotting.classification_sample(params, model, images, labels, key, (args.rows, args.cols), names)
    out = args.out or run.rundir.figure_path(args.run_dir, "classification.svg")
    apps.plotting.save_figure(fig, out)
    say(f"Wrote {out}")
    return 0


def plot_errors(args: argparse.Namespace) -> int:
    """Where a trained run fails: the confusion matrix and the most confidently wrong test digits."""
    config, params, model, names, (images, labels) = _run_and_test_set(args)
    run.memory.check_evaluation(config, config.test_batch_size, len(labels), "the run's test_batch_size")
    probs, confusion = apps.plotting.error_figures_data(params, model, images, labels, config.test_batch_size)
    out_dir = args.out_dir or run.rundir.figure_path(args.run_dir, ".")
    run.rundir.check_writable(out_dir)
    accuracy, written = apps.plotting.save_error_figures(images, labels, probs, confusion, out_dir,
                                                         (args.rows, args.cols), names, args.format)
    print(accuracy)
    say(written)
    return 0


def _read_digits(args: argparse.Namespace, *run_notes: str):
    """`images.read_digits` of the images named, its notes (after `run_notes`) and errors said on stderr."""
    read = apps.images.read_digits(args.images)
    for line in [*(f"note: {note}" for note in (*run_notes, *read.notes)), *(f"error: {e}" for e in read.errors)]:
        say(f"{args.prog}: {line}", file=sys.stderr)
    return read.inputs, read.paths, read.digits


def predict(args: argparse.Namespace) -> int:
    """Classify your own digit images with a trained run: the top classes and their probabilities."""
    configure(args)
    import numpy as np

    record, params = run.rundir.load_record_and_params(args.run_dir)
    if args.save_inputs:
        run.rundir.check_writable(args.save_inputs)
    inputs, paths, digits = _read_digits(args, *apps.inference.run_notes(args.run_dir, record.finished, record.unsure_below))
    if digits:
        model, names = apps.inference.model_and_names(record.config)
        pictures = np.stack(digits)
        probabilities = apps.inference.classify(params, pictures, model)
        verdicts = run.rundir.load_doubts(args.run_dir, record).verdicts(params, pictures, probabilities)
        for path, probs, verdict in zip(paths, probabilities, verdicts):
            say(f"{path}: {apps.inference.prediction_line(probs, names, min(args.top, 10), verdict)}")
    if args.save_inputs and digits:
        for digit, out in zip(digits, apps.images.input_files(paths, args.save_inputs)):
            apps.images.save_digit(digit, out)
        say(f"Wrote the 28x28 images the model saw to {args.save_inputs}/ (NAME-28x28.png)")
    return 0 if len(paths) == len(inputs) else EXIT_USER_ERROR


def explain(args: argparse.Namespace) -> int:
    """Show why the model read each picture as it did: where the evidence for its top classes lies."""
    configure(args)
    config, _, params = run.rundir.load_run(args.run_dir)
    model, names = apps.inference.model_and_names(config)
    run.rundir.check_writable(args.out_dir)
    inputs, paths, digits = _read_digits(args)
    if digits:
        found = apps.explain.explain(params, digits, model, top=args.top, steps=args.steps)
        outs = apps.images.input_files(paths, args.out_dir, suffix=f"-explained.{args.format}")
        for path, out, (classes, probs) in zip(paths, outs, apps.plotting.save_explanations(digits, found, outs, names)):
            say(f"{path}: {apps.inference.ranked(zip(classes, probs), names)}  -> {out}")
    return 0 if len(paths) == len(inputs) else EXIT_USER_ERROR


def export(args: argparse.Namespace) -> int:
    """Save a trained classifier: a jax.export artifact that runs with JAX alone, an ONNX model, or
    a static web page that runs it in the browser."""
    configure(args)
    if args.format == "web":
        return _export_web(args)
    if args.ort_dir is not None:
        raise UserError("--ort-dir is for --format web: the page's copy of onnxruntime-web")
    # An output never replaces the run it is made from (its params, its history), nor a folder, link or device.
    check_new_output(args.out, apart_from=run_dir(args))
    output = args.output or "probabilities"
    config, history, params = run.rundir.load_run(args.run_dir)
    content, how = apps.export.export_file(params, config, apps.export.format_for(args.out, args.format), output)
    apps.export.write_file(args.out, content)
    say(f"Wrote {args.out} ({len(content) / 1e3:.0f} kB): uint8 images (N, 28, 28, 1) to (N, 10) float32 "
        f"{output}, the {run.rundir.params_phrase(history)}; load it with {how}")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    """`export --format web`: the site, written into --out beside what else is there."""
    web = apps.web
    if args.output not in (None, "probabilities"):
        raise UserError("--format web shows probabilities on its page; leave out --output")
    web.check_site_dir(args.out, apart_from=run_dir(args), ort=args.ort_dir is not None)
    ort_files = web.read_ort_dir(args.ort_dir) if args.ort_dir is not None else None
    record, params = run.rundir.load_record_and_params(args.run_dir)
    manifest = web.manifest(record.config, record.history, record.unsure_below, web.run_name(args.run_dir))
    rule = run.rundir.load_doubts(args.run_dir, record).rule  # the page doubts what predict doubts
    files = web.write_run_site(args.out, params, record.config, manifest, ort_files, rule)
    say(f"Wrote the site {web.site_summary(args.out, files, run.rundir.params_phrase(record.history), ort_files is not None)}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Serve a drawing pad in the browser: draw a digit and watch the model read it (needs the demo extra)."""
    pad = apps.demo
    pad.check_port(args.host, args.port)  # before Gradio: a taken port is the commonest reason the demo cannot start
    pad.require_gradio()
    configure(args)
    record, params = run.rundir.load_record_and_params(args.run_dir)
    model, names = apps.inference.model_and_names(record.config)
    source = f"the run in {args.run_dir}" if args.run_dir else "bundled with the package (the notebook's 30 epochs)"
    pad.serve(params, model, source, args.host, args.port, on_start=pad.announce(args.host, args.port),
              class_names=names, doubts=run.rundir.load_doubts(args.run_dir, record))
    print("stopped")
    return 0


def add_commands(command) -> None:
    """The commands that read a saved run, with their flags, in the order --help lists them."""
    p = command("evaluate", evaluate, "positional", data=True)
    p.add_argument("--batch-size", type=number("batch_size", minimum=1), default=None,
                   help="evaluation batch (default: the run's)")
    p = command("predict", predict, "--run")
    p.add_argument("images", nargs="+", type=path, metavar="IMAGE", help=IMAGES_HELP)
    p.add_argument("--top", type=number("top", minimum=1), default=3, help="classes shown per image (default: %(default)s)")
    p.add_argument("--save-inputs", type=path, default=None, metavar="DIR",
                   help="also write the 28x28 image the model saw for each input, as DIR/NAME-28x28.png")
    p = command("explain", explain, "--run")
    p.add_argument("images", nargs="+", type=path, metavar="IMAGE", help=IMAGES_HELP)
    p.add_argument("--top", type=number("top", minimum=1, maximum=10), default=2,
                   help="classes explained per image, most probable first (default: %(default)s)")
    p.add_argument("--steps", type=number("steps", minimum=1, maximum=1024), default=64, help="points on the path "
                   "from the blank digit (default: %(default)s, within 1%% of the logit gain on test digits)")
    p.add_argument("--out-dir", type=path, default=Path("explanations"), metavar="DIR",
                   help="where each NAME-explained.svg (.png with --format png) goes (default: %(default)s)")
    p.add_argument("--format", choices=("svg", "png"), default="svg", help="the figures' format (default: svg)")
    p = command("plot-history", plot_history, "positional")
    p.add_argument("--out", type=path, default=None, help="output file, .svg or .png as its suffix says (default: "
                   "RUN_DIR/training.svg, a sweep's RUN_DIR/sweep.svg; ./training.svg for the bundled run)")
    p.add_argument("--format", choices=("svg", "png"), default=None,
                   help="the default file's format, without --out (default: svg)")
    p = command("plot-classification", plot_classification, "positional", data=True)
    p.add_argument("--out", type=path, default=None, help="output file, .svg or .png (default: RUN_DIR/"
                                                          "classification.svg; ./classification.svg for the bundled run)")
    p.add_argument("--seed", type=number("seed", minimum=0, maximum=cfg.MAX_SEED), default=None,
                   help="which digits to show (default: the run's seed)")
    grid_flags(p, 2, 3, "digits")
    p = command("plot-errors", plot_errors, "positional", data=True)
    p.add_argument("--out-dir", type=path, default=None,
                   help="where to write confusion.svg and mistakes.svg (default: RUN_DIR; . for the bundled run)")
    p.add_argument("--format", choices=("svg", "png"), default="svg", help="the figures' format (default: svg)")
    grid_flags(p, 3, 6, "mistakes")
    p = command("export", export, "positional")
    p.add_argument("--out", type=path, required=True, metavar="PATH",
                   help="the file to write; for --format web, the site's folder (keeping all but an earlier site's files)")
    p.add_argument("--output", choices=("probabilities", "logits"), default=None,
                   help="what the exported function returns (default: probabilities)")
    p.add_argument("--format", choices=("jax", "onnx", "web"), default=None,
                   help="jax: a jax.export artifact (StableHLO); onnx: an ONNX model, with the onnx extra; web: a "
                        "static page running the model in the browser (default: onnx for a FILE named .onnx, else jax)")
    p.add_argument("--ort-dir", type=path, default=None, metavar="DIR",
                   help="for --format web: onnxruntime-web's files to copy into the site, so that it needs no network "
                        "(node_modules/onnxruntime-web/dist after npm install; default: the page loads them from a public URL)")
    p = command("demo", demo, "--run")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: %(default)s, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=number("port", minimum=1, maximum=65535), default=7860, help="port (default: %(default)s)")

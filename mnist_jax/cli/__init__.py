"""The `mnist-jax` command: parse the flags, call the library, print, and turn errors into exits.

    mnist-jax train [--epochs N] [--seeds N] [--run-dir DIR | --resume DIR] ...
    mnist-jax evaluate [RUN_DIR]      mnist-jax predict IMAGE... [--run RUN_DIR]
    mnist-jax plot-history [RUN_DIR]  mnist-jax plot-classification [RUN_DIR]  mnist-jax plot-errors [RUN_DIR]
    mnist-jax export [RUN_DIR] --out FILE [--format onnx]
    mnist-jax demo [--run RUN_DIR] [--host H] [--port P]

`python scripts/NAME.py ...` runs the same commands. The flags of `train` are made from the fields
of `config.TrainConfig` and `config.RunOptions`. Exit status: 0 done; 2 a user error (one line on
stderr: `PROG: error: ...`, from any `mnist_jax.errors.UserError`, or from the flags); 3 the loss
diverged; 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM), resumable.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import mnist_jax
from mnist_jax import config as cfg
from mnist_jax.errors import CheckpointError, ConfigError, UserError, one_line

EXIT_USER_ERROR = 2  # argparse uses 2 for bad flags too
EXIT_DIVERGED = 3
ERROR_LIMIT = 5000  # characters in an error line: room for a path of 4,096 bytes and what is wrong with it
MAX_GRID = 16  # rows or columns of digits in a figure: 16 x 16 = 256 digits is already hard to read
DISTRIBUTED_FLAGS = ("coordinator", "num_processes", "process_id")


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake said in one line and a pointer to --help instead of the usage."""

    def error(self, message: str):
        line = one_line(f"{self.prog}: error: {message} (see {self.prog} --help)", ERROR_LIMIT)
        self.exit(EXIT_USER_ERROR, line + "\n")


def _say(text: str, file=None) -> None:
    """Print one line of output: names from the file system may hold newlines or bytes that are
    not UTF-8 (errors.one_line), and an error past a path's 4,096 bytes is cut."""
    error = file is sys.stderr
    print(one_line(text, limit=ERROR_LIMIT if error else None), file=sys.stdout if file is None else file)


def value_parser(field: cfg.Field) -> Callable[[str], object]:
    """argparse type for a field: the text as the field's kind, within its choices and bounds."""
    def parse(text: str):
        try:
            value = field.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if field.kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            field.check(value)
        except ConfigError as e:
            # As typed, where the float it became says less (1e-400 is 0.0).
            shown = str(e) if str(value) == text else f"{e} (--{field.name.replace('_', '-')} {text})"
            raise argparse.ArgumentTypeError(shown) from None
        return value

    parse.__name__ = field.name
    return parse


def number(name: str, kind: type = int, **bounds) -> Callable[[str], object]:
    """argparse type for a flag that is no config field: `kind`, within `bounds` (see config.setting)."""
    return value_parser(cfg.Field(name, kind, **bounds))


def add_fields(parser: argparse.ArgumentParser, cls: type, names: Sequence[str] | None = None) -> None:
    """A flag for each field of the config class `cls` (or those in `names`), with its help, choices
    and bounds. Flags not given stay out of the parsed namespace, so a resume can tell them apart."""
    for f in cfg.fields(cls):
        if names is not None and f.name not in names:
            continue
        help = f"{f.help} (default: {f.shown_default()})".replace("%", "%%")  # argparse formats help with %
        kwargs: dict = {"help": help, "default": argparse.SUPPRESS}
        if f.kind is bool:
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        elif f.choices is not None:
            kwargs["choices"] = f.choices
        else:
            kwargs.update(type=value_parser(f), metavar=_metavar(f))
        parser.add_argument(f.flag, *f.aliases, dest=f.name, **kwargs)


def _metavar(f: cfg.Field) -> str | None:
    return f.metavar or {int: "N", float: "X", Path: "DIR"}.get(f.kind)


def given(args: argparse.Namespace, cls: type) -> dict:
    """The fields of `cls` given on the command line."""
    return {f.name: getattr(args, f.name) for f in cfg.fields(cls) if hasattr(args, f.name)}


def flag_table(cls: type) -> str:
    """The flags of a config class as a Markdown table, as docs/command-line.md shows them."""
    rows = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for f in cfg.fields(cls):
        value = "" if f.kind is bool else f" {{{','.join(f.choices)}}}" if f.choices else f" {_metavar(f)}"
        flags = ", ".join(f"`{flag}{value}`" for flag in (f.flag, *f.aliases))
        rows.append(f"| {flags} | {f.shown_default()} | {f.help} |")
    return "\n".join(rows)


TABLE_MARKS = ("<!-- flag table of {} (python scripts/flag_tables.py writes it) -->", "<!-- end of the flag table -->")


def with_flag_tables(markdown: str) -> str:
    """`markdown` with each marked flag table (see TABLE_MARKS) written anew from the config."""
    for cls in (cfg.TrainConfig, cfg.RunOptions):
        begin, end = TABLE_MARKS[0].format(cls.__name__), TABLE_MARKS[1]
        if begin not in markdown:
            raise ValueError(f"no {begin!r} in the page")
        head, rest = markdown.split(begin, 1)
        markdown = f"{head}{begin}\n{flag_table(cls)}\n{end}{rest.split(end, 1)[1]}"
    return markdown


def _path(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    return Path(text)


def _configure(args: argparse.Namespace, distributed=None) -> None:
    from mnist_jax.run import environment

    cache = None if args.no_compile_cache else (args.compile_cache or environment.default_compile_cache())
    environment.configure(compile_cache=cache, distributed=distributed)


# train ----------------------------------------------------------------------------------------

def train(args: argparse.Namespace) -> int:
    """Train the notebook's CNN on MNIST and reproduce its log and figures."""
    from mnist_jax.run import environment

    distributed = environment.Distributed(*(getattr(args, k) for k in DISTRIBUTED_FLAGS))
    _configure(args, distributed if args.distributed else None)
    from mnist_jax.run import experiment

    from mnist_jax import recipes
    settings, options = given(args, cfg.TrainConfig), cfg.RunOptions(**given(args, cfg.RunOptions))
    extra = [load_hook(spec) for spec in args.hook]
    swept = cfg.parse_sweep(settings["sweep"])[0] if settings.get("sweep") else None
    if swept in settings:
        raise UserError(f"--{swept.replace('_', '-')} and --sweep {settings['sweep']} both set {swept}; give one")
    if args.resume:
        outcome = experiment.resume(args.resume, settings, options, extra_hooks=extra)
    else:
        config = recipes.config(args.recipe or "notebook", **settings)  # a flag given wins over the recipe
        outcome = experiment.run(config, args.run_dir, options, extra_hooks=extra)
    return _report(outcome, args.prog)


def load_hook(spec: str):
    """`--hook MODULE:NAME[:KEY=VALUE,...]`: NAME from MODULE (importable from the current directory
    or the Python path), called with the KEY=VALUE pairs as keyword arguments, each value a string,
    to make the hook, a `mnist_jax.hooks.Hook`. Any mistake is a one-line UserError naming `spec`."""
    import importlib

    from mnist_jax.hooks import Hook

    module_name, name, arguments = _parse_hook(spec)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` finds the current directory's modules
    try:
        hook = getattr(importlib.import_module(module_name), name)(**arguments)
    except UserError as e:  # a hook that says itself what is wrong with its arguments
        raise UserError(f"--hook {spec}: {e}") from None
    except Exception as e:  # the user's code: any error in it is theirs, said in one line
        raise UserError(f"--hook {spec}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        .rstrip(": ")) from None
    if not isinstance(hook, Hook):
        raise UserError(f"--hook {spec}: made a {type(hook).__name__}, not a mnist_jax.hooks.Hook")
    return hook


def _parse_hook(spec: str) -> tuple[str, str, dict[str, str]]:
    """MODULE, NAME and the keyword arguments of a `--hook` spec; a UserError for a malformed one."""
    module_name, _, rest = spec.partition(":")
    name, _, listed = rest.partition(":")  # a value may hold ":" (a path), never ","
    if not module_name or not name:
        raise UserError(f"--hook {spec}: expected MODULE:NAME or MODULE:NAME:KEY=VALUE,..., "
                        f"e.g. mnist_jax.hooks.logs:CsvLog:path=metrics.csv")
    arguments: dict[str, str] = {}
    for pair in listed.split(",") if listed else []:
        key, equals, value = pair.partition("=")
        if not equals or not key.isidentifier():
            raise UserError(f"--hook {spec}: expected KEY=VALUE after {name}:, got {pair!r}")
        if key in arguments:
            raise UserError(f"--hook {spec}: {key} is given twice")
        arguments[key] = value
    return module_name, name, arguments


def _params_phrase(history) -> str:
    done = len(history["train_loss"])
    return f"params after epoch {done - 1}" if done else "params before any training (the history has no epoch)"


def _epochs_phrase(first: int, last: int) -> str:
    if first == 0:
        return f"{last + 1} epoch{'s' if last else ''}"
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def _report(outcome, prog: str) -> int:
    """Say how training ended; the exit status."""
    import numpy as np

    from mnist_jax.run import history as hist
    from mnist_jax.fast import parallel

    from mnist_jax.run import rundir
    if outcome.status == "diverged":
        _say(f"{prog}: error: {outcome.message}", file=sys.stderr)
        return EXIT_DIVERGED
    last = len(outcome.history["train_loss"]) - 1
    if outcome.status == "stopped":
        if last < 0:
            _say(f"Stopped in the first epoch, before any checkpoint. Start again with: "
                 f"mnist-jax train --run-dir {shlex.quote(str(outcome.workdir))} --overwrite", file=sys.stderr)
        else:
            where = "mid-epoch" if outcome.state is None else f"after epoch {last}"
            _say(f"Stopped {where}; the checkpoint after epoch {last} and the history are in {outcome.workdir}. "
                 f"Resume with: mnist-jax train --resume {shlex.quote(str(outcome.workdir))}", file=sys.stderr)
        return 128 + (outcome.signal or signal.SIGTERM)  # or stopped because another process was asked to
    if not parallel.is_primary():
        return 0
    seeds = np.ndim(outcome.history["test_accuracy"][-1])
    what = _epochs_phrase(outcome.first_epoch, last) if last >= outcome.first_epoch else "no epoch (all were done)"
    config = outcome.config
    figures = rundir.FIGURE_FILES
    if config.sweep is not None:
        from mnist_jax import sweep

        what += f" of {config.models} models"
        for line in sweep.table(config, outcome.history):
            print(line)
        name = cfg.parse_sweep(config.sweep)[0]
        _say(f"Each model's run is in {outcome.workdir}/{name}=VALUE{'-seed-S' if config.seeds > 1 else ''}")
        figures = (rundir.SWEEP_FIGURE, "classification.svg")
    elif seeds:
        final = np.asarray(outcome.history["test_accuracy"][-1])
        what += f" of {len(final)} seeds"
        _say(f"Final test accuracy over {len(final)} seeds: {final.mean():.4f} +- {final.std(ddof=1):.4f} "
             f"(min {final.min():.4f}, max {final.max():.4f}); each seed's run is in {outcome.workdir}/seed-S")
    if hist.reached(outcome.history, config.stop_at_accuracy):
        reached = np.min(outcome.history["test_accuracy"][-1])
        print(f"Test accuracy {reached:.4f} after epoch {last} reached --stop-at-accuracy "
              f"{config.stop_at_accuracy:g}: the run ends there")
    _say(f"Trained {what} in {outcome.seconds:.1f} s. Wrote {outcome.workdir}/"
         f"{{{rundir.HISTORY_FILE}, {rundir.PARAMS_FILE}, {', '.join(figures)}}}")
    if outcome.copied_figures:
        replaced = sum(was for _, was in outcome.copied_figures)
        _say(f"Copied the figures to {', '.join(str(path) for path, _ in outcome.copied_figures)}"
             + (f" (replacing the {replaced} there before)" if replaced else ""))
    return 0


# Using a saved run ----------------------------------------------------------------------------

def _load(args: argparse.Namespace):
    """The run of `args.run_dir`, or the weights bundled in the package: (config, history, params)."""
    from mnist_jax.run import rundir

    return rundir.load_run(args.run_dir or rundir.BUNDLED_RUN)


def _load_record(args: argparse.Namespace):
    """`_load`'s run with the whole record of its history.json (its threshold of "unsure", None for
    a run older than it): (record, params)."""
    from mnist_jax.run import rundir

    return rundir.load_record_and_params(args.run_dir or rundir.BUNDLED_RUN)


def _output(args: argparse.Namespace, name: str) -> Path:
    """Where a figure of the run goes: RUN_DIR/NAME, or ./NAME for the bundled run, whose directory
    is part of the package. Not into a run that a process is still writing."""
    if not args.run_dir:
        return Path(name)
    from mnist_jax.run import rundir

    rundir.check_not_in_use(args.run_dir)
    return args.run_dir / name


def evaluate(args: argparse.Namespace) -> int:
    """Report the test loss and accuracy of a saved run (an unfinished run: its latest checkpoint)."""
    _configure(args)
    import jax

    from mnist_jax import data
    from mnist_jax.run import history, memory
    from mnist_jax.fast import programs
    from mnist_jax.fast import model_for
    from mnist_jax.steps import eval_batch_size

    config, hist, params = _load(args)
    images, labels = data.load("test", args.data_dir, dataset=config.dataset)
    batch_size = args.batch_size or config.test_batch_size
    memory.check_evaluation(batch_size, len(labels), "--batch-size" if args.batch_size else "the run's test_batch_size")
    program = programs.eval_program(model_for(config), eval_batch_size(batch_size, len(labels)))
    metrics, _ = program(params, images, labels)
    summary = history.summarize(jax.device_get(metrics))
    print(f"Test loss: {summary['test_loss']:.4f} / accuracy: {summary['test_accuracy']:.4f} "
          f"({len(labels)} test examples, {_params_phrase(hist)})")
    return 0


def _read_digits(args: argparse.Namespace) -> tuple[list, list, list]:
    """The inputs `args.images` names (folders expanded), and the paths and digits of those read;
    each input that cannot be read is one error line, and the others go on."""
    from mnist_jax.apps import images

    (inputs, notes), paths, digits = images.expand_folders(args.images), [], []
    for note in notes:
        _say(f"{args.prog}: note: {note}", file=sys.stderr)
    for path in inputs:
        try:
            if images.is_folder(path):
                raise images.ImageError(f"{path}: a folder with no files in it (or none this user can read)")
            digits.append(images.load_image(path))
            paths.append(path)
        except images.ImageError as e:
            _say(f"{args.prog}: error: {e}", file=sys.stderr)
    return inputs, paths, digits


def predict(args: argparse.Namespace) -> int:
    """Classify your own digit images with a trained run: the top classes and their probabilities."""
    _configure(args)
    import numpy as np

    from mnist_jax.apps import images, inference
    from mnist_jax.run import rundir
    from mnist_jax.data.datasets import DATASETS
    from mnist_jax.fast import model_for

    record, params = _load_record(args)
    config, unsure_below = record.config, record.unsure_below
    names = DATASETS[config.dataset].class_names
    if args.save_inputs:
        rundir.check_writable(args.save_inputs)
    inputs, paths, digits = _read_digits(args)
    if digits:
        probabilities = inference.classify(params, np.stack(digits), model_for(config))
        for path, probs in zip(paths, probabilities):
            ranked = "  ".join(f"{names[c]} ({p:.4f})" for c, p in inference.top_k(probs, min(args.top, 10)))
            unsure = unsure_below is not None and probs.max() < unsure_below
            _say(f"{path}: {ranked}{'  unsure' if unsure else ''}")
    if args.save_inputs and digits:
        for digit, out in zip(digits, images.input_files(paths, args.save_inputs)):
            images.save_digit(digit, out)
        _say(f"Wrote the 28x28 images the model saw to {args.save_inputs}/ (NAME-28x28.png)")
    return 0 if len(paths) == len(inputs) else EXIT_USER_ERROR


def explain(args: argparse.Namespace) -> int:
    """Show why the model read each picture as it did: where the evidence for its top classes lies."""
    _configure(args)
    import numpy as np

    from mnist_jax.apps import explain as explaining
    from mnist_jax.apps import images, plotting
    from mnist_jax.run import rundir
    from mnist_jax.data.datasets import DATASETS
    from mnist_jax.fast import model_for

    config, _, params = _load(args)
    names = DATASETS[config.dataset].class_names
    rundir.check_writable(args.out_dir)
    inputs, paths, digits = _read_digits(args)
    if digits:
        explained = explaining.explain(params, np.stack(digits), model_for(config), top=args.top, steps=args.steps)
        outs = images.input_files(paths, args.out_dir, suffix="-explained.svg")
        for i, (path, out) in enumerate(zip(paths, outs)):
            plotting.save_figure(plotting.plot_explanation(digits[i], explained.classes[i], explained.probabilities[i],
                                                           explained.attributions[i], names), out)
            ranked = "  ".join(f"{names[c]} ({p:.4f})" for c, p in zip(explained.classes[i],
                                                                      explained.probabilities[i]))
            _say(f"{path}: {ranked}  -> {out}")
    return 0 if len(paths) == len(inputs) else EXIT_USER_ERROR


def plot_history(args: argparse.Namespace) -> int:
    """Redraw the training-history figure of a saved run, without retraining."""
    _configure(args)
    from mnist_jax.apps import plotting

    from mnist_jax.run import rundir
    _, history = rundir.load_history(args.run_dir or rundir.BUNDLED_RUN)
    out = args.out or _output(args, "training.svg")
    plotting.save_figure(plotting.plot_history(history), out)
    _say(f"Wrote {out}")
    return 0


def plot_classification(args: argparse.Namespace) -> int:
    """Redraw the classification figure of a saved run: random test digits with label and prediction."""
    _configure(args)
    import jax

    from mnist_jax import data
    from mnist_jax.apps import plotting
    from mnist_jax.fast import model_for

    config, _, params = _load(args)
    images, labels = data.load("test", args.data_dir, dataset=config.dataset)
    key = jax.random.key(config.seed if args.seed is None else args.seed)
    fig = plotting.classification_sample(params, model_for(config), images, labels, key, size=(args.rows, args.cols),
                                         class_names=data.DATASETS[config.dataset].class_names)
    out = args.out or _output(args, "classification.svg")
    plotting.save_figure(fig, out)
    _say(f"Wrote {out}")
    return 0


def plot_errors(args: argparse.Namespace) -> int:
    """Where a trained run fails: the confusion matrix and the most confidently wrong test digits."""
    _configure(args)
    import numpy as np

    from mnist_jax import data
    from mnist_jax.run import memory, rundir
    from mnist_jax.apps import plotting
    from mnist_jax.run.history import class_accuracy
    from mnist_jax.apps.inference import classify
    from mnist_jax.fast import model_for
    from mnist_jax.steps import confusion_matrix

    config, _, params = _load(args)
    images, labels = data.load("test", args.data_dir, dataset=config.dataset)
    names = data.DATASETS[config.dataset].class_names
    memory.check_evaluation(config.test_batch_size, len(labels), "the run's test_batch_size")
    probs = classify(params, images, model_for(config), batch_size=config.test_batch_size)
    confusion = np.asarray(confusion_matrix(labels, probs.argmax(1), probs.shape[1]))
    out_dir = args.out_dir or _output(args, ".")
    rundir.check_writable(out_dir)
    plotting.save_figure(plotting.plot_confusion_matrix(confusion, names), out_dir / "confusion.svg")
    plotting.save_figure(plotting.plot_confident_mistakes(images, labels, probs, size=(args.rows, args.cols),
                                                          class_names=names), out_dir / "mistakes.svg")
    accuracy = class_accuracy(confusion)
    print("per-class test accuracy: " + "  ".join(f"{names[c]}: {a:.4f}" for c, a in enumerate(accuracy)))
    _say(f"{int(confusion.sum() - np.trace(confusion))} errors in {len(labels)}. "
         f"Wrote {out_dir / 'confusion.svg'} and {out_dir / 'mistakes.svg'}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Save a trained classifier: a jax.export artifact that runs with JAX alone, an ONNX model, or
    a static web page that runs it in the browser."""
    _configure(args)
    from mnist_jax.apps import export as exporting
    from mnist_jax.files import check_new_output, write_atomic
    from mnist_jax.fast import model_for
    from mnist_jax.run.rundir import BUNDLED_RUN

    if args.format == "web":
        return _export_web(args)
    if args.ort_dir is not None:
        raise UserError("--ort-dir is for --format web: the page's copy of onnxruntime-web")
    # An output never replaces the run it is made from (its params, its history), nor a folder,
    # link or device; the format follows an .onnx name unless --format says otherwise.
    check_new_output(args.out, apart_from=args.run_dir or BUNDLED_RUN)
    args.format = args.format or ("onnx" if args.out.suffix == ".onnx" else "jax")
    output = args.output or "probabilities"
    config, history, params = _load(args)
    if args.format == "onnx":
        content = exporting.export_onnx(params, config, output)
        how = "onnxruntime.InferenceSession(path).run(None, {'images': images})"
    else:
        content = exporting.export_classifier(params, model_for(config), output)
        how = "jax.export.deserialize(open(path, 'rb').read()).call(images) (pip install jax flatbuffers)"
    try:
        write_atomic(args.out, content)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write ({e.strerror or e})") from None
    _say(f"Wrote {args.out} ({len(content) / 1e3:.0f} kB): uint8 images (N, 28, 28, 1) to (N, 10) float32 "
         f"{output}, the {_params_phrase(history)}; load it with {how}")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    """`export --format web`: the site, written whole into --out."""
    from mnist_jax.apps import export as exporting
    from mnist_jax.apps import drawing, web
    from mnist_jax.run import rundir
    from mnist_jax.data.datasets import DATASETS

    if args.output not in (None, "probabilities"):
        raise UserError("--format web shows probabilities on its page; leave out --output")
    run_dir = args.run_dir or rundir.BUNDLED_RUN
    web.check_site_dir(args.out, apart_from=run_dir)
    ort_files = web.read_ort_dir(args.ort_dir) if args.ort_dir is not None else None
    record, params = rundir.load_record_and_params(run_dir)
    config, history = record.config, record.history
    manifest = {"run": "the bundled run (the notebook's 30 epochs)" if args.run_dir is None else Path(run_dir).name,
                "dataset": config.dataset, "class_names": list(DATASETS[config.dataset].class_names),
                "test_accuracy": history["test_accuracy"][-1] if history["test_accuracy"] else None,
                "unsure_below": record.unsure_below, "pad": drawing.PAD_SIZE, "brush": drawing.BRUSH_SIZE}
    files = web.site_files(exporting.export_page_onnx(params, config), manifest, ort_files)
    try:
        web.write_site(args.out, files)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write ({e.strerror or e})") from None
    ort = (f"onnxruntime-web {web.ORT_VERSION} in {web.ORT_FOLDER}/" if ort_files is not None
           else f"onnxruntime-web {web.ORT_VERSION} from {web.ORT_CDN}, checked by its SHA-384")
    _say(f"Wrote the site {args.out} ({sum(map(len, files.values())) / 1e6:.1f} MB: the page, "
         f"{web.MODEL_FILE} ({len(files[web.MODEL_FILE]) / 1e3:.0f} kB) with the {_params_phrase(history)}, {ort}); "
         f"serve it, e.g. python -m http.server -d {shlex.quote(str(args.out))} 8000, and open "
         f"http://127.0.0.1:8000 (a browser will not load its model from a file:// page)")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Serve a drawing pad in the browser: draw a digit and watch the model read it (needs the demo extra)."""
    import ipaddress
    import socket

    from mnist_jax.apps import demo as pad

    pad.check_port(args.host, args.port)  # before Gradio: a taken port is the commonest reason the demo cannot start
    try:
        import gradio  # noqa: F401  (only to say at once that it is missing)
    except ImportError:
        raise UserError("the demo needs Gradio, which the core install leaves out: "
                        "pip install 'mnist-jax[demo]' (from a clone: pip install -e '.[demo]')") from None
    _configure(args)
    from mnist_jax.data.datasets import DATASETS
    from mnist_jax.fast import model_for

    record, params = _load_record(args)
    config = record.config
    source = f"the run in {args.run_dir}" if args.run_dir else "bundled with the package (the notebook's 30 epochs)"

    def started(url: str) -> None:
        print(f"The drawing pad is at {url} (Ctrl-C stops it)", flush=True)
        if not ipaddress.ip_address(socket.getaddrinfo(args.host, args.port)[0][4][0]).is_loopback:
            print(f"warning: serving on {args.host}, so other machines that can reach this one can use the pad too",
                  file=sys.stderr, flush=True)

    pad.serve(params, model_for(config), source, args.host, args.port, on_start=started,
              class_names=DATASETS[config.dataset].class_names, unsure_below=record.unsure_below)
    print("stopped")
    return 0


# The parser and the exits ---------------------------------------------------------------------

def _common_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="JAX's persistent compilation cache, so later runs skip compiling "
                        "(default: $JAX_COMPILATION_CACHE_DIR, else ~/.cache/mnist-jax/jax-compile)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile from scratch, cache nothing")
    return p


def _data_flag() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_fields(p, cfg.RunOptions, ["data_dir"])
    p.set_defaults(data_dir=None)
    return p


def _run_flags(positional: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    names, kwargs = (["run_dir"], {"nargs": "?"}) if positional else (["--run"], {"dest": "run_dir", "metavar": "RUN_DIR"})
    p.add_argument(*names, type=_path, default=None, **kwargs,
                   help="a run directory written by mnist-jax train; one seed's (RUN_DIR/seed-S) for a run of several "
                        "seeds (default: the weights bundled in the package, the notebook's 30 epochs)")
    return p


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from mnist_jax.recipes import RECIPES

    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="named settings with the results they reached (mnist_jax/recipes.py); the flags below "
                        "change what they name (default: notebook)")
    add_fields(p, cfg.TrainConfig)
    add_fields(p, cfg.RunOptions)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", type=_path, default=None,
                       help="where to write this run (default: runs/<date>-<time> under the current directory)")
    where.add_argument("--resume", metavar="RUN_DIR", type=_path, default=None,
                       help="continue the run in RUN_DIR from its last checkpoint (with --epochs: up to that many)")
    p.add_argument("--hook", action="append", default=[], metavar="MODULE:NAME[:KEY=VALUE,...]",
                   help="also call a hook, NAME(KEY='VALUE', ...) from MODULE (a mnist_jax.hooks.Hook subclass; the "
                        "current directory is searched first), e.g. mnist_jax.hooks.logs:CsvLog:path=metrics.csv; "
                        "repeatable")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first and run the same command on every "
                        "host; SLURM, Open MPI, Kubernetes and Cloud TPU fill in the three flags below")
    p.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="with --distributed: the address of process 0 (default: $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=number("num_processes", minimum=1), default=None,
                   help="with --distributed: how many processes")
    p.add_argument("--process-id", type=number("process_id", minimum=0), default=None,
                   help="with --distributed: this process's index, from 0")


def _check_train_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.resume and getattr(args, "overwrite", False):
        p.error("--resume and --overwrite contradict each other")
    if args.resume and args.recipe is not None:
        p.error("--recipe starts a run; a resumed run keeps its own settings")
    if not args.distributed and any(getattr(args, k) is not None for k in DISTRIBUTED_FLAGS):
        p.error("--coordinator, --num-processes and --process-id need --distributed")


def _grid_flags(p: argparse.ArgumentParser, rows: int, cols: int, what: str) -> None:
    grid = number("rows", minimum=1, maximum=MAX_GRID), number("cols", minimum=1, maximum=MAX_GRID)
    p.add_argument("--rows", type=grid[0], default=rows, help=f"rows of {what}, at most 16 (default: %(default)s)")
    p.add_argument("--cols", type=grid[1], default=cols, help=f"columns of {what}, at most 16 (default: %(default)s)")


def parser(prog: str = "mnist-jax") -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `mnist-jax` parser, and each subcommand's own."""
    top = Parser(prog=prog, description="The PyTorch MNIST notebook in JAX: train its CNN, evaluate it, use it.")
    top.add_argument("--version", action="version", version=f"mnist-jax {mnist_jax.__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    common, data_dir = _common_flags(), _data_flag()
    parsers = {}

    def command(name: str, func: Callable, parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        summary = func.__doc__.splitlines()[0]
        parsers[name] = p = sub.add_parser(name, parents=list(parents), help=summary, description=summary)
        p.set_defaults(func=func)
        return p

    _add_train_flags(command("train", train, [common]))
    p = command("evaluate", evaluate, [_run_flags(True), common, data_dir])
    p.add_argument("--batch-size", type=number("batch_size", minimum=1), default=None,
                   help="evaluation batch (default: the run's)")
    p = command("predict", predict, [_run_flags(False), common])
    p.add_argument("images", nargs="+", type=_path, metavar="IMAGE",
                   help="image files (PNG, JPEG, ...), or folders of them (every file in each, sorted by name)")
    p.add_argument("--top", type=number("top", minimum=1), default=3, help="classes shown per image (default: %(default)s)")
    p.add_argument("--save-inputs", type=_path, default=None, metavar="DIR",
                   help="also write the 28x28 image the model saw for each input, as DIR/NAME-28x28.png")
    p = command("explain", explain, [_run_flags(False), common])
    p.add_argument("images", nargs="+", type=_path, metavar="IMAGE",
                   help="image files (PNG, JPEG, ...), or folders of them (every file in each, sorted by name)")
    p.add_argument("--top", type=number("top", minimum=1, maximum=10), default=2,
                   help="classes explained per image, most probable first (default: %(default)s)")
    p.add_argument("--steps", type=number("steps", minimum=1, maximum=1024), default=64,
                   help="points on the path from the blank digit (default: %(default)s, within 1%% of the "
                        "logit gain on test digits)")
    p.add_argument("--out-dir", type=_path, default=Path("explanations"), metavar="DIR",
                   help="where each NAME-explained.svg goes (default: %(default)s)")
    p = command("plot-history", plot_history, [_run_flags(True), common])
    p.add_argument("--out", type=_path, default=None,
                   help="output file, .svg or .png (default: RUN_DIR/training.svg; ./training.svg for the bundled run)")
    p = command("plot-classification", plot_classification, [_run_flags(True), common, data_dir])
    p.add_argument("--out", type=_path, default=None, help="output file, .svg or .png (default: RUN_DIR/"
                                                           "classification.svg; ./classification.svg for the bundled run)")
    p.add_argument("--seed", type=number("seed", minimum=0, maximum=cfg.MAX_SEED), default=None,
                   help="which digits to show (default: the run's seed)")
    _grid_flags(p, 2, 3, "digits")
    p = command("plot-errors", plot_errors, [_run_flags(True), common, data_dir])
    p.add_argument("--out-dir", type=_path, default=None,
                   help="where to write confusion.svg and mistakes.svg (default: RUN_DIR; . for the bundled run)")
    _grid_flags(p, 3, 6, "mistakes")
    p = command("export", export, [_run_flags(True), common])
    p.add_argument("--out", type=_path, required=True, metavar="PATH",
                   help="the file to write; for --format web, the site's folder (new, empty, or an earlier site)")
    p.add_argument("--output", choices=("probabilities", "logits"), default=None,
                   help="what the exported function returns (default: probabilities)")
    p.add_argument("--format", choices=("jax", "onnx", "web"), default=None,
                   help="jax: a jax.export artifact (StableHLO); onnx: an ONNX model, with the onnx extra; web: a "
                        "static page running the model in the browser (default: onnx for a FILE named .onnx, else jax)")
    p.add_argument("--ort-dir", type=_path, default=None, metavar="DIR",
                   help="for --format web: onnxruntime-web's files to copy into the site, so that it needs no "
                        "network (node_modules/onnxruntime-web/dist after npm install; default: the page loads "
                        "them from a public URL)")
    p = command("demo", demo, [_run_flags(False), common])
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: %(default)s, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=number("port", minimum=1, maximum=65535), default=7860, help="port (default: %(default)s)")
    return top, parsers


def execute(argv: Sequence[str], prog: str = "mnist-jax", command: str | None = None, *,
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
        _say(f"{args.prog}: error: {e}", file=sys.stderr)
        if leave_after_checkpoint_error and isinstance(e, CheckpointError):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_USER_ERROR)
        return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None, prog: str = "mnist-jax", command: str | None = None) -> int:
    """The `mnist-jax` console script, and `python scripts/NAME.py` (which fixes `command` and names
    itself in its errors)."""
    try:
        code = execute(sys.argv[1:] if argv is None else argv, prog, command, leave_after_checkpoint_error=True)
        sys.stdout.flush()  # here, where a failure can still be reported, not at the interpreter's exit
        return code
    except KeyboardInterrupt:  # Ctrl-C outside training (which handles its own), e.g. while importing
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        _drop_stdout()
        return 128 + signal.SIGPIPE
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
            raise
        _drop_stdout()
        print(f"{prog}: error: cannot write the output ({e.strerror})", file=sys.stderr)
        return EXIT_USER_ERROR


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def script_main(command: str) -> int:
    """`python scripts/NAME.py ...`: the command `command`, its errors named after the script."""
    return main(prog=Path(sys.argv[0]).name, command=command)

"""The commands that use a trained model: predict, explain, export and demo."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mnist_jax.cli.common import EXIT_USER_ERROR, configure, load, load_record, model_and_names, params_phrase, run_dir, say
from mnist_jax.cli.flags import common_flags, number, path, run_flags
from mnist_jax.errors import UserError

IMAGES_HELP = "image files (PNG, JPEG, ...), or folders of them (every file in each, sorted by name)"


def _read_digits(args: argparse.Namespace):
    """`images.read_digits` of the images named, its notes and errors said on stderr."""
    from mnist_jax.apps import images

    read = images.read_digits(args.images)
    for line in [*(f"note: {note}" for note in read.notes), *(f"error: {error}" for error in read.errors)]:
        say(f"{args.prog}: {line}", file=sys.stderr)
    return read.inputs, read.paths, read.digits


def predict(args: argparse.Namespace) -> int:
    """Classify your own digit images with a trained run: the top classes and their probabilities."""
    configure(args)
    import numpy as np

    from mnist_jax.apps import images, inference
    from mnist_jax.run import rundir

    record, params = load_record(args)
    if args.save_inputs:
        rundir.check_writable(args.save_inputs)
    inputs, paths, digits = _read_digits(args)
    if digits:
        model, names = model_and_names(record.config)
        for path, probs in zip(paths, inference.classify(params, np.stack(digits), model)):
            say(f"{path}: {inference.prediction_line(probs, names, min(args.top, 10), record.unsure_below)}")
    if args.save_inputs and digits:
        for digit, out in zip(digits, images.input_files(paths, args.save_inputs)):
            images.save_digit(digit, out)
        say(f"Wrote the 28x28 images the model saw to {args.save_inputs}/ (NAME-28x28.png)")
    return 0 if len(paths) == len(inputs) else EXIT_USER_ERROR


def explain(args: argparse.Namespace) -> int:
    """Show why the model read each picture as it did: where the evidence for its top classes lies."""
    configure(args)
    import numpy as np

    from mnist_jax.apps import explain as explaining, images, inference, plotting
    from mnist_jax.run import rundir

    config, _, params = load(args)
    model, names = model_and_names(config)
    rundir.check_writable(args.out_dir)
    inputs, paths, digits = _read_digits(args)
    if digits:
        found = explaining.explain(params, np.stack(digits), model, top=args.top, steps=args.steps)
        outs = images.input_files(paths, args.out_dir, suffix="-explained.svg")
        for i, (path, out) in enumerate(zip(paths, outs)):
            classes, probabilities = found.classes[i], found.probabilities[i]
            figure = plotting.plot_explanation(digits[i], classes, probabilities, found.attributions[i], names)
            plotting.save_figure(figure, out)
            say(f"{path}: {inference.ranked(zip(classes, probabilities), names)}  -> {out}")
    return 0 if len(paths) == len(inputs) else EXIT_USER_ERROR


def export(args: argparse.Namespace) -> int:
    """Save a trained classifier: a jax.export artifact that runs with JAX alone, an ONNX model, or
    a static web page that runs it in the browser."""
    configure(args)
    from mnist_jax.apps import export as exporting
    from mnist_jax.files import check_new_output, write_atomic

    if args.format == "web":
        return _export_web(args)
    if args.ort_dir is not None:
        raise UserError("--ort-dir is for --format web: the page's copy of onnxruntime-web")
    # An output never replaces the run it is made from (its params, its history), nor a folder, link or device.
    check_new_output(args.out, apart_from=run_dir(args))
    output = args.output or "probabilities"
    config, history, params = load(args)
    content, how = exporting.export_file(params, config, exporting.format_for(args.out, args.format), output)
    try:
        write_atomic(args.out, content)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write ({e.strerror or e})") from None
    say(f"Wrote {args.out} ({len(content) / 1e3:.0f} kB): uint8 images (N, 28, 28, 1) to (N, 10) float32 "
        f"{output}, the {params_phrase(history)}; load it with {how}")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    """`export --format web`: the site, written whole into --out."""
    from mnist_jax.apps import export as exporting, web

    if args.output not in (None, "probabilities"):
        raise UserError("--format web shows probabilities on its page; leave out --output")
    web.check_site_dir(args.out, apart_from=run_dir(args))
    ort_files = web.read_ort_dir(args.ort_dir) if args.ort_dir is not None else None
    record, params = load_record(args)
    name = "the bundled run (the notebook's 30 epochs)" if args.run_dir is None else Path(args.run_dir).name
    manifest = web.manifest(record.config, record.history, record.unsure_below, name)
    files = web.site_files(exporting.export_page_onnx(params, record.config), manifest, ort_files)
    try:
        web.write_site(args.out, files)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write ({e.strerror or e})") from None
    ort = (f"onnxruntime-web {web.ORT_VERSION} in {web.ORT_FOLDER}/" if ort_files is not None
           else f"onnxruntime-web {web.ORT_VERSION} from {web.ORT_CDN}, checked by its SHA-384")
    say(f"Wrote the site {args.out} ({sum(map(len, files.values())) / 1e6:.1f} MB: the page, {web.MODEL_FILE} "
        f"({len(files[web.MODEL_FILE]) / 1e3:.0f} kB) with the {params_phrase(record.history)}, {ort}); "
        f"serve it, e.g. python -m http.server -d {shlex.quote(str(args.out))} 8000, and open "
        f"http://127.0.0.1:8000 (a browser will not load its model from a file:// page)")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Serve a drawing pad in the browser: draw a digit and watch the model read it (needs the demo extra)."""
    from mnist_jax.apps import demo as pad

    pad.check_port(args.host, args.port)  # before Gradio: a taken port is the commonest reason the demo cannot start
    try:
        import gradio  # noqa: F401  (only to say at once that it is missing)
    except ImportError:
        raise UserError("the demo needs Gradio, which the core install leaves out: "
                        "pip install 'mnist-jax[demo]' (from a clone: pip install -e '.[demo]')") from None
    configure(args)
    record, params = load_record(args)
    model, names = model_and_names(record.config)
    source = f"the run in {args.run_dir}" if args.run_dir else "bundled with the package (the notebook's 30 epochs)"
    pad.serve(params, model, source, args.host, args.port, on_start=pad.announce(args.host, args.port),
              class_names=names, unsure_below=record.unsure_below)
    print("stopped")
    return 0


def add_predict(command) -> None:
    p = command("predict", predict, [run_flags(False), common_flags()])
    p.add_argument("images", nargs="+", type=path, metavar="IMAGE", help=IMAGES_HELP)
    p.add_argument("--top", type=number("top", minimum=1), default=3, help="classes shown per image (default: %(default)s)")
    p.add_argument("--save-inputs", type=path, default=None, metavar="DIR",
                   help="also write the 28x28 image the model saw for each input, as DIR/NAME-28x28.png")


def add_explain(command) -> None:
    p = command("explain", explain, [run_flags(False), common_flags()])
    p.add_argument("images", nargs="+", type=path, metavar="IMAGE", help=IMAGES_HELP)
    p.add_argument("--top", type=number("top", minimum=1, maximum=10), default=2,
                   help="classes explained per image, most probable first (default: %(default)s)")
    p.add_argument("--steps", type=number("steps", minimum=1, maximum=1024), default=64, help="points on the path "
                   "from the blank digit (default: %(default)s, within 1%% of the logit gain on test digits)")
    p.add_argument("--out-dir", type=path, default=Path("explanations"), metavar="DIR",
                   help="where each NAME-explained.svg goes (default: %(default)s)")


def add_export(command) -> None:
    p = command("export", export, [run_flags(True), common_flags()])
    p.add_argument("--out", type=path, required=True, metavar="PATH",
                   help="the file to write; for --format web, the site's folder (new, empty, or an earlier site)")
    p.add_argument("--output", choices=("probabilities", "logits"), default=None,
                   help="what the exported function returns (default: probabilities)")
    p.add_argument("--format", choices=("jax", "onnx", "web"), default=None,
                   help="jax: a jax.export artifact (StableHLO); onnx: an ONNX model, with the onnx extra; web: a "
                        "static page running the model in the browser (default: onnx for a FILE named .onnx, else jax)")
    p.add_argument("--ort-dir", type=path, default=None, metavar="DIR",
                   help="for --format web: onnxruntime-web's files to copy into the site, so that it needs no network "
                        "(node_modules/onnxruntime-web/dist after npm install; default: the page loads them from a public URL)")


def add_demo(command) -> None:
    p = command("demo", demo, [run_flags(False), common_flags()])
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: %(default)s, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=number("port", minimum=1, maximum=65535), default=7860, help="port (default: %(default)s)")

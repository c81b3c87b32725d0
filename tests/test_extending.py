"""Each change of docs/extending.md, made the way the page tells a user to, in a copy of the package:
a network, a metric, a dataset, an augmentation, an optimizer, a sweep over another setting, and a
hook with arguments. Then, through the command line, with the copy alone on the path: a run that
uses them all, a run written before the changes resumed, the bundled run evaluated, the new
network exported to ONNX and to the web page, a sweep of the new setting, and the settings the
chosen parts do not read refused."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import DRAWN_DIGITS, pad_drawing

PACKAGE = Path(__file__).resolve().parent.parent / "mnist_jax"
EARLIER_RUN = Path(__file__).parent / "fixtures" / "run-0.2"
SMALL = ["--batch-size", "256", "--lr", "3e-3", "--train-examples", "1024", "--test-examples", "1024"]  # the suite's small setting's sizes

# (file, text in the line an edit goes after, what it adds; or, with "replace", the text it
# replaces): each is what a section of docs/extending.md shows.
CHANGES = [
    # A network: its module, its entry, its name.
    ("networks.py", "# Each network: config -> its `Model` (mnist_jax.model), and the settings it reads.", '''
class MLP(nn.Module):
    """A two-layer perceptron on the flattened pixels."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        return nn.Dense(NUM_CLASSES)(x)

'''),
    ("networks.py", "NETWORKS: Mapping[str, Choice] = {", '    "mlp": Choice(lambda config: LinenModel(MLP())),\n'),
    ("config.py", 'Network = Literal["cnn", "cnn_bn"]', 'Network = Literal["cnn", "cnn_bn", "mlp"]', "replace"),
    # A metric, with its value in older runs and a label to print.
    ("metrics.py", "METRICS = (", '''    Metric("train_grad_norm", "train/grad_norm", "train",
           per_batch=lambda step: (optax.tree.norm(step.grads), jnp.ones((), jnp.float32)),
           older_runs=lambda config: None, printed="grad norm"),
'''),
    ("metrics.py", "import numpy as np", "import optax\n"),
    # A dataset: MNIST's own files under another name.
    ("data/datasets.py", "# Name -> declaration, in the order the command line lists them.",
     'MNIST_COPY = dataclasses.replace(MNIST, name="mnist_copy", title="MNIST (a copy)")\n\n'),
    ("data/datasets.py", "{d.name: d for d in (MNIST, FASHION_MNIST)}", "{d.name: d for d in (MNIST, FASHION_MNIST, MNIST_COPY)}",
     "replace"),
    ("config.py", 'DatasetName = Literal["mnist", "fashion_mnist"]', 'DatasetName = Literal["mnist", "fashion_mnist", "mnist_copy"]',
     "replace"),
    # An augmentation.
    ("augment.py", "# Each augmentation: config -> (key, images) -> images, or None for none.", '''
def random_contrast(key, images):
    """Each digit's ink scaled by its own factor in [0.6, 1]."""
    scale = jax.random.uniform(key, (images.shape[0], 1, 1, 1), minval=0.6, maxval=1.0)
    return (images.astype(jnp.float32) * scale).astype(jnp.uint8)

'''),
    ("augment.py", "AUGMENTATIONS: Mapping[str, Choice] = {", '    "contrast": Choice(lambda config: random_contrast),\n'),
    ("config.py", 'Augment = Literal["none", "shift"]', 'Augment = Literal["none", "shift", "contrast"]', "replace"),
    # An optimizer that reads a setting another one reads too.
    ("optimizer.py", "OPTIMIZERS: Mapping[str, Choice] = {", '''    "rmsprop": Choice(lambda config, rate, swept: optax.rmsprop(rate, momentum=config.momentum),
                      reads=("learning_rate", "momentum")),
'''),
    ("config.py", 'Optimizer = Literal["adam", "adamw", "sgd"]', 'Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]', "replace"),
    # A sweep over another setting: its name, and the optimizer reading it from `swept`.
    ("config.py", 'SWEEPABLE = ("learning_rate", "weight_decay", "warmup_epochs")',
     'SWEEPABLE = ("learning_rate", "weight_decay", "warmup_epochs", "momentum")', "replace"),
    ("optimizer.py", 'optax.sgd(rate, momentum=config.momentum or None)',
     'optax.sgd(rate, momentum=swept.get("momentum", config.momentum or None))', "replace"),
]

HOOK = '''
from mnist_jax.files import write_atomic
from mnist_jax.hooks import Hook


class AccuracyLog(Hook):
    """The test accuracy of every epoch so far, one per line, in `path`."""

    def __init__(self, path, digits="4"):
        self.path, self.digits = path, int(digits)

    def on_epoch(self, epoch, record, state, history):
        write_atomic(self.path, "".join(f"{a:.{self.digits}f}\\n" for a in history["test_accuracy"]).encode())
'''


def changed_copy(root: Path) -> Path:
    """The package copied under `root` with every change of CHANGES made; the folder to put on the path."""
    shutil.copytree(PACKAGE, root / "mnist_jax", ignore=shutil.ignore_patterns("__pycache__"))
    for file, anchor, text, *how in CHANGES:
        path = root / "mnist_jax" / file
        source = path.read_text()
        assert anchor in source, f"{file} no longer holds {anchor!r}: docs/extending.md needs the same change"
        if how:
            source = source.replace(anchor, text, 1)
        else:  # after the line that holds the anchor
            end = source.index("\n", source.index(anchor)) + 1
            source = source[:end] + text + source[end:]
        path.write_text(source)
    return root


# Runs commands as `mnist-jax ARGV` would, one after another in one process (one start, one set of
# imports): argv lists in a JSON file, (exit status, stdout, stderr) of each out.
DRIVER = """
import contextlib, io, json, sys
from mnist_jax import cli

results = []
for argv in json.load(open(sys.argv[1])):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.execute(argv)
        except SystemExit as e:
            code = e.code
    results.append([code, out.getvalue(), err.getvalue()])
json.dump(results, open(sys.argv[2], "w"))
"""


def mnist_jax(cwd: Path, path: Path, commands: dict[str, list]) -> dict[str, tuple[int, str, str]]:
    """Each of `commands` (name -> argv) as `mnist-jax ARGV`, in order, with only `path`'s package
    importable: name -> (exit status, stdout, stderr)."""
    (cwd / "commands.json").write_text(json.dumps([[str(a) for a in argv] for argv in commands.values()]))
    env = {**os.environ, "PYTHONPATH": str(path)}  # the suite's compilation cache and settings, shared
    done = subprocess.run([sys.executable, "-c", DRIVER, "commands.json", "results.json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return dict(zip(commands, map(tuple, json.loads((cwd / "results.json").read_text()))))


def succeeded(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir):
    """A run written with the package as it is; then, with every change made, the commands below."""
    root = tmp_path_factory.mktemp("extending")
    # A run written before the changes: the one 0.2.0 wrote and stopped after its first epoch of two.
    (root / "earlier").mkdir()
    shutil.copy(EARLIER_RUN / "history.json", root / "earlier")
    shutil.copytree(EARLIER_RUN / "checkpoints", root / "earlier" / "checkpoints")
    (root / "my_hooks.py").write_text(textwrap.dedent(HOOK))
    path = changed_copy(root / "changed")
    data = ["--data-dir", data_dir]
    commands = {
        "every part": ["train", "--network", "mlp", "--optimizer", "rmsprop", "--momentum", "0.5", "--augment",
                       "contrast", "--dataset", "mnist_copy", "--epochs", "1", *SMALL, "--run-dir", root / "mlp", *data,
                       "--hook", "my_hooks:AccuracyLog:path=accuracy.txt,digits=3",
                       "--hook", f"mnist_jax.hooks.logs:CsvLog:path={root / 'metrics.csv'}"],
        "onnx": ["export", root / "mlp", "--out", root / "mlp.onnx"],
        "web": ["export", root / "mlp", "--format", "web", "--out", root / "site"],
        "resume": ["train", "--resume", root / "earlier", *data, "--no-doubts"],
        "bundled": ["evaluate", *data],
        # On the new network, which compiles in a fraction of the CNN's time.
        "sweep": ["train", "--network", "mlp", "--optimizer", "sgd", "--sweep", "momentum=0.5,0.9", "--epochs", "1",
                  *SMALL, "--lr", "0.05", "--run-dir", root / "swept", *data, "--no-tensorboard", "--no-doubts"],
        **{f"refused {i}": ["train", *flags, "--run-dir", root / "refused", *data] for i, flags in enumerate(REFUSED)},
    }
    return root, mnist_jax(root, path, commands)


# Settings that none of the chosen parts reads, and what the command says.
REFUSED = [["--momentum", "0.5"], ["--sweep", "momentum=0.5,0.9"], ["--network", "mlp", "--conv", "xla"]]
SAID = ["--momentum 0.5 has no effect without --optimizer rmsprop or --optimizer sgd",
        "--sweep momentum has no effect without --optimizer rmsprop or --optimizer sgd",
        "--conv xla has no effect without --network cnn or --network cnn_bn"]


def test_a_run_with_every_new_part(workspace, mnist):
    root, results = workspace
    epochs = [line for line in succeeded(results["every part"]).splitlines() if line.startswith("[epoch")]
    assert len(epochs) == 1 and " | grad norm: " in epochs[0], epochs
    record = json.loads((root / "mlp" / "history.json").read_text())
    assert record["config"]["network"] == "mlp" and record["config"]["dataset"] == "mnist_copy"
    assert record["history"]["test_accuracy"][-1] > 0.6 and all(g > 0 for g in record["history"]["train_grad_norm"])
    assert record["not_a_digit"] and (root / "mlp" / "novelty.msgpack").is_file()  # its rule reads the MLP's features
    assert (root / "accuracy.txt").read_text() == "".join(f"{a:.3f}\n" for a in record["history"]["test_accuracy"])
    rows = list(csv.DictReader((root / "metrics.csv").open()))
    assert [float(row["train_grad_norm"]) for row in rows] == pytest.approx(record["history"]["train_grad_norm"])
    # The new network leaves the world as the CNN does: onnxruntime runs both exports.
    succeeded(results["onnx"]), succeeded(results["web"])
    onnxruntime = pytest.importorskip("onnxruntime")
    images, labels = mnist["test"][0][:256], mnist["test"][1][:256]
    session = onnxruntime.InferenceSession(str(root / "mlp.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"images": images})[0]
    assert probabilities.shape == (256, 10) and np.mean(probabilities.argmax(1) == labels) > 0.6
    page = onnxruntime.InferenceSession(str(root / "site" / "model.onnx"), providers=["CPUExecutionProvider"])
    for strokes in DRAWN_DIGITS.values():
        digit, probabilities, *_ = page.run(None, {"ink": np.asarray(pad_drawing(strokes))[..., 3].copy()})
        assert digit.shape == (28, 28) and np.isclose(probabilities.sum(), 1, atol=1e-5)


def test_the_runs_before_the_changes_resume_and_evaluate(workspace):
    root, results = workspace
    succeeded(results["resume"])
    record = json.loads((root / "earlier" / "history.json").read_text())
    assert record["finished"] and record["history"]["train_grad_norm"][0] is None  # unknown before the metric
    assert record["history"]["train_grad_norm"][1] > 0
    recorded = json.loads((PACKAGE / "weights" / "notebook" / "history.json").read_text())["history"]
    accuracy = float(re.search(r"accuracy: (\d\.\d{4})", succeeded(results["bundled"])).group(1))
    assert accuracy == pytest.approx(recorded["test_accuracy"][-1], abs=3e-4)  # one digit of 10,000 on another CPU


def test_a_sweep_of_the_new_setting_and_the_refusals(workspace):
    root, results = workspace
    assert "| momentum |" in succeeded(results["sweep"])
    assert (root / "swept" / "momentum=0.5" / "history.json").exists()
    for i, message in enumerate(SAID):
        code, _, err = results[f"refused {i}"]
        assert code == 2 and err == f"mnist-jax train: error: {message}\n", err
    assert not (root / "refused").exists()

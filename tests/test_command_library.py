"""The library functions the command line calls, each on its own: what the commands print and
choose comes from these (tests/test_cli.py runs them through the commands)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_jax.apps import export, images, inference, web
from mnist_jax.errors import UserError
from mnist_jax.hooks import Hook, console, spec
from mnist_jax.run import experiment, rundir

DIGIT = Path(__file__).parent / "fixtures" / "digits" / "0-pen-blur.jpg"


def test_a_hook_spec_is_module_name_and_string_keywords():
    assert spec.parse_hook_spec("a.b:Log") == ("a.b", "Log", {})
    assert spec.parse_hook_spec("a.b:Log:path=/tmp/x:y.csv,every=2") == ("a.b", "Log", {"path": "/tmp/x:y.csv", "every": "2"})
    for bad, said in [("a.b", "expected MODULE:NAME"), ("a:Log:path", "expected KEY=VALUE"),
                      ("a:Log:x=1,x=2", "x is given twice")]:
        with pytest.raises(UserError, match=said):
            spec.parse_hook_spec(bad)


def test_a_hook_spec_makes_the_hook_or_says_what_it_made(tmp_path):
    assert isinstance(spec.load_hook(f"mnist_jax.hooks.logs:CsvLog:path={tmp_path / 'm.csv'}"), Hook)
    with pytest.raises(UserError, match="made a PurePosixPath, not a mnist_jax.hooks.Hook"):
        spec.load_hook("pathlib:PurePosixPath")
    with pytest.raises(UserError, match="ModuleNotFoundError"):
        spec.load_hook("no_such_module_here:Hook")


def test_an_export_is_onnx_for_an_onnx_name_unless_a_format_is_given():
    assert export.format_for(Path("model.onnx"), None) == "onnx"
    assert export.format_for(Path("model.bin"), None) == "jax"
    assert export.format_for(Path("model.onnx"), "jax") == "jax"


def test_the_pages_manifest_names_the_run_its_classes_and_its_last_accuracy():
    config = SimpleNamespace(dataset="mnist")
    manifest = web.manifest(config, {"test_accuracy": [0.5, 0.99]}, 0.6, "run-1")
    assert manifest["run"] == "run-1" and manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["test_accuracy"] == 0.99 and manifest["unsure_below"] == 0.6
    assert web.manifest(config, {"test_accuracy": []}, None, "new")["test_accuracy"] is None


def test_the_console_lines_of_seeds_epochs_and_a_stop():
    assert console.seeds_summary([0.9, 0.92], "runs/x") == (
        "Final test accuracy over 2 seeds: 0.9100 +- 0.0141 (min 0.9000, max 0.9200); each seed's run is in runs/x/seed-S")
    assert [console.epochs_phrase(*e) for e in [(0, 0), (0, 29), (3, 3), (3, 5)]] == [
        "1 epoch", "30 epochs", "epoch 3", "epochs 3-5"]
    assert console.stopped_line(Path("my run"), -1, mid_epoch=True).endswith("--run-dir 'my run' --overwrite")
    assert console.stopped_line(Path("r"), 2, mid_epoch=True).startswith("Stopped mid-epoch; the checkpoint after epoch 2")
    assert console.stopped_line(Path("r"), 2, mid_epoch=False).endswith("Resume with: mnist-jax train --resume r")


def test_a_finished_runs_lines_say_what_it_trained_and_wrote():
    outcome = SimpleNamespace(history={"train_loss": [1.0, 0.5], "test_accuracy": [0.9, 0.97]}, first_epoch=0,
                              config=SimpleNamespace(sweep=None, stop_at_accuracy=0.95), workdir=Path("runs/x"),
                              seconds=1.25, copied_figures=((Path("f/training.svg"), True),), profile=None)
    assert experiment.finished_lines(outcome) == [
        "Test accuracy 0.9700 after epoch 1 reached --stop-at-accuracy 0.95: the run ends there",
        "Trained 2 epochs in 1.2 s. Wrote runs/x/{history.json, params.msgpack, training.svg, classification.svg}",
        "Copied the figures to f/training.svg (replacing the 1 there before)"]


def test_a_prediction_line_ranks_the_classes_and_says_its_doubt():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.05, 0.9, 0.05]])
    assert inference.prediction_line(probabilities[0], "abc", 2) == "b (0.7000)  c (0.2000)"
    verdicts = inference.Doubts(unsure_below=0.8).verdicts({}, np.zeros((2, 28, 28, 1), np.uint8), probabilities)
    assert verdicts == ["unsure", ""]
    assert inference.prediction_line(probabilities[0], "abc", 1, verdicts[0]) == "b (0.7000)  unsure"
    assert inference.Doubts().verdicts({}, np.zeros((2, 28, 28, 1), np.uint8), probabilities) == ["", ""]


def test_reading_digits_goes_on_past_an_unreadable_input(tmp_path):
    read = images.read_digits([DIGIT, tmp_path / "missing.png"])
    assert read.paths == [DIGIT] and [d.shape for d in read.digits] == [(28, 28, 1)]
    assert len(read.inputs) == 2 and len(read.errors) == 1 and "missing.png" in read.errors[0]


def test_a_figure_goes_into_its_run_or_here_for_the_bundled_one(tmp_path):
    assert rundir.figure_path(None, "training.svg") == Path("training.svg")
    assert rundir.figure_path(tmp_path, "training.svg") == tmp_path / "training.svg"

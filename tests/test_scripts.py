"""The scripts end to end, as a user runs them, on a small setting."""

import json
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\[epoch +\d+\] Train loss: \d+\.\d{4} / accuracy: [01]\.\d{4} \| "
                  r"Test loss: \d+\.\d{4} / accuracy: [01]\.\d{4}$")


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def assert_svg(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def svg_text(path: Path) -> str:
    return path.read_text()


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    result = run("train.py", "--epochs", 2, "--train-examples", 1500, "--batch-size", 256, "--lr", 1e-3,
                 "--data-dir", data_dir, "--run-dir", out / "run", "--figures-dir", out / "figures",
                 "--compile-cache", out / "cache")
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_prints_summary_then_the_notebooks_lines(finished_run):
    _, result = finished_run
    lines = result.stdout.splitlines()
    assert "Model Structure" in lines and "Total parameters: 34,826" in lines
    epochs = [line for line in lines if line.startswith("[epoch")]
    assert len(epochs) == 2 and all(LINE.match(line) for line in epochs), epochs
    assert lines.index("Model Structure") < lines.index(epochs[0])
    assert "Traceback" not in result.stderr
    assert "batch/s" not in result.stderr  # output is not a terminal: no progress bar


def test_train_fills_the_compilation_cache(finished_run):
    out, _ = finished_run
    assert any(p.name.startswith("jit_train_epoch") for p in (out / "cache").iterdir())


def test_progress_bar_on_request_leaves_the_lines_intact(data_dir, tmp_path):
    result = run("train.py", "--epochs", 1, "--train-examples", 1024, "--data-dir", data_dir, "--run-dir",
                 tmp_path / "run", "--no-refresh-figures", "--no-compile-cache", "--progress", "on")
    assert result.returncode == 0, result.stderr
    assert "epoch  0: 100%" in result.stderr and "2/2" in result.stderr
    assert LINE.match([line for line in result.stdout.splitlines() if line.startswith("[epoch")][0])


def test_train_writes_history_params_and_valid_figures(finished_run):
    out, result = finished_run
    run_dir = out / "run"
    record = json.loads((run_dir / "history.json").read_text())
    assert record["config"]["epochs"] == 2 and record["config"]["batch_size"] == 256
    assert record["system"]["backend"] == "cpu" and record["system"]["train_seconds"] > 0
    assert len(record["history"]["test_accuracy"]) == 2
    printed = [line for line in result.stdout.splitlines() if line.startswith("[epoch  1]")][0]
    assert f"accuracy: {record['history']['test_accuracy'][1]:.4f}" in printed
    assert (run_dir / "params.msgpack").stat().st_size > 34_826 * 4
    for name in ("training.svg", "classification.svg"):
        assert_svg(run_dir / name)
        assert (out / "figures" / name).read_bytes() == (run_dir / name).read_bytes()
    assert svg_text(run_dir / "classification.svg").count("label: ") == 6
    assert "Accuracy 0.98" in svg_text(run_dir / "training.svg")
    assert str(run_dir) in result.stdout


def test_plot_scripts_redraw_from_the_run_directory(finished_run, data_dir, tmp_path):
    out, _ = finished_run
    result = run("plot_history.py", out / "run", "--out", tmp_path / "history.svg")
    assert result.returncode == 0, result.stderr
    assert_svg(tmp_path / "history.svg")
    assert (tmp_path / "history.svg").read_bytes() == (out / "run" / "training.svg").read_bytes()
    result = run("plot_classification.py", out / "run", "--data-dir", data_dir, "--out", tmp_path / "cls.svg",
                 "--rows", 3, "--cols", 4)
    assert result.returncode == 0, result.stderr
    assert svg_text(tmp_path / "cls.svg").count("label: ") == 12


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert ": error: " in last
    return last


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_resume_continues_a_finished_run(finished_run, data_dir, tmp_path):
    out, _ = finished_run
    run_dir = tmp_path / "run"
    shutil.copytree(out / "run", run_dir)
    result = run("train.py", "--resume", run_dir, "--epochs", 3, "--data-dir", data_dir, "--no-refresh-figures",
                 "--compile-cache", out / "cache")  # the first run's programs: no compiling here
    assert result.returncode == 0, result.stderr
    assert f"Resuming {run_dir} after epoch 1" in result.stdout
    assert [line[:10] for line in result.stdout.splitlines() if line.startswith("[epoch")] == [
        "[epoch  0]", "[epoch  1]", "[epoch  2]"]
    record = json.loads((run_dir / "history.json").read_text())
    assert record["finished"] and len(record["history"]["train_loss"]) == 3
    assert record["config"]["batch_size"] == 256 and record["config"]["train_examples"] == 1500
    result = run("train.py", "--resume", run_dir, "--epochs", 3, "--data-dir", data_dir)
    assert "already trained 3 epochs" in one_line_error(result)


@pytest.mark.parametrize("flags,message", [(["--batch-size", "128"], "--batch-size 128 differs"),
                                           (["--seed", "5"], "--seed 5 differs")])
def test_resume_with_other_settings_is_refused(finished_run, data_dir, flags, message):
    out, _ = finished_run
    before = tree_bytes(out / "run")
    result = run("train.py", "--resume", out / "run", "--epochs", 5, *flags, "--data-dir", data_dir)
    assert message in one_line_error(result)
    assert tree_bytes(out / "run") == before


def test_resume_from_a_corrupted_checkpoint_is_refused_and_overwrites_nothing(finished_run, data_dir, tmp_path):
    out, _ = finished_run
    run_dir = tmp_path / "run"
    shutil.copytree(out / "run", run_dir)
    for path in (run_dir / "checkpoints" / "2").rglob("*"):
        if path.is_file() and path.stat().st_size > 64:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    before = tree_bytes(run_dir)
    result = run("train.py", "--resume", run_dir, "--epochs", 3, "--data-dir", data_dir, "--no-compile-cache")
    assert "cannot resume" in one_line_error(result)
    assert tree_bytes(run_dir) == before


def test_resume_of_a_directory_that_is_no_run(tmp_path):
    assert "cannot resume" in one_line_error(run("train.py", "--resume", tmp_path))


def test_sigterm_stops_at_the_epoch_end_and_resume_finishes(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--epochs", "50", "--train-examples", "1024",
           "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--no-refresh-figures", "--no-compile-cache"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("[epoch  0]"):
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and f"--resume {run_dir}" in stderr
    record = json.loads((run_dir / "history.json").read_text())
    done = len(record["history"]["train_loss"])
    assert not record["finished"] and 1 <= done < 50
    assert not (run_dir / "params.msgpack").exists()
    assert str(done) in [p.name for p in (run_dir / "checkpoints").iterdir()]
    # An unfinished run can be evaluated (latest checkpoint) and resumed.
    result = run("evaluate.py", run_dir, "--data-dir", data_dir)
    assert result.returncode == 0 and f"params after epoch {done - 1}" in result.stdout
    result = run("train.py", "--resume", run_dir, "--epochs", done + 1, "--data-dir", data_dir,
                 "--no-refresh-figures", "--no-compile-cache")
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "history.json").read_text())["finished"]


def test_diverging_run_stops_with_the_epoch_named(data_dir, tmp_path):
    result = run("train.py", "--epochs", 3, "--train-examples", 1024, "--lr", 1e30, "--data-dir", data_dir,
                 "--run-dir", tmp_path / "run", "--no-refresh-figures", "--no-compile-cache")
    last = one_line_error(result, code=3)
    assert "epoch 0" in last and "no checkpoint was written" in last
    assert not (tmp_path / "run" / "params.msgpack").exists()


def test_batch_larger_than_the_dataset(data_dir, tmp_path):
    result = run("train.py", "--train-examples", 100, "--batch-size", 512, "--data-dir", data_dir,
                 "--run-dir", tmp_path / "run", "--no-refresh-figures")
    assert "larger than the 100 training examples" in one_line_error(result)


def test_unwritable_run_directory_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    result = run("train.py", "--run-dir", tmp_path / "file" / "run")
    assert "cannot write" in one_line_error(result)
    assert "[epoch" not in result.stdout and "MNIST:" not in result.stdout


def test_bad_manual_dir_file_is_named(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(ROOT / "mnist_jax" / "mnist", manual)
    (manual / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    result = run("train.py", "--data-dir", tmp_path / "tfds", "--manual-dir", manual, "--run-dir", tmp_path / "run",
                 "--no-refresh-figures")
    assert "t10k-labels-idx1-ubyte.gz: corrupted gzip" in one_line_error(result)
    assert not (tmp_path / "tfds" / "mnist_idx" / "1.0.0").exists()


def test_evaluate_reports_the_runs_final_accuracy(finished_run, data_dir):
    out, _ = finished_run
    result = run("evaluate.py", out / "run", "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads((out / "run" / "history.json").read_text())["history"]["test_accuracy"][-1]
    assert f"accuracy: {accuracy:.4f} (10000 test examples, params after epoch 1)" in result.stdout


def test_predict_prints_top_three(finished_run, mnist, tmp_path):
    out, _ = finished_run
    from PIL import Image

    digit = mnist["test"][0][0][..., 0]
    Image.fromarray(255 - digit).resize((90, 90)).convert("RGB").save(tmp_path / "seven.png")
    result = run("predict.py", out / "run", tmp_path / "seven.png")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'seven.png'))}: (\d \(0\.\d{{4}}\)  ){{2}}\d \(0\.\d{{4}}\)",
                        line), line


@pytest.mark.parametrize("content", [None, b"", b"%PDF-1.4 not an image"])
def test_predict_bad_inputs(finished_run, tmp_path, content):
    out, _ = finished_run
    path = tmp_path / "input.png"
    if content is not None:
        path.write_bytes(content)
    assert str(path) in one_line_error(run("predict.py", out / "run", path))


def test_train_refuses_a_finished_run_directory(finished_run, data_dir):
    out, _ = finished_run
    before = (out / "run" / "history.json").read_bytes()
    result = run("train.py", "--epochs", 1, "--data-dir", data_dir, "--run-dir", out / "run", "--no-refresh-figures",
                 "--no-compile-cache")
    assert result.returncode == 2
    assert result.stderr.startswith("train.py: error: ") and result.stderr.count("\n") == 1
    assert "--overwrite" in result.stderr
    assert (out / "run" / "history.json").read_bytes() == before


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--epochs", "two"], ["--lr", "-1"], ["--batch-size", "0"],
                                   ["--lr", "nan"], ["--no-such-flag"], ["--seeds", "0"],
                                   ["--process-id", "1"], ["--distributed"]])
def test_bad_flags_are_one_line_errors(flags, tmp_path):
    result = run("train.py", *flags, "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("train.py: error:")
    assert not (tmp_path / "run").exists()


def test_missing_run_directory_is_a_one_line_error(tmp_path):
    result = run("plot_history.py", tmp_path / "nothing")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not found" in result.stderr


def test_help_explains_the_flags():
    result = run("train.py", "--help")
    assert result.returncode == 0
    for flag in ("--epochs", "--learning-rate", "--batch-size", "--test-batch-size", "--seed", "--data-dir",
                 "--manual-dir", "--run-dir", "--figures-dir"):
        assert flag in result.stdout


def test_benchmark_runs_train_cold_and_warm_and_writes_json(data_dir, tmp_path):
    result = run("benchmark.py", "--epochs", 2, "--train-examples", 1024, "--skip-torch", "--data-dir", data_dir,
                 "--seeds", 2, "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "bench.json").read_text())
    jax_row = record["mnist_jax"]
    assert len(jax_row["runs"]["cold"][0]["epoch_seconds"]) == 2
    assert 0 < jax_row["median_epoch_seconds"] < jax_row["train_seconds"] < jax_row["wall_seconds"]
    # The warm run found the compiled programs in the cache.
    assert jax_row["warm_cache_compile_seconds"] < jax_row["compile_seconds"]
    assert record["peak_host_bytes"] > 0 and "| mnist-jax |" in result.stdout
    seeds = record["seeds"]
    assert seeds["seeds"] == 2 and np.shape(seeds["final_test_accuracy"]) == (2,)
    assert seeds["final_test_accuracy_mean"] == pytest.approx(np.mean(seeds["final_test_accuracy"]))
    assert f"2 seeds at once, 2 epochs: training {seeds['train_seconds']:.2f} s" in result.stdout


def test_plot_errors_writes_confusion_and_mistakes(finished_run, data_dir, tmp_path):
    out, _ = finished_run
    result = run("plot_errors.py", out / "run", "--data-dir", data_dir, "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("per-class test accuracy: 0: ")
    for name, title in (("confusion.svg", "Confusion matrix:"), ("mistakes.svg", "Most confident mistakes")):
        assert_svg(tmp_path / name)
        assert title in svg_text(tmp_path / name)
    record = json.loads((out / "run" / "history.json").read_text())
    assert [len(a) for a in record["history"]["test_class_accuracy"]] == [10, 10]


SEEDS_LINE = re.compile(r"^\[epoch +\d+\] Train loss: \d\.\d{4} \+- \d\.\d{4} / accuracy: [01]\.\d{4} \+- \d\.\d{4} \| "
                        r"Test loss: \d\.\d{4} \+- \d\.\d{4} / accuracy: [01]\.\d{4} \+- \d\.\d{4}$")


@pytest.fixture(scope="module")
def seeds_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    result = run("train.py", "--seeds", 2, "--seed", 4, "--epochs", 2, "--train-examples", 1024, "--lr", 1e-3,
                 "--data-dir", data_dir, "--run-dir", out / "run", "--figures-dir", out / "figures",
                 "--compile-cache", out / "cache")
    assert result.returncode == 0, result.stderr
    return out, result


def test_seeds_print_mean_and_std_and_save_every_seeds_run(seeds_run):
    out, result = seeds_run
    lines = [line for line in result.stdout.splitlines() if line.startswith("[epoch")]
    assert len(lines) == 2 and all(SEEDS_LINE.match(line) for line in lines), lines
    top = json.loads((out / "run" / "history.json").read_text())
    assert top["finished"] and top["config"]["seeds"] == 2 and np.shape(top["history"]["test_accuracy"]) == (2, 2)
    for i, seed in enumerate((4, 5)):
        own = json.loads((out / "run" / f"seed-{seed}" / "history.json").read_text())
        assert own["finished"] and own["config"]["seed"] == seed and own["config"]["seeds"] == 1
        assert own["history"]["test_accuracy"] == [epoch[i] for epoch in top["history"]["test_accuracy"]]
        assert (out / "run" / f"seed-{seed}" / "params.msgpack").stat().st_size > 34_826 * 4
    final = np.array(top["history"]["test_accuracy"][-1])
    assert f"Final test accuracy over 2 seeds: {final.mean():.4f} +- {final.std(ddof=1):.4f}" in result.stdout
    # The band figure goes to its own name; the notebook's figures are left alone.
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["training_seeds.svg"]
    assert "2 seeds, mean and min-max" in svg_text(out / "figures" / "training_seeds.svg")


def test_a_seed_directory_is_a_run_the_other_scripts_read(seeds_run, data_dir):
    out, _ = seeds_run
    result = run("evaluate.py", out / "run", "--data-dir", data_dir)
    assert f"pass one seed's run, e.g. {out / 'run' / 'seed-4'}" in one_line_error(result)
    result = run("evaluate.py", out / "run" / "seed-5", "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads((out / "run" / "seed-5" / "history.json").read_text())["history"]["test_accuracy"][-1]
    assert f"accuracy: {accuracy:.4f} (10000 test examples" in result.stdout


def test_seeds_resume_and_refuse_another_seed_count(seeds_run, data_dir, tmp_path):
    out, _ = seeds_run
    run_dir = tmp_path / "run"
    shutil.copytree(out / "run", run_dir)
    result = run("train.py", "--resume", run_dir, "--epochs", 3, "--seeds", 3, "--data-dir", data_dir)
    assert "--seeds 3 differs from the resumed run's 2" in one_line_error(result)
    before = json.loads((run_dir / "history.json").read_text())["history"]
    result = run("train.py", "--resume", run_dir, "--epochs", 3, "--data-dir", data_dir, "--no-refresh-figures",
                 "--compile-cache", out / "cache")  # the first run's programs: no compiling here
    assert result.returncode == 0, result.stderr
    after = json.loads((run_dir / "history.json").read_text())["history"]
    assert after["test_accuracy"][:2] == before["test_accuracy"] and np.shape(after["test_accuracy"]) == (3, 2)
    seed_run = json.loads((run_dir / "seed-5" / "history.json").read_text())["history"]
    assert seed_run["test_accuracy"] == [epoch[1] for epoch in after["test_accuracy"]]

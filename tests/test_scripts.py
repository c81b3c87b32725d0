"""The scripts and the installed command as a user runs them, in real processes: the README's
commands, a signal from outside, and the optional tools' missing-dependency errors."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL_FLAGS

from mnist_jax import runs

ROOT = Path(__file__).resolve().parent.parent


def run(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kwargs)


def test_the_readme_train_command_as_a_script(data_dir, tmp_path):
    result = run(sys.executable, ROOT / "scripts" / "train.py", "--epochs", 1, *SMALL_FLAGS, "--data-dir", data_dir,
                 "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\[epoch  0\] Train loss: \d\.\d{4} / accuracy: ", result.stdout, re.M)
    assert "Trained 1 epoch in" in result.stdout and result.stderr == ""
    result = run(sys.executable, ROOT / "scripts" / "evaluate.py", tmp_path / "run", "--data-dir", data_dir)
    assert result.returncode == 0 and "params after epoch 0" in result.stdout and result.stderr == ""
    result = run(sys.executable, ROOT / "scripts" / "train.py", "--resume", tmp_path / "run", "--lr", "0.5")
    assert result.returncode == 2 and result.stderr.startswith("train.py: error: --learning-rate 0.5 differs")
    assert result.stderr.count("\n") == 1


def test_the_installed_command_lists_every_subcommand():
    result = run(Path(sys.executable).parent / "mnist-jax", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "predict", "plot-history", "plot-classification", "plot-errors",
                    "benchmark", "benchmark-data"):
        assert command in result.stdout


@pytest.mark.parametrize("script", ["make_torch_fixture.py"])
def test_torch_tools_without_torch_say_what_to_install(script):
    try:
        import torch  # noqa: F401
    except ImportError:
        result = run(sys.executable, ROOT / "scripts" / script)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr == f"{script}: error: needs torch; install it with: pip install -e \".[torch]\"\n"
    result = run(sys.executable, ROOT / "scripts" / script, "--help")
    assert result.returncode == 0 and "--out" in result.stdout


def test_sigterm_stops_at_the_epoch_end_and_resume_finishes(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    out = tmp_path / "out.txt"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "mnist_jax", "train", "--epochs", "50", *SMALL_FLAGS, "--data-dir", str(data_dir),
             "--run-dir", str(run_dir)], stdout=stdout, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while "[epoch  0]" not in out.read_text():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and f"--resume {run_dir}" in stderr
    record = runs.read_record(run_dir)
    done = len(record.history["train_loss"])
    assert not record.finished and 1 <= done < 50
    assert not (run_dir / "params.msgpack").exists()
    assert str(done) in [p.name for p in (run_dir / "checkpoints").iterdir()]
    result = run(sys.executable, "-m", "mnist_jax", "train", "--resume", run_dir, "--epochs", done + 1,
                 "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    assert runs.read_record(run_dir).finished and f"Trained epoch {done} in" in result.stdout


def test_benchmark_runs_train_cold_and_warm_and_writes_json(data_dir, tmp_path):
    result = run(sys.executable, ROOT / "scripts" / "benchmark.py", "--epochs", 2, "--train-examples", 1024,
                 "--skip-torch", "--data-dir", data_dir, "--seeds", 2, "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "bench.json").read_text())
    jax_row = record["mnist_jax"]
    assert len(jax_row["runs"]["cold"][0]["epoch_seconds"]) == 2
    assert 0 < jax_row["median_epoch_seconds"] < jax_row["train_seconds"] < jax_row["wall_seconds"]
    # The warm run found the compiled programs in the cache.
    assert jax_row["warm_cache_compile_seconds"] < jax_row["compile_seconds"]
    assert record["peak_host_bytes"] > 0 and "| mnist-jax |" in result.stdout
    seeds = record["seeds"]
    assert seeds["seeds"] == 2 and len(seeds["final_test_accuracy"]) == 2
    assert f"2 seeds at once, 2 epochs: training {seeds['train_seconds']:.2f} s" in result.stdout

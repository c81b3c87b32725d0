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

from mnist_jax import cli, runs

ROOT = Path(__file__).resolve().parent.parent


def run(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kwargs)


def test_a_script_names_itself_in_its_errors(tmp_path):
    result = run(sys.executable, ROOT / "scripts" / "evaluate.py", tmp_path / "nothing")
    assert result.returncode == 2 and result.stderr.startswith("evaluate.py: error: ")
    assert result.stderr.count("\n") == 1 and "history.json: not found" in result.stderr


def test_the_installed_command_lists_every_subcommand():
    result = run(Path(sys.executable).parent / "mnist-jax", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "predict", "plot-history", "plot-classification", "plot-errors",
                    "benchmark", "benchmark-data"):
        assert command in result.stdout


def test_the_torch_tool_without_torch_says_what_to_install():
    script = "make_torch_fixture.py"
    try:
        import torch  # noqa: F401
    except ImportError:
        result = run(sys.executable, ROOT / "scripts" / script)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr == f"{script}: error: needs torch; install it with: pip install -e \".[torch]\"\n"
    result = run(sys.executable, ROOT / "scripts" / script, "--help")
    assert result.returncode == 0 and "--out" in result.stdout


def test_the_readme_train_command_stops_at_sigterm_and_resume_finishes(data_dir, tmp_path, capsys):
    """`python scripts/train.py` as the README runs it, stopped by SIGTERM after its first epoch line."""
    run_dir = tmp_path / "run"
    out = tmp_path / "out.txt"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "train.py"), "--epochs", "50", *SMALL_FLAGS, "--data-dir",
             str(data_dir), "--run-dir", str(run_dir)], stdout=stdout, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while "[epoch  0]" not in out.read_text():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Total parameters: 34,826" in out.read_text()
    assert re.search(r"^\[epoch  0\] Train loss: \d\.\d{4} / accuracy: [01]\.\d{4} \| Test loss: ", out.read_text(), re.M)
    assert "Traceback" not in stderr and f"--resume {run_dir}" in stderr
    record = runs.read_record(run_dir)
    done = len(record.history["train_loss"])
    assert not record.finished and 1 <= done < 50
    assert not (run_dir / "params.msgpack").exists()
    assert str(done) in [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert cli.run(["train", "--resume", str(run_dir), "--epochs", str(done + 1), "--data-dir", str(data_dir)]) == 0
    assert runs.read_record(run_dir).finished and f"Trained epoch {done} in" in capsys.readouterr().out


def test_benchmark_runs_train_cold_and_warm_and_writes_json(data_dir, tmp_path):
    result = run(sys.executable, ROOT / "scripts" / "benchmark.py", "--epochs", 2, "--train-examples", 512,
                 "--test-examples", 512, "--skip-torch", "--data-dir", data_dir, "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "bench.json").read_text())
    jax_row = record["mnist_jax"]
    assert len(jax_row["runs"]["cold"][0]["epoch_seconds"]) == 2
    assert 0 < jax_row["median_epoch_seconds"] < jax_row["train_seconds"] < jax_row["wall_seconds"]
    # The warm run found the compiled programs in the cache.
    assert jax_row["warm_cache_compile_seconds"] < jax_row["compile_seconds"]
    assert record["peak_host_bytes"] > 0 and "| mnist-jax |" in result.stdout
    assert "seeds" not in record


def test_the_benchmark_summarizes_a_run_of_several_seeds(capsys):
    """`--seeds N` times one more `run_train` (the call tested above), then summarizes it so."""
    from mnist_jax import benchmark

    run = {"wall_seconds": 9.0, "train_seconds": 6.0, "median_epoch_seconds": 2.0, "compile_seconds": 1.0,
           "epoch_seconds": [3.0, 2.0, 2.0], "final_test_accuracy": [0.98, 0.97, 0.99],
           "peak_device_bytes": None, "device": "cpu"}
    row = benchmark.seeds_row(run, 3)
    assert row["final_test_accuracy_mean"] == pytest.approx(0.98) and row["final_test_accuracy_std"] == pytest.approx(0.01)
    one = {"median_epoch_seconds": 2.0, "compile_seconds": 1.0, "train_seconds": 6.0, "wall_seconds": 9.0,
           "warm_cache_wall_seconds": 8.0, "final_test_accuracy": 0.98, "device": "cpu", "peak_device_bytes": None}
    benchmark.print_table({"machine": {"cpu_count": 2, "processor": "x", "jax": "0", "jax_backend": "cpu"},
                           "mnist_jax": one, "peak_host_bytes": 2**30, "seeds": row}, epochs=3)
    assert "3 seeds at once, 3 epochs: training 6.00 s (median epoch 2.000 s), wall 9.00 s, final test accuracy " \
           "0.9800 +- 0.0100" in capsys.readouterr().out

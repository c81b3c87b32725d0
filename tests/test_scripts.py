"""The scripts and the installed command as a user runs them, in real processes: the README's
commands, a signal from outside, and the optional tools' missing-dependency errors."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL_FLAGS

from mnist_jax import cli, rundir

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
    for command in ("train", "evaluate", "predict", "demo", "plot-history", "plot-classification", "plot-errors"):
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


# The script given after it, run as `python SCRIPT ...` would, in a process that SIGKILLs itself as
# soon as the final params are written: the moment of a final save where a run could be lost for good.
KILLED_AFTER_WRITING_PARAMS = """
import os, runpy, signal, sys
from mnist_jax import rundir
write_atomic = rundir.write_atomic
def write_then_die(path, content):
    write_atomic(path, content)
    if path.name == "params.msgpack":
        os.kill(os.getpid(), signal.SIGKILL)
rundir.write_atomic = write_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_readme_train_command_killed_in_its_final_save_is_finished_by_resume(data_dir, small_fits, tmp_path,
                                                                                   capsys):
    """`python scripts/train.py` as the README runs it, SIGKILLed between its final params and the
    history that marks the run finished; `--resume` then finishes it, as if never killed."""
    run_dir = tmp_path / "run"
    killed = run(sys.executable, "-c", KILLED_AFTER_WRITING_PARAMS, ROOT / "scripts" / "train.py", "--epochs", 2,
                 *SMALL_FLAGS, "--data-dir", data_dir, "--run-dir", run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "Total parameters: 34,826" in killed.stdout and "Traceback" not in killed.stderr
    assert len(re.findall(r"^\[epoch  \d\] Train loss: \d\.\d{4} / accuracy: [01]\.\d{4} \| Test loss: ",
                          killed.stdout, re.M)) == 2
    record = rundir.read_record(run_dir)
    assert not record.finished and len(record.history["train_loss"]) == 2
    assert "2" in [p.name for p in (run_dir / "checkpoints").iterdir()]  # committed before the final files
    assert cli.execute(["train", "--resume", str(run_dir), "--data-dir", str(data_dir)]) == 0
    assert "Trained no epoch (all were done)" in capsys.readouterr().out
    config, history, params = rundir.load_run(run_dir)
    state, reference = small_fits[1]
    assert history["train_loss"] == reference["train_loss"] and history["test_accuracy"] == reference["test_accuracy"]
    for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(got, want)


# `mnist-jax` in a process whose disk is full from its first checkpoint on: files it writes may grow
# to 100 kB only (the checkpoint's array data is about 130 kB).
DISK_FULL_AT_THE_FIRST_CHECKPOINT = """
import resource, signal, sys
from mnist_jax import checkpoints, cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
save = checkpoints.Checkpointer.save
def save_on_a_full_disk(self, *args, **kwargs):
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    return save(self, *args, **kwargs)
checkpoints.Checkpointer.save = save_on_a_full_disk
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_full_disk_stops_training_with_one_line_and_nothing_claimed(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run(sys.executable, "-c", DISK_FULL_AT_THE_FIRST_CHECKPOINT, "train", "--epochs", 3, *SMALL_FLAGS,
                 "--data-dir", data_dir, "--run-dir", run_dir)
    assert result.returncode == 2
    assert result.stderr == (f"mnist-jax train: error: {run_dir}/checkpoints/1: cannot write the checkpoint (File too "
                             f"large); the earlier checkpoints are kept\n")
    assert not (run_dir / "history.json").exists()  # it would claim an epoch that no checkpoint holds
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()] == []


def test_the_training_benchmark_runs_train_cold_warm_and_with_seeds(data_dir, tmp_path):
    result = run(sys.executable, ROOT / "benchmarks" / "train_speed.py", "--epochs", 2, "--train-examples", 512,
                 "--test-examples", 512, "--skip-torch", "--seeds", 2, "--data-dir", data_dir,
                 "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "bench.json").read_text())
    jax_row = record["mnist_jax"]
    assert len(jax_row["runs"]["cold"][0]["epoch_seconds"]) == 2
    assert 0 < jax_row["median_epoch_seconds"] < jax_row["train_seconds"] < jax_row["wall_seconds"]
    # The warm run found the compiled programs in the cache.
    assert jax_row["warm_cache_compile_seconds"] < jax_row["compile_seconds"]
    assert record["peak_host_bytes"] > 0 and "| mnist-jax |" in result.stdout
    seeds = record["seeds"]
    final = seeds["final_test_accuracy"]  # one per seed, from the run's own history.json
    assert len(final) == 2 and final[0] != final[1]
    assert seeds["final_test_accuracy_mean"] == pytest.approx(np.mean(final))
    assert seeds["final_test_accuracy_std"] == pytest.approx(np.std(final, ddof=1))
    assert (f"2 seeds at once, 2 epochs: training {seeds['train_seconds']:.2f} s" in result.stdout
            and f"final test accuracy {np.mean(final):.4f} +- {np.std(final, ddof=1):.4f}" in result.stdout)

"""The scripts and the installed command as a user runs them, in real processes: the README's
commands, a signal from outside, and the optional tools' missing-dependency errors."""

import importlib.util
import json
import os
import re
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL_FLAGS, wait_for_output

from mnist_jax import cli
from mnist_jax.run import rundir

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
    if importlib.util.find_spec("torch") is None:  # not imported here: other tests check nothing imports it
        result = run(sys.executable, ROOT / "scripts" / script)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr == f"{script}: error: needs torch; install it with: pip install -e \".[torch]\"\n"
    result = run(sys.executable, ROOT / "scripts" / script, "--help")
    assert result.returncode == 0 and "--out" in result.stdout


# The script given after it, run as `python SCRIPT ...` would, in a process that SIGKILLs itself as
# soon as the final params are written: the moment of a final save where a run could be lost for good.
KILLED_AFTER_WRITING_PARAMS = """
import os, runpy, signal, sys
from mnist_jax.run import rundir
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
    history that marks the run finished; `--resume` then finishes it, as if never killed. (With
    --no-doubts: the kill comes before the rule's file either way, and fitting it is the same in
    every finish.)"""
    run_dir = tmp_path / "run"
    killed = run(sys.executable, "-c", KILLED_AFTER_WRITING_PARAMS, ROOT / "scripts" / "train.py", "--epochs", 2,
                 *SMALL_FLAGS, "--no-doubts", "--data-dir", data_dir, "--run-dir", run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "Total parameters: 34,826" in killed.stdout and "Traceback" not in killed.stderr
    assert len(re.findall(r"^\[epoch  \d\] Train loss: \d\.\d{4} / accuracy: [01]\.\d{4} \| Test loss: ",
                          killed.stdout, re.M)) == 2
    record = rundir.read_record(run_dir)
    assert not record.finished and len(record.history["train_loss"]) == 2
    assert "2" in [p.name for p in (run_dir / "checkpoints").iterdir()]  # committed before the final files
    assert cli.execute(["train", "--resume", str(run_dir), "--data-dir", str(data_dir), "--no-doubts"]) == 0
    assert "Trained no epoch (all were done)" in capsys.readouterr().out
    config, history, params = rundir.load_run(run_dir)
    state, reference = small_fits[1]
    assert history["train_loss"] == reference["train_loss"] and history["test_accuracy"] == reference["test_accuracy"]
    for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(got, want)


class Training:
    """`python scripts/train.py` in a process group of its own, as a shell with job control starts
    it, its output in files; `signal` reaches the whole group, as Ctrl-C in a terminal does."""

    def __init__(self, tmp_path: Path, *flags):
        self.out, self.err = tmp_path / "train.out", tmp_path / "train.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, ROOT / "scripts" / "train.py", *map(str, flags)],
                                            stdout=out, stderr=err, start_new_session=True)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        wait_for_output(self.process, self.out, self.err, text, timeout)

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=600)
        return code, self.out.read_text(), self.err.read_text()


def resumed_to_two_epochs(run_dir: Path, data_dir: Path, small_fits, capsys) -> None:
    """`--resume --epochs 2` in-process: the run ends as the uninterrupted 2-epoch reference, bit for bit."""
    assert cli.execute(["train", "--resume", str(run_dir), "--epochs", "2", "--data-dir", str(data_dir),
                        "--no-doubts"]) == 0
    capsys.readouterr()
    _, history, params = rundir.load_run(run_dir)
    state, reference = small_fits[1]
    assert all(history[k] == reference[k] for k in ("train_loss", "test_loss", "test_class_accuracy"))
    for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(got, want)


def test_ctrl_c_stops_training_after_the_epoch_and_the_run_resumes_bit_for_bit(data_dir, small_fits, tmp_path,
                                                                               capsys):
    """Ctrl-C in a terminal: SIGINT to the whole process group. (SIGTERM takes the same path; it is
    sent in test_parallel's two-host run.) While it trains, the run directory is its own."""
    signum = signal.SIGINT
    run_dir = tmp_path / "my run"  # the hint to resume quotes it for the shell
    # 10 epochs: more than it reaches (it stops by epoch 1), and few enough steps (40) that its
    # programs compile quickly, as those of the 2-epoch run it is resumed to (fast/compiling.py).
    training = Training(tmp_path, "--epochs", 10, *SMALL_FLAGS, "--no-doubts", "--data-dir", data_dir, "--run-dir",
                        run_dir)
    # The run's summary is printed once it holds its directory: the two refusals are checked while it
    # starts, so that the signal follows its first epoch line at once (its epochs take ~0.1 s each).
    training.wait_for("Total parameters")
    for flags in (["--run-dir", run_dir, "--overwrite"], ["--resume", run_dir]):
        assert cli.execute(["train", *map(str, flags), "--data-dir", str(data_dir)]) == 2
        assert f"is in use by another mnist-jax process (pid {training.process.pid})" in capsys.readouterr().err
    training.wait_for("[epoch  0]")
    training.signal(signum)
    code, stdout, stderr = training.finish()
    assert code == 128 + signum and "Traceback" not in stderr, stderr
    done = len(rundir.read_record(run_dir).history["train_loss"])
    assert f"{signal.Signals(signum).name}: stopping after this epoch" in stderr
    assert stderr.splitlines()[-1] == (f"Stopped after epoch {done - 1}; the checkpoint after epoch {done - 1} and "
                                       f"the history are in {run_dir}. Resume with: mnist-jax train --resume '{run_dir}'")
    assert done <= 2 and len(re.findall(r"^\[epoch", stdout, re.M)) == done
    resumed_to_two_epochs(run_dir, data_dir, small_fits, capsys)


# `mnist-jax` in a process whose disk is full from its first checkpoint on: files it writes may grow
# to 100 kB only (the checkpoint's array data is about 130 kB).
DISK_FULL_AT_THE_FIRST_CHECKPOINT = """
import resource, signal, sys
from mnist_jax.run import checkpoints
from mnist_jax import cli
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
    # The history written at the start claims no epoch: one would be an epoch that no checkpoint holds.
    assert json.loads((run_dir / "history.json").read_text())["history"]["train_loss"] == []
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()] == []


def test_the_training_benchmark_runs_train_cold_and_warm_and_writes_json(data_dir, tmp_path, monkeypatch, capsys):
    """`python benchmarks/train_speed.py ...`, its main run here (the trainings it times are child
    processes of their own either way)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["train_speed.py", "--epochs", "2", "--train-examples", "512", "--test-examples",
                                      "512", "--skip-torch", "--skip-step", "--data-dir", str(data_dir),
                                      "--json", str(tmp_path / "bench.json")])
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(ROOT / "benchmarks" / "train_speed.py"), run_name="__main__")
    assert ended.value.code == 0
    stdout = capsys.readouterr().out
    record = json.loads((tmp_path / "bench.json").read_text())
    jax_row = record["mnist_jax"]
    assert len(jax_row["runs"]["cold"][0]["epoch_seconds"]) == 2
    assert 0 < jax_row["median_epoch_seconds"] < jax_row["train_seconds"] < jax_row["wall_seconds"]
    # The warm run found the compiled programs in the cache.
    assert jax_row["warm_cache_compile_seconds"] < jax_row["compile_seconds"]
    assert record["peak_host_bytes"] > 0 and "| mnist-jax |" in stdout
    assert "seeds" not in record


@pytest.fixture(scope="module")
def two_digits(tmp_path_factory) -> list[Path]:
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for name, stroke in (("one.png", [(60, 20), (60, 100)]), ("seven.png", [(20, 20), (100, 20), (50, 100)])):
        image = Image.new("L", (120, 120), 255)
        ImageDraw.Draw(image).line(stroke, fill=0, width=12)
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def test_a_closed_pipe_ends_the_command_quietly_as_unix_tools_do(two_digits):
    """`mnist-jax predict *.png | head -0`: the reader is gone before the first line."""
    read, write = os.pipe()
    os.close(read)
    result = subprocess.run([sys.executable, "-m", "mnist_jax", "predict", *map(str, two_digits)], stdout=write,
                            stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write)
    assert result.returncode == 128 + signal.SIGPIPE and result.stderr == ""


def test_a_full_disk_under_stdout_is_one_line_and_exit_2(two_digits):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "mnist_jax", "predict", *map(str, two_digits)], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == "mnist-jax predict: error: the output: cannot write (No space left on device)\n"


@pytest.mark.parametrize("env,message", [
    ({"JAX_PLATFORMS": "gpu"}, "JAX_PLATFORMS=gpu: "),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=abc"}, "XLA_FLAGS: --xla_force_host_platform_device_count=abc"),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=0"}, "the device count must be a whole number of at least 1"),
    ({"XLA_FLAGS": "--xla_no_such_flag=1"}, "XLA_FLAGS: Unknown flag in XLA_FLAGS: --xla_no_such_flag=1"),
], ids=["no-such-backend", "device-count-abc", "device-count-0", "unknown-flag"])
def test_a_wrong_jax_environment_is_a_one_line_error(two_digits, env, message):
    result = subprocess.run([sys.executable, "-m", "mnist_jax", "predict", str(two_digits[0])], capture_output=True,
                            text=True, timeout=300, env={**os.environ, **env})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("mnist-jax predict: error: ") and message in result.stderr


def test_an_unwritable_compilation_cache_is_one_warning_and_the_command_works(two_digits, tmp_path):
    (tmp_path / "file").write_text("")
    result = run(sys.executable, "-m", "mnist_jax", "predict", two_digits[0], "--compile-cache", tmp_path / "file" / "c")
    assert result.returncode == 0 and result.stdout.startswith(f"{two_digits[0]}: 1 ")
    assert result.stderr == f"warning: the compilation cache {tmp_path / 'file' / 'c'} cannot be written; compiling " \
                            f"without it\n"

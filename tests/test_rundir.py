import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import SMALL, a_record

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError, UserError
from mnist_jax.fast.programs import initial_state
from mnist_jax.run import history as hist
from mnist_jax.run import rundir
from mnist_jax.run.checkpoints import Checkpointer

CONFIG = TrainConfig(epochs=1, **SMALL)


def finished_run(path, config=CONFIG):
    with rundir.RunDir.create(path, config) as run:
        state = initial_state(config)
        history = hist.append(hist.empty(), a_record(config.seeds))
        run.finish(history, state.params, {"backend": "cpu"},
                   {"training.svg": b"<svg/>", "classification.svg": b"<svg/>"})
    return run, state


def test_a_finished_run_loads_back(tmp_path):
    run, state = finished_run(tmp_path / "run")
    config, history, params = rundir.load_run(run.path)
    assert config == CONFIG and history["test_accuracy"] == [0.9]
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    assert not list(run.path.glob(".*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("leftover", ["history.json", "checkpoints/1/_CHECKPOINT_METADATA", "params.msgpack",
                                      "seed-3/params.msgpack"])
def test_a_directory_holding_any_part_of_a_run_is_refused(tmp_path, leftover):
    run_dir = tmp_path / "run"
    (run_dir / leftover).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / leftover).write_text("{}")
    with pytest.raises(rundir.RunError, match="already holds a run; --resume it, .* or pass --overwrite") as info:
        rundir.RunDir.create(run_dir, CONFIG)
    assert isinstance(info.value, UserError)
    rundir.RunDir.create(run_dir, CONFIG, overwrite=True).close()
    assert not rundir.holds_a_run(run_dir)


def test_what_a_failed_start_or_a_killed_write_leaves_does_not_block_the_directory(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)  # made by the checkpointer before the first epoch
    (run_dir / ".history.json.x1y2.tmp").write_text('{"half')  # an atomic write killed halfway
    (run_dir / ".lock").write_text("12345\n")  # a lock file whose process is gone
    rundir.RunDir.create(run_dir, CONFIG).close()
    assert not list(run_dir.glob(".*.tmp"))


def test_one_process_at_a_time_writes_a_run_directory(tmp_path):
    """Another process holds the run (a real one, killed at the end: the OS then drops its lock)."""
    run_dir = tmp_path / "run"
    finished_run(run_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mnist_jax import rundir; "
                               f"run = rundir.RunDir.resume({str(run_dir)!r}, {{}}); print('locked', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_use = f"{run_dir} is in use by another mnist-jax process \\(pid {holder.pid}\\); wait for it to end"
        with pytest.raises(rundir.RunError, match=in_use):
            rundir.RunDir.resume(run_dir, {"epochs": 2})
        with pytest.raises(rundir.RunError, match=in_use):
            rundir.RunDir.create(run_dir, CONFIG, overwrite=True)
        assert (run_dir / "params.msgpack").exists()  # the refused overwrite deleted nothing
    finally:
        holder.kill()
        holder.wait()
    rundir.RunDir.resume(run_dir, {"epochs": 2}).close()


def test_overwrite_leaves_nothing_of_the_earlier_run(tmp_path):
    run, _ = finished_run(tmp_path / "run", TrainConfig(epochs=1, seeds=2, **SMALL))
    assert (run.path / "seed-1" / "params.msgpack").exists()
    (run.path / "notes.txt").write_text("mine")
    rundir.RunDir.create(run.path, CONFIG, overwrite=True).close()
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "history.json", "notes.txt"]  # the user's stays
    assert rundir.read_record(run.path).history["train_loss"] == []  # the new run's, written at its start


def test_overwrite_removes_links_as_links_and_only_the_recorded_runs_folders(tmp_path):
    """Links in a run's own names reach another run, a shared log folder, a trace, a checkpoint:
    --overwrite removes each link, never what it points to; folders the recorded run (two seeds)
    never wrote stay, a seed-7 and a checkpoints/2024 of the user's among them."""
    other, _ = finished_run(tmp_path / "other")
    for made in ("checkpoints/3/_CHECKPOINT_METADATA", "logs/a/events.out.tfevents.1.host",
                 "trace/plugins/profile/t/host.xplane.pb"):
        (other.path / made).parent.mkdir(parents=True, exist_ok=True)
        (other.path / made).write_bytes(b"theirs")
    before = {p: p.read_bytes() for p in other.path.rglob("*") if p.is_file()}
    run, _ = finished_run(tmp_path / "run", TrainConfig(epochs=1, seeds=2, **SMALL))
    shutil.rmtree(run.path / "seed-0")
    links = {"seed-0": other.path, "tensorboard": other.path / "logs", "profile": other.path / "trace",
             "checkpoints/1": other.path / "checkpoints" / "3", "learning_rate=0.5": other.path}
    (run.path / "checkpoints").mkdir()
    for name, target in links.items():
        (run.path / name).symlink_to(target, target_is_directory=True)
    for mine in ("seed-7/params.msgpack", "checkpoints/2024/_CHECKPOINT_METADATA"):
        (run.path / mine).parent.mkdir()
        (run.path / mine).write_text("mine")
    rundir.RunDir.create(run.path, CONFIG, overwrite=True).close()
    assert {p: p.read_bytes() for p in other.path.rglob("*") if p.is_file()} == before
    assert sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file() or p.is_symlink()) == [
        ".lock", "checkpoints/2024/_CHECKPOINT_METADATA", "history.json", "learning_rate=0.5", "seed-7/params.msgpack"]
    assert (run.path / "learning_rate=0.5").is_symlink()  # no sweep was recorded: not this run's, kept


def test_overwrite_deletes_only_what_a_run_wrote(tmp_path):
    """A folder named like a run's, holding the user's files, is neither taken for a run nor emptied."""
    run_dir = tmp_path / "run"
    for mine in ("checkpoints/plan.txt", "seed-papers/a.pdf", "seed-3/notes.txt", "tensorboard/README",
                 "profile/mine.json"):
        (run_dir / mine).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / mine).write_text("mine")
    assert not rundir.holds_a_run(run_dir)
    run, _ = finished_run(run_dir, TrainConfig(epochs=1, seeds=2, **SMALL))  # writes seed-0, seed-1 beside them
    (run.path / "checkpoints" / "1").mkdir()  # an epoch's checkpoint, as Orbax names and commits it
    (run.path / "checkpoints" / "1" / "_CHECKPOINT_METADATA").write_text("{}")
    (run.path / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"")
    assert rundir.holds_a_run(run.path)
    rundir.RunDir.create(run.path, CONFIG, overwrite=True).close()
    left = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file())
    assert left == [".lock", "checkpoints/plan.txt", "history.json", "profile/mine.json", "seed-3/notes.txt",
                    "seed-papers/a.pdf", "tensorboard/README"]
    assert not (run.path / "seed-0").exists() and not (run.path / "checkpoints" / "1").exists()


def test_a_multi_seed_run_points_to_its_seed_runs(tmp_path):
    run, state = finished_run(tmp_path / "run", TrainConfig(epochs=1, seed=4, seeds=2, **SMALL))
    with pytest.raises(rundir.RunError, match=f"pass one seed's run, e.g. {run.path / 'seed-4'}"):
        rundir.load_run(run.path)
    config, history, params = rundir.load_run(run.path / "seed-5")
    assert config.seed == 5 and config.seeds == 1 and history["test_accuracy"] == [0.9]
    np.testing.assert_array_equal(params["conv1"]["kernel"], state.params["conv1"]["kernel"][1])


def test_an_unfinished_run_loads_its_latest_checkpoint(tmp_path):
    run = rundir.RunDir(tmp_path / "run", CONFIG)
    state = initial_state(CONFIG)
    history = hist.append(hist.empty(), a_record())
    checkpointer = Checkpointer(run.checkpoint_dir)
    checkpointer.save(1, state, history)
    checkpointer.close()
    run.write_history(history)
    config, loaded, params = rundir.load_run(run.path)
    assert not rundir.read_record(run.path).finished and loaded == history
    np.testing.assert_array_equal(params["linear"]["bias"], state.params["linear"]["bias"])


def test_resume_keeps_the_runs_settings(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    with rundir.RunDir.resume(run.path, {"epochs": 4, "precision": "highest"}) as resumed:
        assert resumed.config == TrainConfig(epochs=4, precision="highest", **SMALL)
    with pytest.raises(ConfigError, match="--learning-rate 0.1 differs"):
        rundir.RunDir.resume(run.path, {"learning_rate": 0.1})


def test_a_resume_that_cannot_be_names_what_to_do_instead(tmp_path):
    started = tmp_path / "started"
    (started / "checkpoints").mkdir(parents=True)  # killed in its first epoch
    with pytest.raises(rundir.RunError, match=f"{started}: no epoch of this run was completed, .* "
                                            f"start it again with --run-dir {started} --overwrite"):
        rundir.RunDir.resume(started, {})
    run, _ = finished_run(tmp_path / "run", TrainConfig(epochs=1, seeds=2, **SMALL))
    with pytest.raises(rundir.RunError, match=f"{run.path / 'seed-1'} is one seed's copy of the run {run.path}; "
                                            f"resume {run.path} instead"):
        rundir.RunDir.resume(run.path / "seed-1", {"epochs": 3})
    assert not (run.path / "seed-1" / "checkpoints").exists()
    record = json.loads((run.path / "history.json").read_text())
    record["config"].update(seeds=1, sweep="lr=1e-3,3e-3")
    (run.path / "history.json").write_text(json.dumps(record))
    (run.path / "learning_rate=0.003").mkdir()
    with pytest.raises(rundir.RunError, match=f"is one model's copy of the sweep {run.path}; resume {run.path}"):
        rundir.RunDir.resume(run.path / "learning_rate=0.003", {})


def test_a_run_directory_too_deep_for_the_files_inside_is_refused_up_front(tmp_path):
    deep = tmp_path
    while len(str(deep)) < 4096 - 100:  # room for the directory, not for Orbax's files inside it
        deep = deep / ("d" * 200)
    with pytest.raises(rundir.RunError, match="the path is too long for the files written inside it"):
        rundir.RunDir.create(deep, CONFIG)


def test_damaged_or_unchecked_params_are_refused(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    content = bytearray((run.path / "params.msgpack").read_bytes())
    content[len(content) // 2] ^= 0x01  # one bit of a weight
    (run.path / "params.msgpack").write_bytes(bytes(content))
    with pytest.raises(rundir.RunError, match=r"params.msgpack: damaged \(its SHA-256 does not match the one in history"):
        rundir.load_run(run.path)
    record = json.loads((run.path / "history.json").read_text())
    del record["params_sha256"]
    (run.path / "history.json").write_text(json.dumps(record))
    with pytest.raises(rundir.RunError, match="no SHA-256 of the params to check them against"):
        rundir.load_run(run.path)


@pytest.mark.parametrize("content,message", [(None, "not found"), ("{", "not a valid run history"),
                                             ('{"config": {"epochs": 2, "depth": 3}, "history": {}}',
                                              "not a valid run history")])
def test_a_bad_history_file_is_a_one_line_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "history.json").write_text(content)
    with pytest.raises(rundir.RunError, match=message) as info:
        rundir.read_record(tmp_path)
    assert "\n" not in str(info.value)


def test_params_of_another_shape_are_refused(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    with pytest.raises(rundir.RunError, match="not valid saved params"):
        rundir.load_params(run.path, dataclasses.replace(rundir.read_record(run.path).config, seeds=3))


def test_a_full_disk_during_the_final_save_is_a_one_line_error_and_the_run_stays_unfinished(tmp_path, monkeypatch):
    run, _ = finished_run(tmp_path / "run")
    record = rundir.read_record(run.path)
    run.write_history(record.history)  # back to unfinished, as during training

    def full_disk(path, content):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir, "write_atomic", full_disk)
    with pytest.raises(rundir.RunError, match=r"params.msgpack: cannot write \(No space left on device\)$"):
        run.finish(record.history, initial_state(CONFIG).params, {})
    assert not rundir.read_record(run.path).finished


def test_figures_are_copied_only_where_asked(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "classification.svg").write_text("an earlier figure")
    copied = rundir.copy_figures(run.path, figures, seeds=1)
    assert [(p.name, replaced) for p, replaced in copied] == [("training.svg", False), ("classification.svg", True)]
    assert [p.name for p, _ in rundir.copy_figures(run.path, figures, seeds=2)] == ["training_seeds.svg"]
    assert sorted(p.name for p in figures.iterdir()) == ["classification.svg", "training.svg", "training_seeds.svg"]
    assert (figures / "classification.svg").read_bytes() == (run.path / "classification.svg").read_bytes()


def test_import_mnist_jax_then_use_any_module():
    code = "import mnist_jax, sys; print('jax' in sys.modules); print(mnist_jax.run.rundir.load_run.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "load_run"]  # nothing heavy until a module is used


def test_a_full_disk_at_the_lock_is_one_line_and_leaves_no_lock_file(tmp_path, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir.os, "pwrite", full)
    with pytest.raises(rundir.RunError, match=r"run: cannot write here \(No space left on device\)$"):
        rundir.RunDir.create(tmp_path / "run", CONFIG)
    assert not (tmp_path / "run" / ".lock").exists()

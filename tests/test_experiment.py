"""A whole run in a run directory (mnist_jax.run.experiment), in-process, on the small setting."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import SMALL

from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.errors import ConfigError, UserError
from mnist_jax.fast.programs import initial_state
from mnist_jax.hooks import Hook
from mnist_jax.run import experiment, rundir
from mnist_jax.run.checkpoints import Checkpointer, CheckpointError
from mnist_jax.run.history import NOTEBOOK_KEYS, epoch_entry, format_epoch

CONFIG = TrainConfig(epochs=2, **SMALL)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def same_metrics(history: dict, reference: dict) -> bool:
    return all(history[k] == reference[k] for k in NOTEBOOK_KEYS)


@pytest.fixture(scope="module")
def options(data_dir):
    return RunOptions(data_dir=data_dir, doubts=False)  # the rule of doubt: tests/test_novelty.py


@pytest.fixture(scope="module")
def straight(small_fits):
    return small_fits[1]


class Stop(Hook):
    """Asks to stop once `when(epoch, done)` is true: after an epoch (done None) or between chunks."""

    def __init__(self, when, chunks: int = 1, kind: str = "after-epoch"):
        self.when, self.progress_chunks, self.kind, self.at = when, chunks, kind, None

    def on_progress(self, epoch, done, total):
        self.at = (epoch, done)

    def on_epoch(self, epoch, record, state, history):
        self.at = (epoch, None)

    def stop(self):
        return self.kind if self.at is not None and self.when(*self.at) else None


def test_the_experiment_prints_and_writes_what_the_command_does(straight, options, tmp_path, capsys):
    outcome = experiment.run(CONFIG, tmp_path / "run", options)
    assert outcome.status == "finished" and outcome.workdir == tmp_path / "run" and outcome.first_epoch == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"MNIST: 1024 train / 1024 test examples from {options.data_dir}/mnist_idx/1.0.0"
    assert out[1].startswith("JAX ") and out[2] == "Model Structure" and "Total parameters: 34,826" in out
    assert [line for line in out if line.startswith("[epoch")] == [
        format_epoch(e, epoch_entry(straight[1], e)) for e in (0, 1)]
    config, history, params = rundir.load_run(tmp_path / "run")
    assert config == CONFIG and same_metrics(history, straight[1]) and leaves_equal(params, straight[0].params)
    record = rundir.read_record(tmp_path / "run")
    assert record.finished and record.system["cpu_threads"] >= 1 and record.system["cpu"]
    for name in ("training.svg", "classification.svg"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_a_stopped_run_resumes_bit_for_bit(straight, options, tmp_path):
    stopped = experiment.run(CONFIG, tmp_path / "run", options, hooks=[Stop(lambda epoch, done: True)])
    assert stopped.status == "stopped" and len(stopped.history["train_loss"]) == 1
    record = rundir.read_record(tmp_path / "run")
    assert not record.finished and len(record.history["train_loss"]) == 1
    assert not (tmp_path / "run" / "params.msgpack").exists()
    resumed = experiment.resume(tmp_path / "run", {}, options, hooks=[])
    assert resumed.status == "finished" and resumed.first_epoch == 1
    assert same_metrics(resumed.history, straight[1]) and leaves_equal(resumed.state.params, straight[0].params)
    assert rundir.read_record(tmp_path / "run").finished


class MakeADirectoryOf(Hook):
    """Puts a directory where the final step will write `name`: a real write that fails."""

    def __init__(self, run_dir, name: str):
        self.path = run_dir / name

    def on_epoch(self, epoch, record, state, history):
        self.path.mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("name,seeds", [("classification.svg", 1), ("seed-1/params.msgpack", 2)])
def test_history_is_marked_finished_only_after_every_other_file(small_fits, options, tmp_path, name, seeds):
    config = dataclasses.replace(CONFIG, seeds=seeds)
    run_dir = tmp_path / "run"
    with pytest.raises(rundir.RunError, match=rf"{name}: cannot write \(Is a directory\)"):
        experiment.run(config, run_dir, options, hooks=[MakeADirectoryOf(run_dir, name)])
    record = rundir.read_record(run_dir)
    assert not record.finished and record.params_sha256 is None
    # Every epoch is checkpointed, so a resume with nothing left to train still finishes the run.
    shutil.rmtree(run_dir / name)
    outcome = experiment.resume(run_dir, {}, options, hooks=[])
    assert outcome.status == "finished" and outcome.first_epoch == 2
    assert rundir.read_record(run_dir).finished and same_metrics(outcome.history, small_fits[seeds][1])


def test_a_history_one_epoch_behind_its_newest_checkpoint_resumes_from_the_checkpoint(straight, options, tmp_path):
    """A kill between the last checkpoint's commit and the history's rewrite: history.json claims
    one epoch, the checkpoints two. The run is finished from the checkpoint, retraining nothing."""
    run_dir = tmp_path / "run"
    experiment.run(CONFIG, run_dir, options, hooks=[])
    record = json.loads((run_dir / "history.json").read_text())
    record.update(finished=False, system={}, history={k: v[:1] for k, v in record["history"].items()})
    del record["params_sha256"]
    (run_dir / "history.json").write_text(json.dumps(record))
    for name in ("params.msgpack", "training.svg", "classification.svg"):
        (run_dir / name).unlink()
    outcome = experiment.resume(run_dir, {}, options, hooks=[])
    assert outcome.status == "finished" and outcome.first_epoch == 2
    config, history, params = rundir.load_run(run_dir)
    assert same_metrics(history, straight[1]) and leaves_equal(params, straight[0].params)


def test_a_hook_failing_after_the_first_checkpoint_strands_no_epoch(straight, options, tmp_path):
    """A hook of the user's raises after epoch 0's checkpoint, before any history write would have
    claimed the epoch: the run resumes from that checkpoint, retraining nothing."""
    class Broken(Hook):
        def on_epoch(self, epoch, record, state, history):
            raise RuntimeError("a hook's bug")

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="a hook's bug"):
        experiment.run(CONFIG, run_dir, options, hooks=[], extra_hooks=[Broken()])
    assert (run_dir / "checkpoints" / "1").is_dir()
    record = rundir.read_record(run_dir)  # written at the start, with where it runs
    assert not record.finished and record.system["backend"] == jax.default_backend()
    outcome = experiment.resume(run_dir, {}, options, hooks=[])
    assert outcome.status == "finished" and outcome.first_epoch == 1
    _, history, params = rundir.load_run(run_dir)
    assert same_metrics(history, straight[1]) and leaves_equal(params, straight[0].params)


def test_log_interval_prints_lines_within_each_epoch_and_changes_no_number(straight, options, tmp_path, capsys):
    """Off a terminal no bar is drawn: --log-interval 1 prints a line after each of an epoch's 4 steps
    (in scans of one step, as the mid-epoch stop's: their program is compiled once)."""
    outcome = experiment.run(CONFIG, tmp_path / "run", dataclasses.replace(options, log_interval=1, progress="off"))
    lines = [line for line in capsys.readouterr().out.splitlines() if " step " in line]
    assert [line.split(",")[0] for line in lines] == [f"[epoch  {e}] step {s}/4 ({s * 25}%)" for e in (0, 1)
                                                      for s in (1, 2, 3, 4)]
    assert same_metrics(outcome.history, straight[1])


def test_missing_files_are_said_before_any_word_of_preparing_them(tmp_path, capsys):
    options = RunOptions(data_dir=tmp_path / "tfds", manual_dir=tmp_path / "nowhere")
    with pytest.raises(UserError, match="nowhere: manual dir not found"):
        experiment.run(CONFIG, tmp_path / "run", options)
    assert "Preparing" not in capsys.readouterr().out


def test_the_figures_of_another_run_are_not_replaced(options, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "history.json").write_text("{}")
    (tmp_path / "other" / "training.svg").write_text("theirs")
    with pytest.raises(UserError, match="--figures-dir .*other holds a run, whose figures are its own; pick another"):
        experiment.run(CONFIG, tmp_path / "run", dataclasses.replace(options, figures_dir=tmp_path / "other"), hooks=[])
    assert (tmp_path / "other" / "training.svg").read_text() == "theirs" and not (tmp_path / "run").exists()


def test_divergence_keeps_the_last_good_checkpoint(options, tmp_path):
    run_dir = tmp_path / "run"
    experiment.run(CONFIG, run_dir, options, hooks=[Stop(lambda epoch, done: True)])
    record = json.loads((run_dir / "history.json").read_text())
    record["config"]["learning_rate"] = 1e9  # a hand edit: the resume trains epoch 1 at it
    (run_dir / "history.json").write_text(json.dumps(record))
    outcome = experiment.resume(run_dir, {}, options, hooks=[])
    assert outcome.status == "diverged" and outcome.state is None
    assert "epoch 1:" in outcome.message and "last good checkpoint (after epoch 0) is kept" in outcome.message
    restored = Checkpointer(run_dir / "checkpoints").restore_latest(initial_state(CONFIG))
    assert len(restored.history["train_loss"]) == 1
    assert all(np.isfinite(p).all() for p in jax.tree_util.tree_leaves(restored.state.params))


def test_history_never_claims_an_epoch_whose_checkpoint_is_not_committed(options, tmp_path, monkeypatch):
    """Orbax's saves are held back until someone waits for them, the most asynchronous Orbax could
    be; each time history.json is written, every epoch it lists must have a committed checkpoint."""
    held = []
    save, wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished

    def held_save(manager, *args, **kwargs):
        held.append((manager, args, kwargs))
        return True

    def wait_then_save(manager):
        while held:
            held_manager, args, kwargs = held.pop(0)
            save(held_manager, *args, **kwargs)
        return wait(manager)

    claims, write_history = [], rundir.RunDir.write_history

    def spy(self, history):
        epochs = len(history["train_loss"])
        claims.append((epochs, (self.checkpoint_dir / str(epochs)).is_dir()))
        write_history(self, history)

    monkeypatch.setattr(ocp.CheckpointManager, "save", held_save)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait_then_save)
    monkeypatch.setattr(rundir.RunDir, "write_history", spy)
    outcome = experiment.run(CONFIG, tmp_path / "run", options, hooks=[Stop(lambda epoch, done: True)])
    assert outcome.status == "stopped" and claims == [(0, False), (1, True)]  # the record at the start claims none


def test_a_second_ctrl_c_stops_mid_epoch_with_every_printed_epoch_resumable(straight, options, tmp_path):
    stop = Stop(lambda epoch, done: (epoch, done) == (1, 1), chunks=10, kind="now")  # after epoch 1's first chunk
    outcome = experiment.run(CONFIG, tmp_path / "run", options, hooks=[stop])
    assert outcome.status == "stopped" and outcome.state is None and len(outcome.history["train_loss"]) == 1
    assert rundir.read_record(tmp_path / "run").history["train_loss"] == outcome.history["train_loss"]
    resumed = experiment.resume(tmp_path / "run", {}, options, hooks=[])
    assert resumed.first_epoch == 1 and same_metrics(resumed.history, straight[1])
    assert leaves_equal(resumed.state.params, straight[0].params)


class BreakTheCheckpoints(Hook):
    """The checkpoint directory becomes unwritable in epoch 1, after checkpoint 1 committed."""

    progress_chunks = 10

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def on_progress(self, epoch, done, total):
        if (epoch, done) == (1, 1):
            (self.run_dir / "checkpoints").rename(self.run_dir / "moved")
            (self.run_dir / "checkpoints").write_text("")


def test_a_failed_checkpoint_write_stops_training_at_once(options, tmp_path):
    run_dir = tmp_path / "run"
    config = dataclasses.replace(CONFIG, epochs=3)
    with pytest.raises(CheckpointError, match=r"checkpoints/2: cannot write the checkpoint \(Not a directory\)"):
        experiment.run(config, run_dir, options, hooks=[BreakTheCheckpoints(run_dir)])
    record = rundir.read_record(run_dir)
    assert len(record.history["train_loss"]) == 1 and not record.finished  # nothing claims epoch 1
    assert Checkpointer(run_dir / "moved", create=False).latest_epoch() == 1


def logged_scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in `directory`'s event files, as TensorBoard's own reader sees them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_logs_are_the_history(run_dir) -> None:
    """Each epoch's values are history.json's (as float32), once each, and each train step's loss
    is there once (4 batches an epoch), its mean the epoch's train loss."""
    record = json.loads((run_dir / "history.json").read_text())["history"]
    scalars = logged_scalars(run_dir / "tensorboard")
    for key, tag in {"train_loss": "train/loss", "test_accuracy": "test/accuracy", "learning_rate": "learning_rate",
                     "epoch_seconds": "epoch_seconds", "test_loss": "test/loss"}.items():
        assert scalars[tag] == [(e, float(np.float32(v))) for e, v in enumerate(record[key])], tag
    assert scalars["test/accuracy_class_3"] == [(e, float(np.float32(v[3])))
                                                for e, v in enumerate(record["test_class_accuracy"])]
    steps = scalars["train/batch_loss"]
    assert [s for s, _ in steps] == list(range(4 * len(record["train_loss"]))) and all(0 < v < 3 for _, v in steps)
    # The notebook's train loss is its batches' mean losses, each times its size, over the examples.
    for epoch, loss in enumerate(record["train_loss"]):
        assert np.mean([v for _, v in steps[4 * epoch:4 * epoch + 4]]) == pytest.approx(loss, rel=1e-5)


class BatchLossesOnDisk(Hook):
    """After the TensorBoard hook: each epoch's batch losses are on disk before history.json claims
    the epoch, so a kill at any moment leaves the history's epochs all logged."""

    def __init__(self, run_dir):
        self.run_dir, self.seen = run_dir, []

    def on_epoch(self, epoch, record, state, history):
        written = (self.run_dir / "history.json").exists()
        claimed = len(rundir.read_record(self.run_dir).history["train_loss"]) if written else 0
        logged = len(logged_scalars(self.run_dir / "tensorboard")["train/batch_loss"])
        self.seen.append((claimed, logged))


def test_the_tensorboard_logs_are_the_history_through_a_kill_and_a_damaged_checkpoint(options, tmp_path):
    """A run stopped after 2 of 3 epochs whose newest checkpoint is damaged, and whose event file a
    kill cut off mid-record, resumes from epoch 1: the logs then hold epochs 0-2 and steps 0-11,
    each once, as history.json says (tensorboardX's appending writer logged epoch 1 twice here)."""
    run_dir = tmp_path / "run"
    config = dataclasses.replace(CONFIG, epochs=3)
    on_disk = BatchLossesOnDisk(run_dir)
    experiment.run(config, run_dir, options, hooks=[Stop(lambda epoch, done: epoch == 1)], extra_hooks=[on_disk])
    assert on_disk.seen == [(0, 4), (1, 8)]
    assert_logs_are_the_history(run_dir)
    from test_checkpoints import flip_a_bit_of_the_arrays

    flip_a_bit_of_the_arrays(run_dir / "checkpoints" / "2")
    (event_file,) = (run_dir / "tensorboard").iterdir()
    with event_file.open("ab") as f:
        f.write(event_file.read_bytes()[-60:-20])  # a record cut off by a kill
    outcome = experiment.resume(run_dir, {}, options, hooks=[])
    assert outcome.status == "finished" and outcome.first_epoch == 1
    assert_logs_are_the_history(run_dir)
    assert [p.name for p in (run_dir / "tensorboard").iterdir()] == [event_file.name]


def test_a_tensorboard_folder_that_cannot_be_written_is_one_line_before_training(options, tmp_path):
    run_dir = tmp_path / "run"
    experiment.run(dataclasses.replace(CONFIG, epochs=1), run_dir, dataclasses.replace(options, tensorboard=False),
                   hooks=[])
    (run_dir / "tensorboard").write_text("not a folder")
    with pytest.raises(UserError, match=r"^\S+/run/tensorboard: cannot write the TensorBoard logs here \(not a folder\); "
                                        r"move it away or train with --no-tensorboard$"):
        experiment.resume(run_dir, {"epochs": 2}, options, hooks=[])
    assert len(rundir.read_record(run_dir).history["train_loss"]) == 1


def test_without_tensorboard_no_event_files_are_written(options, tmp_path):
    experiment.run(dataclasses.replace(CONFIG, epochs=1), tmp_path / "run",
                   dataclasses.replace(options, tensorboard=False), hooks=[])
    assert not (tmp_path / "run" / "tensorboard").exists() and rundir.read_record(tmp_path / "run").finished


class Events(Hook):
    """Records the order of the loop's calls."""

    def __init__(self):
        self.calls = []

    def on_epoch_start(self, epoch):
        self.calls.append(("start", epoch))

    def on_epoch(self, epoch, record, state, history):
        self.calls.append(("end", epoch))


def test_profile_epoch_traces_that_epoch_and_extra_hooks_see_each_epoch_start(straight, options, tmp_path):
    import gzip

    events = Events()
    outcome = experiment.run(CONFIG, tmp_path / "run", dataclasses.replace(options, profile_epoch=1, tensorboard=False),
                             hooks=[], extra_hooks=[events])
    assert outcome.status == "finished" and same_metrics(outcome.history, straight[1])  # profiling changes nothing
    assert events.calls == [("start", 0), ("end", 0), ("start", 1), ("end", 1)]
    traces = sorted((tmp_path / "run" / rundir.PROFILE_DIR).rglob("perfetto_trace.json.gz"))
    assert len(traces) == 1 and list((tmp_path / "run" / rundir.PROFILE_DIR).rglob("*.xplane.pb"))
    names = {event.get("name", "") for event in json.loads(gzip.decompress(traces[0].read_bytes()))["traceEvents"]}
    assert any("chunk_fn" in name for name in names), sorted(names)[:50]  # the epoch's training program
    assert any("evaluate" in name for name in names)  # and its test set
    assert f"Profiled epoch 1 into {traces[0].parent} (" in experiment.finished_lines(outcome)[-1]
    with pytest.raises(ConfigError, match=r"--profile-epoch 2 is not an epoch this run trains \(0 \.\.\. 1\)"):
        experiment.run(CONFIG, tmp_path / "other", dataclasses.replace(options, profile_epoch=2), hooks=[])
    # A file where the profile goes is refused before any epoch trains, not after the one to trace.
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / rundir.PROFILE_DIR).write_text("mine")
    with pytest.raises(UserError, match=r"blocked/profile: cannot write the profile here \(not a folder\); move it"):
        experiment.run(CONFIG, tmp_path / "blocked", dataclasses.replace(options, profile_epoch=1), hooks=[],
                       extra_hooks=[events])
    assert events.calls[4:] == [] and not (tmp_path / "blocked" / "checkpoints").exists()

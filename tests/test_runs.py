import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import SMALL

from mnist_jax import history as hist
from mnist_jax import runs
from mnist_jax.checkpoints import Checkpointer
from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError, UserError
from mnist_jax.train import initial_state

CONFIG = TrainConfig(epochs=1, **SMALL)
RECORD = {"train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.4, "test_accuracy": 0.9,
          "epoch_seconds": 1.0, "test_class_accuracy": [0.9] * 10}


def finished_run(path, config=CONFIG):
    run = runs.Run.create(path, config)
    state = initial_state(config)
    record = RECORD if config.seeds == 1 else {
        k: v if k == "epoch_seconds" else [v] * config.seeds for k, v in RECORD.items()}
    history = hist.append(hist.empty(), record)
    run.finish(history, state.params, {"backend": "cpu"}, {"training.svg": b"<svg/>", "classification.svg": b"<svg/>"})
    return run, state


def test_a_finished_run_loads_back(tmp_path):
    run, state = finished_run(tmp_path / "run")
    config, history, params = runs.load_run(run.path)
    assert config == CONFIG and history["test_accuracy"] == [0.9]
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    assert not list(run.path.glob(".*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("leftover", ["history.json", "checkpoints", "params.msgpack", "seed-3"])
def test_a_directory_holding_any_part_of_a_run_is_refused(tmp_path, leftover):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / leftover).mkdir() if "." not in leftover else (run_dir / leftover).write_text("{}")
    with pytest.raises(runs.RunError, match="already holds a run; --resume it, .* or pass --overwrite") as info:
        runs.Run.create(run_dir, CONFIG)
    assert isinstance(info.value, UserError)
    runs.Run.create(run_dir, CONFIG, overwrite=True)
    assert not runs.holds_a_run(run_dir)


def test_overwrite_leaves_nothing_of_the_earlier_run(tmp_path):
    run, _ = finished_run(tmp_path / "run", TrainConfig(epochs=1, seeds=2, **SMALL))
    assert (run.path / "seed-1" / "params.msgpack").exists()
    (run.path / "notes.txt").write_text("mine")
    runs.Run.create(run.path, CONFIG, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == ["notes.txt"]  # the user's own file stays


def test_a_multi_seed_run_points_to_its_seed_runs(tmp_path):
    run, state = finished_run(tmp_path / "run", TrainConfig(epochs=1, seed=4, seeds=2, **SMALL))
    with pytest.raises(runs.RunError, match=f"pass one seed's run, e.g. {run.path / 'seed-4'}"):
        runs.load_run(run.path)
    config, history, params = runs.load_run(run.path / "seed-5")
    assert config.seed == 5 and config.seeds == 1 and history["test_accuracy"] == [0.9]
    np.testing.assert_array_equal(params["conv1"]["kernel"], state.params["conv1"]["kernel"][1])


def test_an_unfinished_run_loads_its_latest_checkpoint(tmp_path):
    run = runs.Run.create(tmp_path / "run", CONFIG)
    state = initial_state(CONFIG)
    history = hist.append(hist.empty(), RECORD)
    checkpointer = Checkpointer(run.checkpoint_dir)
    checkpointer.save(1, state, history)
    checkpointer.close()
    run.write_history(history)
    config, loaded, params = runs.load_run(run.path)
    assert not runs.read_record(run.path).finished and loaded == history
    np.testing.assert_array_equal(params["linear"]["bias"], state.params["linear"]["bias"])


def test_resume_keeps_the_runs_settings(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    resumed = runs.Run.resume(run.path, {"epochs": 4, "precision": "highest"})
    assert resumed.config == TrainConfig(epochs=4, precision="highest", **SMALL)
    with pytest.raises(ConfigError, match="--learning-rate 0.1 differs"):
        runs.Run.resume(run.path, {"learning_rate": 0.1})


@pytest.mark.parametrize("content,message", [(None, "not found"), ("{", "not a valid run history"),
                                             ('{"config": {"epochs": 2, "depth": 3}, "history": {}}',
                                              "not a valid run history")])
def test_a_bad_history_file_is_a_one_line_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "history.json").write_text(content)
    with pytest.raises(runs.RunError, match=message) as info:
        runs.read_record(tmp_path)
    assert "\n" not in str(info.value)


def test_params_of_another_shape_are_refused(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    record = json.loads((run.path / "history.json").read_text())
    record["config"]["seeds"] = 3
    (run.path / "history.json").write_text(json.dumps(record))
    with pytest.raises(runs.RunError, match="not valid saved params"):
        runs.load_params(run.path, runs.read_record(run.path).config)


def test_figures_are_copied_only_where_asked(tmp_path):
    run, _ = finished_run(tmp_path / "run")
    figures = tmp_path / "figures"
    figures.mkdir()
    copied = runs.copy_figures(run.path, figures, seeds=1)
    assert [p.name for p in copied] == ["training.svg", "classification.svg"]
    assert [p.name for p in runs.copy_figures(run.path, figures, seeds=2)] == ["training_seeds.svg"]
    assert sorted(p.name for p in figures.iterdir()) == ["classification.svg", "training.svg", "training_seeds.svg"]


def test_import_mnist_jax_then_use_any_module():
    code = "import mnist_jax, sys; print('jax' in sys.modules); print(mnist_jax.runs.load_run.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "load_run"]  # nothing heavy until a module is used

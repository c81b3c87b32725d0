"""A sweep (`train --sweep NAME=V1,V2,...`): every value's model trained by one program, each
the single run with that value, written as runs the other commands read, resumed bit for bit."""

import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL, SMALL_FLAGS, a_record

from mnist_jax import cli
from mnist_jax.config import TrainConfig, parse_sweep
from mnist_jax.errors import ConfigError
from mnist_jax.fast import programs
from mnist_jax.optimizer import make_optimizer, swept_values
from mnist_jax.run import loop, rundir

# The second value is the suite's small setting (1e-3): its model must be the small_fits reference.
SWEEP = "lr=3e-3,1e-3"
FLAGS = [flag for i, flag in enumerate(SMALL_FLAGS) if "--lr" not in SMALL_FLAGS[max(i - 1, 0):i + 1]]
FLAGS += ["--no-doubts"]  # each member's rule of doubt: tests/test_cli.py (a run of two seeds)


def mnist_jax(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.execute([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("settings,swept", [
    ({"schedule": "one_cycle"}, "learning_rate=1e-3,3e-3"),
    ({"optimizer": "adamw"}, "weight_decay=1e-4,0.05"),
    ({"schedule": "warmup_cosine", "epochs": 3}, "warmup_epochs=0.5,1,2"),
])
def test_each_models_updates_are_the_optimizer_of_its_value(settings, swept):
    """The optimizer of a sweep, its value held in each model's state, makes the updates the single
    run's optimizer makes (warmup_cosine's schedule written with arrays: the same rates)."""
    config = TrainConfig(sweep=swept, **{**SMALL, **settings})
    name, values = parse_sweep(config.sweep)
    params = {"w": jnp.linspace(-1.0, 1.0, 6)}
    grads = [{"w": jnp.sin(jnp.arange(6.0) + step)} for step in range(12)]
    swept_optimizer = make_optimizer(config, steps_per_epoch=4)
    for value, model_value in zip(values, swept_values(config)):
        single = make_optimizer(TrainConfig(**{**SMALL, **settings, name: value}), steps_per_epoch=4)
        state = swept_optimizer.init(params)
        state = state._replace(hyperparams={**state.hyperparams, name: jnp.float32(model_value)})
        single_state = single.init(params)
        for g in grads:
            got, state = swept_optimizer.update(g, state, params)
            want, single_state = single.update(g, single_state, params)
            np.testing.assert_allclose(got["w"], want["w"], rtol=2e-6, atol=1e-12)


@pytest.fixture(scope="module")
def sweep_run(data_dir, small_data, small_fits, tmp_path_factory):
    """The sweep trained by the command, stopped after its first epoch and resumed."""
    run_dir = tmp_path_factory.mktemp("sweep") / "run"
    code, _, err = mnist_jax("train", "--sweep", SWEEP, "--epochs", 1, *FLAGS, "--data-dir", data_dir,
                             "--run-dir", run_dir)
    assert code == 0, err
    code, stdout, err = mnist_jax("train", "--resume", run_dir, "--epochs", 2, "--data-dir", data_dir, "--no-doubts")
    assert code == 0, err
    return run_dir, stdout


def test_a_resumed_sweep_is_the_sweep_trained_at_once_and_each_model_its_single_run(sweep_run, small_data,
                                                                                       small_fits):
    run_dir, _ = sweep_run
    config, history = rundir.load_history(run_dir)
    assert config.sweep == "learning_rate=0.003,0.001" and config.models == 2
    state, whole = loop.fit(TrainConfig(epochs=2, sweep=SWEEP, **{k: v for k, v in SMALL.items()
                                                                  if k != "learning_rate"}), *small_data)
    timings = ("epoch_seconds",)
    assert {k: v for k, v in history.items() if k not in timings} == {k: v for k, v in whole.items() if k not in timings}
    single_history = small_fits[1][1]
    if programs.models_mapped():  # on a CPU each model is trained and evaluated in turn, as its single run: bit for bit
        for key in ("train_loss", "test_loss", "test_accuracy"):
            assert [epoch[1] for epoch in history[key]] == single_history[key], key
    for key in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose([epoch[1] for epoch in history[key]], single_history[key], rtol=1e-5, atol=2e-3)
    assert history["learning_rate"][-1] == [3e-3, 1e-3]
    member = rundir.read_record(run_dir / "learning_rate=0.001")
    assert member.finished and member.config == TrainConfig(epochs=2, **SMALL)
    assert member.history["test_accuracy"] == [epoch[1] for epoch in history["test_accuracy"]]
    _, _, params = rundir.load_run(run_dir / "learning_rate=0.003")
    for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(got, want[0])


def test_the_command_prints_a_line_per_value_and_the_table_and_draws_the_sweep(sweep_run, data_dir):
    run_dir, stdout = sweep_run
    assert "Sweep of learning_rate: 0.003, 0.001, 2 models in one program" in stdout
    lines = [line for line in stdout.splitlines() if line.startswith("[epoch")]
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["(learning_rate=0.003)", "(learning_rate=0.001)"] * 2
    history = rundir.read_record(run_dir).history
    table = stdout[stdout.index("| learning_rate |"):].splitlines()
    final = history["test_accuracy"][-1]
    assert table[2].startswith(f"| 0.003 | {final[0]:.4f}") and table[3].startswith(f"| 0.001 | {final[1]:.4f}")
    assert ("**best**" in table[2]) == (final[0] >= final[1])
    assert "Sweep of learning_rate" in (run_dir / "sweep.svg").read_text()
    assert not (run_dir / "training.svg").exists()
    events = sorted(p.parent.name for p in (run_dir / "tensorboard").glob("*/events.out.tfevents.*"))
    assert events == ["learning_rate=0.001", "learning_rate=0.003"]
    code, out, _ = mnist_jax("evaluate", run_dir / "learning_rate=0.001", "--data-dir", data_dir)
    assert code == 0 and "params after epoch 1" in out
    code, _, err = mnist_jax("evaluate", run_dir, "--data-dir", data_dir)
    assert code == 2 and "holds a sweep of 2 models; pass one model's run" in err


@pytest.mark.parametrize("argv,message", [
    (["--sweep", "momentum=0.5,0.9"], "sweep must be NAME=V1,V2,... with NAME one of learning_rate"),
    (["--sweep", "lr=1e-3"], "give at least two different values"),
    (["--sweep", "lr=1e-3,x"], "the values must be numbers separated by commas"),
    (["--sweep", "lr=1e-3,0"], "learning_rate must be > 0, got 0.0"),
    (["--sweep", "weight_decay=0,1e-4"], "--sweep weight_decay has no effect without --optimizer adamw"),
    (["--lr", "1e-3", "--sweep", "lr=1e-3,3e-3"], "--learning-rate and --sweep lr=1e-3,3e-3 both set learning_rate"),
])
def test_a_bad_sweep_is_one_line_before_anything_is_written(argv, message, tmp_path):
    code, _, err = mnist_jax("train", *argv, "--run-dir", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_a_sweep_is_saved_in_one_spelling():
    assert TrainConfig(sweep="lr=1e-3, 3e-3").sweep == "learning_rate=0.001,0.003"
    with pytest.raises(ConfigError, match="at least two different values"):
        TrainConfig(sweep="lr=1e-3,0.001")


def test_a_grid_of_values_and_seeds_stacks_each_value_then_each_seed(small_data, small_fits):
    """--sweep with --seeds 2: the models of the second value are the suite's 2-seed reference run."""
    from mnist_jax import hooks, sweep
    from mnist_jax.run.history import seed_history

    config = TrainConfig(epochs=2, seeds=2, sweep=SWEEP, **{k: v for k, v in SMALL.items() if k != "learning_rate"})
    assert [(m.learning_rate, m.seed) for m in config.model_configs()] == [(3e-3, 0), (3e-3, 1), (1e-3, 0), (1e-3, 1)]
    records = []

    class Keep(hooks.Hook):
        def on_epoch(self, epoch, record, state, history):
            records.append(record)

    _, history = loop.fit(config, *small_data, hooks=[Keep()])
    _, reference = small_fits[2]
    for model, seed in ((2, 0), (3, 1)):
        mine, theirs = seed_history(history, model), seed_history(reference, seed)
        np.testing.assert_allclose(mine["test_loss"], theirs["test_loss"], rtol=1e-5)
        if programs.models_mapped():  # on a CPU: bit for bit
            assert all(mine[k] == theirs[k] for k in ("train_loss", "test_loss", "test_class_accuracy"))
    (first_name, first), (second_name, second) = sweep.value_records(config, records[-1])
    assert (first_name, second_name) == ("learning_rate=0.003", "learning_rate=0.001")
    assert second["test_accuracy"] == history["test_accuracy"][-1][2:] and second["learning_rate"] == [1e-3, 1e-3]
    table = sweep.table(config, history)
    low, high = min(history["test_accuracy"][-1][2:]), max(history["test_accuracy"][-1][2:])
    assert table[0].startswith("| learning_rate | final test accuracy (seeds' min-max) |")
    assert f"({low:.4f}-{high:.4f})" in table[3]


def test_the_table_tells_apart_values_that_differ_in_their_last_digits():
    """0.001 and 0.0010000000000000002 are two values (two folders): the table spells each exactly."""
    from mnist_jax import sweep

    config = TrainConfig(epochs=1, sweep="lr=0.001,0.0010000000000000002")
    history = {k: [v] for k, v in a_record(seeds=2, test_accuracy=[0.9, 0.95]).items()}
    rows = sweep.table(config, history)[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["0.001", "0.0010000000000000002"]

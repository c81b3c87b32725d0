"""Named recipes (mnist_jax.recipes) and --stop-at-accuracy: a run that ends where it reached its target."""

import dataclasses
import inspect
import json
import shlex

import pytest
from conftest import SMALL, SMALL_FLAGS

from mnist_jax import cli, recipes
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.run import experiment, rundir


def documented_commands(name: str) -> list[list[str]]:
    """The `mnist-jax train ...` command lines of recipe `name`'s docstring, each as its arguments."""
    doc = inspect.getdoc(recipes.RECIPES[name])
    return [shlex.split(line, comments=True)[1:] for line in doc.splitlines() if line.strip().startswith("mnist-jax ")]


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_each_command_a_recipe_documents_trains_that_recipe(name):
    """Each command in a recipe's docstring is one the command line takes, and trains the recipe's
    config with the command's own flags over it, as `cli.train` builds it."""
    commands = documented_commands(name)
    assert commands and all(argv[:3] == ["train", "--recipe", name] for argv in commands)
    top, _ = cli.parser()
    for argv in commands:
        args = top.parse_args(argv)
        settings = cli.given(args, TrainConfig)
        config = recipes.config(args.recipe, **settings)
        assert config == TrainConfig(**{**recipes.settings(name), **settings})
        assert config.epochs == settings.get("epochs", recipes.settings(name).get("epochs", TrainConfig().epochs))


def test_the_fast_recipe_trains_what_its_docstring_says(data_dir, tmp_path, capsys):
    """"batch 64, Adam with a one-cycle schedule up to 1e-2, each training digit shifted by up to 2
    pixels", run as its docstring's command, on 1,024 digits for one epoch."""
    argv = [*documented_commands("fast")[0], "--epochs", "1", "--train-examples", "1024", "--test-examples", "1024",
            "--no-tensorboard", "--no-doubts", "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "run")]
    assert cli.execute(argv) == 0
    out = capsys.readouterr().out
    assert "Optimizer: adam, learning rate 0.01 on a one_cycle schedule" in out
    assert "augmentation: shift of up to 2 pixels" in out
    config, history, _ = rundir.load_run(tmp_path / "run")
    assert (config.batch_size, config.augment, config.augment_shift) == (64, "shift", 2)
    # One cycle: up to 1e-2 and back down by the run's last step (the 16th of 64 digits), where a
    # constant schedule would still be at 1e-2.
    assert history["learning_rate"][0] < 1e-2 / 10
    assert history["test_accuracy"][0] > 0.5  # 16 steps at up to 1e-2 learn: a guess scores 0.1


def test_a_flag_wins_over_the_recipe_and_an_unknown_recipe_is_named():
    fast = recipes.config("fast", epochs=12, seed=3)
    assert (fast.schedule, fast.learning_rate, fast.augment, fast.epochs, fast.seed) == ("one_cycle", 1e-2, "shift", 12, 3)
    assert recipes.config("one_epoch").batch_size == 64
    assert recipes.config("notebook") == TrainConfig()
    with pytest.raises(ConfigError, match=r"--recipe quick: no such recipe; there are notebook, one_epoch, fast, fashion"):
        recipes.settings("quick")


def test_a_run_ends_after_the_first_epoch_that_reaches_its_target_and_stays_ended(small_fits, data_dir, tmp_path):
    """Three epochs asked, the target the reference run's epoch-1 accuracy: it ends after epoch 1, as
    a finished run, with the reference's numbers; a resume with more epochs is refused, as a
    finished run's is, and writes nothing."""
    reference = small_fits[1][1]
    target = reference["test_accuracy"][1]
    assert reference["test_accuracy"][0] < target  # the reference learns between its two epochs
    config = TrainConfig(**{**SMALL, "epochs": 3, "stop_at_accuracy": target})
    options = RunOptions(data_dir=data_dir, tensorboard=False, doubts=False)
    outcome = experiment.run(config, tmp_path / "run", options, hooks=[])
    assert outcome.status == "finished" and outcome.history["test_accuracy"] == reference["test_accuracy"]
    record = json.loads((tmp_path / "run" / "history.json").read_text())
    assert record["finished"] and record["stopped_at_accuracy"] == {"epoch": 1, "target": target,
                                                                     "test_accuracy": target}
    assert rundir.load_run(tmp_path / "run")[0].stop_at_accuracy == target  # the other commands read it
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("[!.]*") if p.is_file()}
    with pytest.raises(rundir.RunError, match=f"ended after epoch 1, where it reached --stop-at-accuracy {target:g}; "
                                              f"pass a higher --stop-at-accuracy to train on"):
        experiment.resume(tmp_path / "run", {"epochs": 5}, options, hooks=[])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("[!.]*") if p.is_file()} == written


def test_the_command_says_where_the_target_was_reached_and_refuses_a_recipe_on_resume(data_dir, tmp_path, capsys):
    argv = ["train", *map(str, SMALL_FLAGS), "--epochs", "3", "--stop-at-accuracy", "0.01", "--no-tensorboard", "--no-doubts",
            "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "run")]
    assert cli.execute(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("Test accuracy 0.") and out[-2].endswith(
        " after epoch 0 reached --stop-at-accuracy 0.01: the run ends there")
    assert out[-1].startswith("Trained 1 epoch in ")
    with pytest.raises(SystemExit):
        cli.execute(["train", "--resume", str(tmp_path / "run"), "--recipe", "fast"])
    assert "--recipe starts a run; a resumed run keeps its own settings" in capsys.readouterr().err


def test_the_stop_needs_no_program_of_its_own():
    """--stop-at-accuracy is read by the loop, not the compiled steps: any target shares programs."""
    from mnist_jax.fast.programs import program_key

    config = TrainConfig(**SMALL)
    assert program_key(config) == program_key(dataclasses.replace(config, stop_at_accuracy=0.5))

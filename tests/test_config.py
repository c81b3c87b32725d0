import dataclasses

import pytest

from mnist_jax.config import RESUMABLE_CHANGES, TrainConfig, resume_config
from mnist_jax.errors import ConfigError, UserError


def test_defaults_are_the_notebooks_hyperparameters():
    config = TrainConfig()
    assert (config.epochs, config.learning_rate, config.batch_size, config.test_batch_size) == (30, 1e-4, 512, 1024)
    assert config.seeds == 1 and config.precision == "default"


@pytest.mark.parametrize("bad", [{"seeds": 0}, {"epochs": 0}, {"batch_size": -1}, {"learning_rate": 0.0},
                                 {"train_examples": 0}, {"precision": "tf32"}, {"conv": "fft"}, {"seed": -1},
                                 {"seed": 99999999999999999999}, {"seed": 2**31 - 2, "seeds": 3},
                                 {"microbatch": 100}, {"test_batch_size": 100.5}, {"seed": 0.5}, {"epochs": True},
                                 {"learning_rate": float("nan")}, {"learning_rate": "1e-4"}, {"conv": 3},
                                 {"network": "resnet"}])
def test_impossible_settings_are_user_errors(bad):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**bad)
    assert isinstance(info.value, UserError) and next(iter(bad)) in str(info.value)


def test_a_wrong_choice_names_the_choices():
    with pytest.raises(ConfigError, match=r"^network must be cnn or cnn_bn, got 'resnet'$"):
        TrainConfig(network="resnet")
    with pytest.raises(ConfigError, match=r"^precision must be default, high or highest, got 'tf32'$"):
        TrainConfig(precision="tf32")


def test_a_saved_config_reads_back_and_older_ones_take_new_defaults():
    config = TrainConfig(epochs=3, seeds=2, precision="highest")
    assert TrainConfig.from_dict(dataclasses.asdict(config)) == config
    older = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("precision", "network")}
    assert TrainConfig.from_dict(older).precision == "default" and TrainConfig.from_dict(older).network == "cnn"
    with pytest.raises(ConfigError, match="unknown settings nesterov"):
        TrainConfig.from_dict({**older, "nesterov": True})


def test_a_resume_may_change_only_how_the_same_run_is_computed():
    saved = TrainConfig(epochs=2, batch_size=256, seed=3)
    assert set(RESUMABLE_CHANGES) == {"epochs", "stop_at_accuracy", "conv", "microbatch", "precision"}
    resumed = resume_config(saved, {"epochs": 5, "precision": "highest", "conv": "xla", "seed": 3, "batch_size": 256,
                                    "stop_at_accuracy": 0.99})
    assert resumed == dataclasses.replace(saved, epochs=5, precision="highest", conv="xla", stop_at_accuracy=0.99)
    with pytest.raises(ConfigError, match="--batch-size 128 differs from the resumed run's 256"):
        resume_config(saved, {"batch_size": 128})
    with pytest.raises(ConfigError, match="--seed 5 differs"):
        resume_config(saved, {"epochs": 5, "seed": 5})


def test_a_warmup_as_long_as_the_run_is_refused_not_clamped():
    assert TrainConfig(schedule="warmup_cosine", epochs=4, warmup_epochs=3.5).warmup_epochs == 3.5
    for warmup in (4, 1e308):
        with pytest.raises(ConfigError, match="must be shorter than the run's --epochs 4"):
            TrainConfig(schedule="warmup_cosine", epochs=4, warmup_epochs=warmup)

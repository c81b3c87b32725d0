"""mnist_jax.choices: every part a run chooses by name reads the settings it declares, the flags
offer exactly the declared parts, and a setting none of a run's parts reads is refused in one line."""

import dataclasses
import typing

import pytest
from test_cli import mnist_jax, one_line_error

from mnist_jax import choices
from mnist_jax import config as config_module
from mnist_jax.config import TrainConfig
from mnist_jax.data.datasets import DATASETS
from mnist_jax.errors import ConfigError

SETTINGS = {f.name: f for f in config_module.fields(TrainConfig)}


def test_the_flags_offer_exactly_the_declared_parts_and_each_reads_real_settings():
    for kind, parts in choices.declarations().items():
        assert set(SETTINGS[kind].choices) == set(parts), kind  # a part is one declaration and its name
        for name, part in parts.items():
            assert set(part.reads) <= set(SETTINGS), (kind, name, part.reads)
    assert set(typing.get_args(config_module.DatasetName)) == set(DATASETS)


def optional_settings():
    """(setting, a value other than its default) for each setting that only some parts read."""
    others = {float: 0.5, int: 4, str: None}  # within every bound, and dividing the batch (--microbatch)
    for name, field in SETTINGS.items():
        if choices.readers(name) and not all(name in p.reads for p in choices.declarations()[_kind(name)].values()):
            value = others[field.kind] if field.choices is None else next(c for c in field.choices if c != field.default)
            yield name, value


def _kind(setting):
    """The kind of part whose choices read `setting`."""
    return next(kind for kind, parts in choices.declarations().items() if any(setting in p.reads for p in parts.values()))


@pytest.mark.parametrize("setting,value", list(optional_settings()))
def test_a_setting_is_taken_where_a_chosen_part_reads_it_and_refused_where_none_does(setting, value):
    kind = _kind(setting)
    reader = next(name for name, part in choices.declarations()[kind].items() if setting in part.reads)
    ignorer = next(name for name, part in choices.declarations()[kind].items() if setting not in part.reads)
    extra = {"epochs": 5} if reader == "warmup_cosine" else {}
    choices.check(TrainConfig(**{kind: reader, setting: value, **extra}))
    flag = SETTINGS[setting].flag
    with pytest.raises(ConfigError, match=rf"^{flag} {value} has no effect without --{kind.replace('_', '-')} {reader}"):
        choices.check(TrainConfig(**{kind: ignorer, setting: value, **extra}))


def test_the_command_refuses_an_unread_setting_before_writing_anything(tmp_path):
    run_dir = tmp_path / "run"
    message = one_line_error(mnist_jax("train", "--momentum", "0.5", "--run-dir", run_dir, "--epochs", "1"))
    assert message.endswith("--momentum 0.5 has no effect without --optimizer sgd")
    assert not run_dir.exists()
    message = one_line_error(mnist_jax("train", "--sweep", "warmup_epochs=0.5,1", "--run-dir", run_dir))
    assert message.endswith("--sweep warmup_epochs has no effect without --schedule warmup_cosine")


def test_an_earlier_run_with_an_unread_setting_still_reads_back():
    """Runs written before the check (`--momentum` with Adam was taken then) load as they were."""
    saved = dataclasses.asdict(TrainConfig())
    saved.update(optimizer="adam", momentum=0.5)
    assert TrainConfig.from_dict(saved).momentum == 0.5

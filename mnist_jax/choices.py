"""Every part a run chooses by name, and the settings each part reads: one relation, one check.

    check(TrainConfig(optimizer="adam", momentum=0.5))
    # ConfigError: --momentum 0.5 has no effect without --optimizer sgd

A part is a `config.Choice` in its own module's declarations (OPTIMIZERS, SCHEDULES, AUGMENTATIONS,
NETWORKS). A setting that some part reads is "optional": where none of the run's parts reads it,
it must keep its default, and a sweep may not vary it. Checked when a run is configured (a new run,
`mnist-jax train`), never when an earlier run is read back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mnist_jax import augment, networks, optimizer
from mnist_jax.config import Choice, ConfigError, TrainConfig, fields


def declarations() -> dict[str, Mapping[str, Choice]]:
    """The setting that picks each kind of part, and its parts by name (read at the call, so that a
    part declared since is seen)."""
    return {"optimizer": optimizer.OPTIMIZERS, "schedule": optimizer.SCHEDULES,
            "augment": augment.AUGMENTATIONS, "network": networks.NETWORKS}


def settings_read(config: TrainConfig) -> frozenset[str]:
    """The settings that the parts `config` chooses read."""
    return frozenset(s for kind, parts in declarations().items() for s in parts[getattr(config, kind)].reads)


def readers(setting: str) -> list[str]:
    """The flags that choose a part reading `setting`, e.g. ['--optimizer sgd']."""
    return [f"--{kind.replace('_', '-')} {name}" for kind, parts in declarations().items()
            for name, part in parts.items() if setting in part.reads]


def check(config: TrainConfig, changed: Collection[str] | None = None) -> None:
    """A ConfigError, in one line, for the first setting that `config` gives (or sweeps) and that
    none of its parts reads; only among `changed` where given (what a resume changes)."""
    read = settings_read(config)
    given = [(f.flag, f.name, getattr(config, f.name)) for f in fields(TrainConfig)
             if (changed is None or f.name in changed) and getattr(config, f.name) != f.default]
    if changed is None and config.sweep is not None:
        given.append((f"--sweep {config.sweep_name}", config.sweep_name, None))
    for flag, name, value in given:
        wanted = readers(name)
        if name not in read and wanted:
            shown = flag if value is None else f"{flag} {value}"
            raise ConfigError(f"{shown} has no effect without {' or '.join(wanted)}")

"""The training configuration: one small frozen dataclass, and the rule for what a resume may change.

    config = TrainConfig()                          # the notebook's hyperparameters
    config = TrainConfig(epochs=3, seeds=8)         # 8 models at once, 3 epochs

The defaults are the original PyTorch notebook's: 30 epochs of Adam at learning rate 1e-4 over
batches of 512 training images, evaluated in batches of 1024.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from mnist_jax.errors import ConfigError

ConvImpl = Literal["auto", "matmul", "xla"]
Precision = Literal["default", "high", "highest"]

# Settings that only choose how the same computation is carried out: a resumed run may change them.
# Every other setting defines the run, and a resume keeps it.
RESUMABLE_CHANGES = ("epochs", "conv", "precision")
# Seeds become jax.random keys through int32 arrays (one per seed of a multi-seed run); beyond this
# they would wrap around, and above 2**32 even a single key collides with a smaller seed's.
MAX_SEED = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run does; the defaults are the notebook's."""

    epochs: int = 30
    learning_rate: float = 1e-4
    batch_size: int = 512
    test_batch_size: int = 1024
    seed: int = 0
    seeds: int = 1  # > 1: train seeds seed, seed+1, ... at once, vmapped
    train_examples: int | None = None  # train on the first N training examples only (quick runs)
    test_examples: int | None = None  # evaluate on the first N test examples only (quick runs)
    conv: ConvImpl = "auto"  # how convolutions are computed (same parameters; see mnist_jax.model)
    # float32 matmul precision. "default" is JAX's: full float32 on a CPU, TF32 on Ampere and newer
    # NVIDIA GPUs (10-bit mantissa inputs, float32 accumulation). "highest" is full float32 everywhere,
    # as PyTorch's matmuls are by default.
    precision: Precision = "default"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "test_batch_size", "seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_examples", "test_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed <= MAX_SEED - (self.seeds - 1):
            last = f" (and seed + seeds - 1 = {self.seed + self.seeds - 1})" if self.seeds > 1 else ""
            raise ConfigError(f"seed must be in 0 ... {MAX_SEED:_}{last}, got {self.seed}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.conv not in ("auto", "matmul", "xla"):
            raise ConfigError(f"conv must be auto, matmul or xla, got {self.conv!r}")
        if self.precision not in ("default", "high", "highest"):
            raise ConfigError(f"precision must be default, high or highest, got {self.precision!r}")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config saved with `dataclasses.asdict`; settings added since then take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown settings {', '.join(unknown)}")
        return cls(**values)


def resume_config(saved: TrainConfig, given: dict) -> TrainConfig:
    """The config of a resumed run: `saved`, with the settings in `given` that a resume may change.

    A given setting that differs from the saved one and is not in RESUMABLE_CHANGES is refused.
    """
    for name, value in given.items():
        if name not in RESUMABLE_CHANGES and value != getattr(saved, name):
            flag = name.replace("_", "-")
            raise ConfigError(f"--{flag} {value} differs from the resumed run's {getattr(saved, name)}; "
                              f"a resumed run keeps its settings (only {', '.join(RESUMABLE_CHANGES)} may change)")
    return dataclasses.replace(saved, **{k: v for k, v in given.items() if k in RESUMABLE_CHANGES})

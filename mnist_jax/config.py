"""The configuration: what a run computes (`TrainConfig`) and how this process runs it (`RunOptions`).

    config = TrainConfig()                          # the notebook's hyperparameters
    config = TrainConfig(epochs=3, seeds=8)         # 8 models at once, 3 epochs
    options = RunOptions(keep_checkpoints=5, progress="off")

Each field carries its help text, bounds and flag spelling, and the command line's flags are made
from them (`mnist_jax.cli`), so a new setting is one new field here. `TrainConfig` is saved in the
run's history.json and a resume keeps it, except RESUMABLE_CHANGES; `RunOptions` is not saved.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from mnist_jax.errors import ConfigError, finite, quoted

# The names of mnist_jax.data.DATASETS (this module does not import data, which imports TFDS).
DatasetName = Literal["mnist", "fashion_mnist"]
Network = Literal["cnn", "cnn_bn"]
ConvImpl = Literal["auto", "matmul", "custom_vjp", "xla"]
ModelForm = Literal["linen", "nnx"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine", "warmup_cosine", "one_cycle"]
Precision = Literal["default", "high", "highest"]
Progress = Literal["auto", "on", "off"]
Augment = Literal["none", "shift"]

# Settings that only choose how the same computation is carried out: a resumed run may change them.
RESUMABLE_CHANGES = ("epochs", "stop_at_accuracy", "conv", "microbatch", "precision")
# Settings that the jitted programs do not depend on, with the value that stands for any: the seed
# and the data (of either dataset: the same shapes) are the programs' arguments, and the test batch has
# programs of its own.
OUTSIDE_PROGRAMS = {"seed": 0, "train_examples": None, "test_examples": None, "test_batch_size": 1, "dataset": "mnist",
                    "stop_at_accuracy": None, "validation_examples": None}
# Seeds become jax.random keys through int32 arrays (one per seed of a multi-seed run); beyond this
# they would wrap around, and above 2**32 even a single key collides with a smaller seed's.
MAX_SEED = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Choice:
    """One value of a setting that picks a part of the run (`--optimizer adamw`, `--augment shift`,
    `--network cnn`, ...): how that part is built, and which other settings it reads. Each part's
    declarations (optimizer.OPTIMIZERS, ...) are all that `mnist_jax.choices.check` needs to refuse
    a setting that none of a run's parts would read."""

    build: Callable[..., Any]
    reads: tuple[str, ...] = ()


def setting(default: Any, help: str, *, minimum: float | None = None, above: float | None = None,
            maximum: float | None = None, aliases: tuple[str, ...] = (), default_text: str | None = None,
            metavar: str | None = None) -> Any:
    """A config field with what its flag needs: help, bounds (`minimum` <= value, `above` < value,
    value <= `maximum`), other flag spellings, and how to show the default when `default_text` is
    clearer than the value."""
    return dataclasses.field(default=default, metadata={
        "help": help, "minimum": minimum, "above": above, "maximum": maximum, "aliases": aliases,
        "default_text": default_text, "metavar": metavar})


@dataclasses.dataclass(frozen=True)
class Field:
    """A config field as the command line and the checks see it."""

    name: str
    kind: type  # int, float, str, bool or Path
    optional: bool = False  # None allowed
    choices: tuple[str, ...] | None = None
    default: Any = None
    help: str = ""
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    aliases: tuple[str, ...] = ()
    default_text: str | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        """--name, or --no-name for a setting that is on unless turned off."""
        name = self.name.replace("_", "-")
        return f"--no-{name}" if self.kind is bool and self.default is True else f"--{name}"

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        return ("on" if self.default else "off") if self.kind is bool else str(self.default)

    def check(self, value: Any) -> None:
        """A ConfigError naming the field if `value` is not of its type, choices or bounds."""
        if value is None and self.optional:
            return
        number = self.kind in (int, float)
        if self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and finite(value)
        elif self.kind is Path:
            ok = isinstance(value, (str, Path)) and str(value) != ""
        else:
            ok = isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))
        if not ok:
            kind = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
                    Path: "a path"}[self.kind]
            raise ConfigError(f"{self.name} must be {kind}, got {quoted(value)}")
        if self.choices is not None and value not in self.choices:
            *others, last = self.choices
            raise ConfigError(f"{self.name} must be {', '.join(others) + ' or ' if others else ''}{last}, got {quoted(value)}")
        if number:
            if self.minimum is not None and self.maximum is not None and not self.minimum <= value <= self.maximum:
                raise ConfigError(f"{self.name} must be in {self.minimum:g} ... {self.maximum:_}, got {quoted(value)}")
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(f"{self.name} must be >= {self.minimum:g}, got {quoted(value)}")
            if self.above is not None and not value > self.above:
                raise ConfigError(f"{self.name} must be > {self.above:g}, got {quoted(value)}")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"{self.name} must be <= {self.maximum:_}, got {quoted(value)}")


@functools.cache
def fields(cls: type) -> tuple[Field, ...]:
    """The fields of a config class, with their types resolved."""
    hints = typing.get_type_hints(cls)
    described = []
    for f in dataclasses.fields(cls):
        kind, optional, choices = hints[f.name], False, None
        args = typing.get_args(kind)
        if type(None) in args:
            optional, (kind,) = True, [a for a in args if a is not type(None)]
        if typing.get_origin(kind) is Literal:
            choices, kind = typing.get_args(kind), str
        described.append(Field(f.name, kind, optional, choices, f.default, **f.metadata))
    return tuple(described)


class Checked:
    """Checks every field against its type and bounds when the object is made."""

    def __post_init__(self):
        for f in fields(type(self)):
            value = getattr(self, f.name)
            if f.kind is Path and isinstance(value, str):
                object.__setattr__(self, f.name, Path(value))
            f.check(value)

    @classmethod
    def from_dict(cls, values: Any):
        """A config saved with `dataclasses.asdict`; settings added since then take their defaults."""
        if not isinstance(values, dict):
            raise ConfigError(f"expected a mapping of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown settings {', '.join(map(str, unknown))}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class TrainConfig(Checked):
    """What a training run computes; the defaults are the notebook's."""

    dataset: DatasetName = setting("mnist", "what to train on: mnist (the notebook's, bundled) or fashion_mnist "
                                            "(Zalando's clothing, from Debian's dataset-fashion-mnist or --manual-dir)")
    epochs: int = setting(30, "passes over the training set (with --resume: up to this many in all)", minimum=1)
    stop_at_accuracy: float | None = setting(
        None, "end the run after the first epoch whose accuracy (every seed's) is at least X: the validation "
              "split's with --validation-examples, else the test set's; its final files are written as after its "
              "last epoch, and history.json says where it stopped", minimum=0, maximum=1,
        default_text="never", metavar="X")
    validation_examples: int | None = setting(
        None, "hold N training examples out, never trained on (one fixed choice, the same for every seed and sweep "
              "value, listed in history.json), evaluated each epoch: --stop-at-accuracy, the sweep's best and the "
              "unsure threshold are then chosen on them, and the test set is only reported", minimum=1,
        default_text="none", metavar="N")
    learning_rate: float = setting(1e-4, "the learning rate (a schedule's peak)", above=0, aliases=("--lr",),
                                   metavar="LR")
    optimizer: Optimizer = setting("adam", "adam (the notebook's), adamw (Adam with decoupled weight decay, "
                                           "--weight-decay) or sgd (with --momentum)")
    schedule: Schedule = setting("constant", "the learning rate over the run's steps: constant (the notebook's), "
                                             "cosine (decay to 0), warmup_cosine (a linear rise over --warmup-epochs, "
                                             "then cosine) or one_cycle (up to --lr in the first 30%, then down)")
    warmup_epochs: float = setting(1.0, "epochs of warmup_cosine's rise", minimum=0, metavar="X")
    weight_decay: float = setting(1e-4, "adamw's decoupled weight decay", minimum=0, metavar="X")
    momentum: float = setting(0.9, "sgd's momentum (0: plain SGD)", minimum=0, maximum=1, metavar="X")
    batch_size: int = setting(512, "training batch; the last short batch is kept, as in PyTorch", minimum=1)
    test_batch_size: int = setting(1024, "evaluation batch; metrics are exact over the whole test set, and a batch "
                                         "larger than the test set is the test set", minimum=1)
    seed: int = setting(0, "seed of the jax.random key: initialisation, shuffling, the digits shown",
                        minimum=0, maximum=MAX_SEED)
    seeds: int = setting(1, "train N models at once, seeds SEED ... SEED+N-1, in one program", minimum=1)
    sweep: str | None = setting(
        None, "train one model per value of a setting, all in one program (with --seeds N: N for each "
              "value): learning_rate (or lr), weight_decay or warmup_epochs, e.g. lr=1e-4,3e-4,1e-3; each value's "
              "run is written to RUN_DIR/NAME=VALUE/", default_text="none", metavar="NAME=V1,V2,...")
    train_examples: int | None = setting(None, "train on only the first N training examples (quick runs)",
                                         minimum=1, default_text="all", metavar="N")
    test_examples: int | None = setting(None, "evaluate each epoch on only the first N test examples (quick runs)",
                                        minimum=1, default_text="all", metavar="N")
    network: Network = setting("cnn", "the network: cnn, the notebook's (two 3x3 convolutions, ReLU and 2x2 max "
                                      "pooling, then one dense layer), or cnn_bn, the same with batch norm after "
                                      "each convolution and --dropout before the dense layer (mnist_jax.networks)")
    dropout: float = setting(0.25, "cnn_bn's dropout rate before its dense layer", minimum=0, maximum=0.9,
                             metavar="RATE")
    augment: Augment = setting("none", "random changes to each training batch, drawn on the device with each "
                                       "step's own key: none (the notebook's) or shift (each digit moved by up to "
                                       "--augment-shift pixels each way)")
    augment_shift: int = setting(2, "the largest shift of --augment shift, in pixels", minimum=1, maximum=8,
                                 metavar="N")
    model: ModelForm = setting("linen", "the model's Flax API: linen (the reference) or nnx, the same network, "
                                        "parameters and numbers (see mnist_jax.model_nnx)")
    conv: ConvImpl = setting("auto", "formulation of the convolutions and pooling, same parameters: auto picks the "
                                     "fastest measured for the backend (see mnist_jax.fast.kernels)")
    microbatch: int | None = setting(
        None, "compute each batch's gradient in slices of N examples, one after another, and add them up: the "
              "same result up to float rounding; auto: 32 on a CPU, where a slice's activations stay in the "
              "cache, the whole batch elsewhere", minimum=1, default_text="auto", metavar="N")
    precision: Precision = setting(
        "default", "float32 matmul precision: default is JAX's (full float32 on a CPU, TF32 on Ampere and newer "
                   "GPUs), highest is full float32 everywhere, as PyTorch", default_text="'default', JAX's own")

    def __post_init__(self):
        super().__post_init__()
        if self.microbatch is not None and self.batch_size % self.microbatch:
            raise ConfigError(f"microbatch must divide batch_size ({self.batch_size}), got {self.microbatch}")
        if self.schedule == "warmup_cosine" and not self.warmup_epochs < self.epochs:
            raise ConfigError(f"--warmup-epochs {self.warmup_epochs:g} must be shorter than the run's --epochs "
                              f"{self.epochs}: warmup_cosine rises over it and then decays")
        # The sweep, parsed once: `sweep_name` and `sweep_values`; `sweep` itself in one spelling.
        name, values = parse_sweep(self.sweep) if self.sweep is not None else (None, ())
        object.__setattr__(self, "_sweep", (name, values))
        if self.sweep is not None:
            object.__setattr__(self, "sweep", f"{name}={','.join(map(repr, values))}")
            for value in values:
                try:
                    dataclasses.replace(self, sweep=None, **{name: value})
                except ConfigError as e:
                    raise ConfigError(f"--sweep {self.sweep}: {e}") from None
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise ConfigError(f"seed must be in 0 ... {MAX_SEED:_} (and seed + seeds - 1 = "
                              f"{self.seed + self.seeds - 1}), got {self.seed}")

    @property
    def sweep_name(self) -> str | None:
        """The setting a sweep varies (learning_rate, not lr), or None."""
        return self._sweep[0]

    @property
    def sweep_values(self) -> tuple[float, ...]:
        """A sweep's values in the order given; () without a sweep."""
        return self._sweep[1]

    @property
    def models(self) -> int:
        """How many models the run trains at once: the seeds, times the sweep's values."""
        return self.seeds * max(len(self.sweep_values), 1)

    def model_configs(self) -> list[TrainConfig]:
        """The single-model config of each model the run trains, in the order of the stacked state's
        leading axis: each swept value in turn, and within it each seed."""
        swept = [{self.sweep_name: value} for value in self.sweep_values] or [{}]
        return [dataclasses.replace(self, sweep=None, seeds=1, seed=self.seed + i, **setting)
                for setting in swept for i in range(self.seeds)]


# The settings a sweep may vary: the optimizer's numbers, which its one program holds as arrays.
SWEEPABLE = ("learning_rate", "weight_decay", "warmup_epochs")
_SWEEP_ALIASES = {"lr": "learning_rate"}


def parse_sweep(spec: str) -> tuple[str, tuple[float, ...]]:
    """NAME=V1,V2,... as (setting name, values): at least two distinct numbers, in the order given."""
    name, sep, listed = spec.partition("=")
    name = _SWEEP_ALIASES.get(name.strip().replace("-", "_"), name.strip().replace("-", "_"))
    if not sep or name not in SWEEPABLE:
        raise ConfigError(f"sweep must be NAME=V1,V2,... with NAME one of {', '.join(SWEEPABLE)} (or lr), "
                          f"got {quoted(spec)}")
    try:
        values = tuple(float(v) for v in listed.split(","))
    except ValueError:
        raise ConfigError(f"sweep {name}: the values must be numbers separated by commas, got {quoted(listed)}") from None
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(f"sweep {name}: give at least two different values, got {quoted(listed)}")
    return name, values


@dataclasses.dataclass(frozen=True)
class RunOptions(Checked):
    """How this process runs a config: data, checkpoints, extra outputs, the terminal. Not saved."""

    data_dir: Path | None = setting(None, "TFDS data dir for the prepared dataset", metavar="DIR",
                                    default_text="$TFDS_DATA_DIR or ~/tensorflow_datasets")
    manual_dir: Path | None = setting(None, "your own four IDX files of the dataset (.gz or not) instead of its "
                                            "usual ones", metavar="DIR", default_text="MNIST's bundled files, "
                                            "Fashion-MNIST's in /usr/share/datasets/fashion-mnist")
    overwrite: bool = setting(False, "replace the run that the run directory holds")
    keep_checkpoints: int = setting(3, "checkpoints kept, one per epoch, newest first", minimum=1)
    figures_dir: Path | None = setting(None, "also copy the run's figures here (training.svg and classification.svg; "
                                             "training_seeds.svg for several seeds)", metavar="DIR", default_text="none")
    tensorboard: bool = setting(True, "TensorBoard event files in RUN_DIR/tensorboard/ (process 0): per epoch the "
                                      "losses, accuracies, learning rate and seconds, per step the train loss; "
                                      "--no-tensorboard leaves them out", default_text="written")
    doubts: bool = setting(True, "the run's rule of doubt, chosen as it finishes (RUN_DIR/novelty.msgpack; "
                                 "predict, the demo and the page then say \"not a digit\" or \"unsure\"): a few "
                                 "seconds a model; --no-doubts leaves it out, \"unsure\" then the top "
                                 "probability's alone", default_text="chosen")
    profile_epoch: int | None = setting(None, "write a jax.profiler trace of epoch N (its training and test "
                                              "steps) to RUN_DIR/profile/, for TensorBoard's profile view or "
                                              "Perfetto", minimum=0, default_text="none", metavar="N")
    progress: Progress = setting("auto", "a progress bar within each epoch; auto: on a CPU when stderr is a terminal "
                                         "(on a GPU an epoch takes well under a second)")
    log_interval: int | None = setting(None, "also print a line after every N training steps at most, the epoch "
                                             "in equal parts (off a terminal no bar is drawn; a second Ctrl-C "
                                             "then stops at the next line)", minimum=1, metavar="N",
                                       default_text="none")


def resume_config(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The config of a resumed run: `saved`, with the settings in `given` that a resume may change.

    A given setting that differs from the saved one and is not in RESUMABLE_CHANGES is refused.
    """
    if saved.schedule != "constant" and given.get("epochs", saved.epochs) != saved.epochs:
        raise ConfigError(f"--epochs {given['epochs']} differs from the resumed run's {saved.epochs}, over which its "
                          f"{saved.schedule} schedule runs; a scheduled run keeps its length")
    for name, value in given.items():
        if name not in RESUMABLE_CHANGES and value != getattr(saved, name):
            flag = name.replace("_", "-")
            raise ConfigError(f"--{flag} {value} differs from the resumed run's {getattr(saved, name)}; "
                              f"a resumed run keeps its settings (only {', '.join(RESUMABLE_CHANGES)} may change)")
    return dataclasses.replace(saved, **{k: v for k, v in given.items() if k in RESUMABLE_CHANGES})

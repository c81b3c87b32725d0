"""The networks that `--network` can name, each declared once with the settings it reads.

    model = NETWORKS["cnn"].model(TrainConfig())  # LinenModel(Classifier()), the notebook's CNN
    params = model.init(jax.random.key(0))
    print(model_summary(params))                  # one row per parameter array, then the total

A network is one `NetworkSpec`: how to build its `Model` from a config, and which of the settings
in NETWORK_SETTINGS it reads. Another network is a name in `config.Network`, one spec, and one
entry in NETWORKS; a setting it does not read is refused unless left at its default. What a run
trains is `mnist_jax.fast.model_for(config)`: this module's model, or its faster formulation.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping

import jax
import numpy as np

from mnist_jax.config import TrainConfig
from mnist_jax.config import fields as config_fields
from mnist_jax.errors import ConfigError
from mnist_jax.model import Classifier, LinenModel, Model, Params

# The settings that only shape the network: each network says which of them it reads.
NETWORK_SETTINGS = ("model", "conv", "precision")


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A network that `--network NAME` trains: `build` makes its `Model` from a config, reading
    only the settings of NETWORK_SETTINGS that are in `settings`."""

    name: str
    build: Callable[[TrainConfig], Model]
    settings: tuple[str, ...]

    def model(self, config: TrainConfig) -> Model:
        """`build(config)`; a ConfigError if `config` changed a setting that this network ignores."""
        for field in config_fields(TrainConfig):
            value = getattr(config, field.name)
            if field.name in NETWORK_SETTINGS and field.name not in self.settings and value != field.default:
                raise ConfigError(f"{field.flag} {value} has no effect on the {self.name} network")
        return self.build(config)


def build_cnn(config: TrainConfig) -> Model:
    """The notebook's CNN, as a linen module or its NNX twin (`--model`); `--conv` picks its
    formulation in mnist_jax.fast."""
    if config.model == "nnx":
        from mnist_jax.model_nnx import NnxModel  # on use: flax.nnx adds 0.35 s to every command's start

        return NnxModel(config.precision)
    return LinenModel(Classifier(config.precision))


CNN = NetworkSpec("cnn", build_cnn, settings=("model", "conv", "precision"))
NETWORKS: Mapping[str, NetworkSpec] = types.MappingProxyType({spec.name: spec for spec in (CNN,)})


def param_shapes(config: TrainConfig) -> Params:
    """The shapes and dtypes of `config`'s params, computing nothing."""
    return jax.eval_shape(NETWORKS[config.network].model(config).init, jax.random.key(0))


def count_params(params: Params) -> int:
    """The number of parameters: the sizes of all the arrays in `params`, any pytree."""
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))


def model_summary(params: Params) -> str:
    """One row per array of `params` (any pytree, or its `jax.ShapeDtypeStruct`s): its path, shape
    and size, then the total, as `mnist-jax train` and the notebook print it."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in leaves]
    shapes = [str(tuple(leaf.shape)) for _, leaf in leaves]
    sizes = [f"{int(np.prod(leaf.shape)):,}" for _, leaf in leaves]
    width = [max(map(len, column), default=0) for column in (names, shapes, sizes)]
    rows = [f"  {n:<{width[0]}}  {s:<{width[1]}}  {c:>{width[2]}}" for n, s, c in zip(names, shapes, sizes)]
    return "\n".join(["Model Structure", *rows, f"Total parameters: {count_params(params):,}"])

"""The networks that `--network` can name, each declared once with the settings it reads.

    model = NETWORKS["cnn"].build(TrainConfig())  # LinenModel(Classifier()), the notebook's CNN
    params = model.init(jax.random.key(0))
    print(model_summary(params))                  # one row per parameter array, then the total

A network is one entry of NETWORKS: how to build its `Model` from a config, and which settings it
reads (mnist_jax.choices refuses the others unless left at their defaults). Another network is one
entry here and its name in `config.Network`. What a run trains is `mnist_jax.fast.model_for(config)`:
this module's model, or its faster formulation.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from mnist_jax.config import Choice, TrainConfig
from mnist_jax.model import Classifier, LinenModel, Model, Params

def build_cnn(config: TrainConfig) -> Model:
    """The notebook's CNN, as a linen module or its NNX twin (`--model`); `--conv` picks its
    formulation in mnist_jax.fast."""
    if config.model == "nnx":
        from mnist_jax.model_nnx import NnxModel  # on use: flax.nnx adds 0.35 s to every command's start

        return NnxModel(config.precision)
    return LinenModel(Classifier(config.precision))


# Each network: config -> its `Model` (mnist_jax.model), and the settings it reads.
NETWORKS: Mapping[str, Choice] = {
    "cnn": Choice(build_cnn, reads=("model", "conv", "precision")),
}


def param_shapes(config: TrainConfig) -> Params:
    """The shapes and dtypes of `config`'s params, computing nothing."""
    return jax.eval_shape(NETWORKS[config.network].build(config).init, jax.random.key(0))


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

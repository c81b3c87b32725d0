"""The notebook's CNN in Flax linen, and `Model`, the two pure functions everything else calls.

conv(1->32, 3x3) - ReLU - maxpool 2 - conv(32->64, 3x3) - ReLU - maxpool 2 - flatten - dense(1600->10),
34,826 parameters, initialised as PyTorch's defaults so that the learning curve follows the notebook's.

    model = LinenModel(Classifier())          # the CNN of mnist_jax.networks.NETWORKS["cnn"]
    params = model.init(jax.random.key(0))    # {"conv1": {"kernel", "bias"}, "conv2": ..., "linear": ...}
    logits = model.apply(params, images)      # images: uint8 (N, 28, 28, 1), as the dataset holds them

This is the reference. mnist_jax.fast computes the same network faster (its convolutions as
matmuls, with hand-written gradients on a CPU) and is tested against it; mnist_jax.model_nnx is its
Flax NNX twin; mnist_jax.networks declares the networks that `--network` names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.config import Precision

Params = Mapping[str, Any]

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def to_float(images: jax.Array) -> jax.Array:
    """uint8 pixels to the model's input, floats in [0, 1], as torchvision's `ToTensor`."""
    return images.astype(jnp.float32) / 255.0


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default for Conv2d and Linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def matmul_precision(precision: Precision) -> jax.lax.Precision | None:
    """`--precision` as the layers take it; None keeps JAX's default (TF32 on recent NVIDIA GPUs)."""
    return None if precision == "default" else jax.lax.Precision(precision)


class Classifier(nn.Module):
    """The notebook's `Classifier`, NHWC (PyTorch's is NCHW)."""

    precision: Precision = "default"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        precision = matmul_precision(self.precision)
        for name, features in (("conv1", 32), ("conv2", 64)):
            init = torch_uniform(3 * 3 * x.shape[-1])
            x = nn.Conv(features, (3, 3), padding="VALID", precision=precision, kernel_init=init, bias_init=init,
                        name=name)(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order, where PyTorch flattens (C, H, W)
        init = torch_uniform(x.shape[-1])
        return nn.Dense(NUM_CLASSES, precision=precision, kernel_init=init, bias_init=init, name="linear")(x)


class Model(Protocol):
    """What training, evaluation and prediction need of a model: pure functions of its params.

    A network that keeps running statistics (batch norm's) holds them in its params beside its
    weights, as PyTorch's `state_dict` does: {"params": ..., "batch_stats": ...}; the optimizer's
    update leaves them alone and each train step replaces them with what `train_apply` returns.
    """

    def init(self, key: jax.Array) -> Params:
        """Fresh parameters, drawn from `key`."""

    def apply(self, params: Params, images: jax.Array, *, train: bool = False,
              key: jax.Array | None = None) -> jax.Array:
        """Logits (N, 10) of uint8 images (N, 28, 28, 1), as evaluation and prediction see them;
        `train` with a `key` as a train step sees them (dropout drawn from the key)."""

    def train_apply(self, params: Params, images: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]:
        """A train step's logits (`key`: that step's own draws, such as dropout's mask) and the
        running statistics that the batch updates ({} for a network without)."""


def _variables(params: Params) -> Params:
    """Flax's variables from a model's params: the network's weights, and its statistics if it keeps any."""
    return params if "params" in params else {"params": params}


@dataclasses.dataclass(frozen=True)
class LinenModel:
    """`Model` for a linen module that maps [0, 1] float images and a `train` flag to logits;
    hashable, so that jitted programs can take it as a static argument."""

    module: nn.Module

    def init(self, key: jax.Array) -> Params:
        variables = self.module.init(key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))
        return variables["params"] if set(variables) == {"params"} else dict(variables)

    def apply(self, params: Params, images: jax.Array, *, train: bool = False,
              key: jax.Array | None = None) -> jax.Array:
        if train and "params" in params:  # training mode updates the statistics: here they are dropped
            return self.train_apply(params, images, key)[0]
        rngs = None if key is None else {"dropout": key}
        return self.module.apply(_variables(params), to_float(images), train=train, rngs=rngs)

    def train_apply(self, params: Params, images: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]:
        variables = _variables(params)
        statistics = [collection for collection in variables if collection != "params"]
        if not statistics:
            return self.module.apply(variables, to_float(images), train=True, rngs={"dropout": key}), {}
        logits, updated = self.module.apply(variables, to_float(images), train=True, rngs={"dropout": key},
                                            mutable=statistics)
        return logits, dict(updated)

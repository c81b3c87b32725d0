"""The notebook's CNN in Flax linen, and `Model`, the two pure functions everything else calls.

conv(1->32, 3x3) - ReLU - maxpool 2 - conv(32->64, 3x3) - ReLU - maxpool 2 - flatten - dense(1600->10),
34,826 parameters, initialised as PyTorch's defaults so that the learning curve follows the notebook's.

    model = LinenModel(Classifier())          # what mnist_jax.networks.model_for(TrainConfig()) returns
    params = model.init(jax.random.key(0))    # {"conv1": {"kernel", "bias"}, "conv2": ..., "linear": ...}
    logits = model.apply(params, images)      # images: uint8 (N, 28, 28, 1), as the dataset holds them

The convolution's formulations live in mnist_jax.fast.kernels, the NNX twin in mnist_jax.model_nnx, the
choice of network from a config in mnist_jax.networks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.config import ConvImpl, Precision
from mnist_jax.fast.kernels import Formulation, conv_relu_pool, matmul_precision, resolve_conv_impl

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


class ConvReluPool(nn.Module):
    """conv 3x3 (VALID, with bias) - ReLU - 2x2 max pool; `kernel` and `bias` as `nn.Conv`'s,
    initialised as PyTorch's `Conv2d`, computed in the formulation `impl` (mnist_jax.fast.kernels)."""

    features: int
    impl: Formulation
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = 3 * 3 * x.shape[-1]
        kernel = self.param("kernel", torch_uniform(fan_in), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        return conv_relu_pool(x, kernel, bias, self.impl, self.precision)


class Classifier(nn.Module):
    """The notebook's `Classifier`, NHWC. `conv` picks the formulation of the convolutions and
    pooling ("auto": the fastest measured on the backend) and `precision` the float32 matmul
    precision; neither changes the parameters or the forward's numbers beyond float rounding."""

    conv: ConvImpl = "auto"
    precision: Precision = "default"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        impl, precision = resolve_conv_impl(self.conv), matmul_precision(self.precision)
        x = ConvReluPool(32, impl, precision, name="conv1")(x)
        x = ConvReluPool(64, impl, precision, name="conv2")(x)
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order, where PyTorch flattens (C, H, W)
        init = torch_uniform(x.shape[-1])
        return nn.Dense(NUM_CLASSES, name="linear", precision=precision, kernel_init=init, bias_init=init)(x)


class Model(Protocol):
    """What training, evaluation and prediction need of a model: pure functions of its params."""

    def init(self, key: jax.Array) -> Params:
        """Fresh parameters, drawn from `key`."""

    def apply(self, params: Params, images: jax.Array) -> jax.Array:
        """Logits (N, 10) of uint8 images (N, 28, 28, 1)."""


@dataclasses.dataclass(frozen=True)
class LinenModel:
    """`Model` for a linen module that maps [0, 1] float images to logits; hashable, so that jitted
    programs can take it as a static argument."""

    module: nn.Module

    def init(self, key: jax.Array) -> Params:
        return self.module.init(key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))["params"]

    def apply(self, params: Params, images: jax.Array) -> jax.Array:
        return self.module.apply({"params": params}, to_float(images))

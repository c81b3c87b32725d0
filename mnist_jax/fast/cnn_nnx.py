"""The NNX CNN (mnist_jax.model_nnx) in the faster formulations of mnist_jax.fast.kernels: the
same parameters, and the same numbers as mnist_jax.fast.cnn's linen forms."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from mnist_jax.fast.kernels import Formulation, conv_relu_pool
from mnist_jax.model import NUM_CLASSES, Model, matmul_precision, torch_uniform
from mnist_jax.model_nnx import NnxModel


class NnxConvReluPool(nnx.Module):
    def __init__(self, in_features: int, features: int, impl: Formulation, precision: Any, *, rngs: nnx.Rngs):
        fan_in = 3 * 3 * in_features
        self.kernel = nnx.Param(torch_uniform(fan_in)(rngs.params(), (3, 3, in_features, features)))
        self.bias = nnx.Param(torch_uniform(fan_in)(rngs.params(), (features,)))
        self.impl, self.precision = impl, precision

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv_relu_pool(x, self.kernel[...], self.bias[...], self.impl, self.precision)


class NnxClassifier(nnx.Module):
    """mnist_jax.model_nnx.Classifier with its convolutions and pooling in the formulation `impl`."""

    def __init__(self, impl: Formulation, precision: str = "default", *, rngs: nnx.Rngs):
        matmul = matmul_precision(precision)
        self.conv1 = NnxConvReluPool(1, 32, impl, matmul, rngs=rngs)
        self.conv2 = NnxConvReluPool(32, 64, impl, matmul, rngs=rngs)
        self.linear = nnx.Linear(1600, NUM_CLASSES, precision=matmul, kernel_init=torch_uniform(1600),
                                 bias_init=torch_uniform(1600), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv2(self.conv1(x))
        return self.linear(x.reshape(x.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class FastNnxModel(NnxModel):
    """`NnxModel` of `NnxClassifier`."""

    impl: Formulation = "custom_vjp"

    def module(self, rngs: nnx.Rngs) -> nnx.Module:
        return NnxClassifier(self.impl, self.precision, rngs=rngs)


def nnx_cnn(impl: Formulation, precision: str) -> Model:
    """The NNX CNN in the formulation `impl` ("xla": mnist_jax.model_nnx's own)."""
    return NnxModel(precision) if impl == "xla" else FastNnxModel(precision, impl)

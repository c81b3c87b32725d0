"""The notebook's CNN in the faster formulations of mnist_jax.fast.kernels: the same parameters,
the same numbers up to float rounding as mnist_jax.model (tests/test_fast.py); the NNX forms are in
mnist_jax.fast.cnn_nnx.

    model = fast_cnn(TrainConfig())      # on a CPU "auto" is "custom_vjp": what the bundled run trained
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from mnist_jax.config import TrainConfig
from mnist_jax.fast.kernels import (Formulation, conv_as_matmul, conv_im2col, conv_relu_pool, inference_slice,
                                    max_pool_2x2, max_pool_first, resolve_conv_impl)
from mnist_jax.model import NUM_CLASSES, LinenModel, Model, matmul_precision, torch_uniform
from mnist_jax.model import Classifier as Reference
from mnist_jax.networks import NormalizedClassifier as NormalizedReference


class ConvReluPool(nn.Module):
    """conv 3x3 (VALID, with bias) - ReLU - 2x2 max pool in the formulation `impl`; `kernel` and
    `bias` as `nn.Conv`'s, drawn in the same order, so the params are the reference's."""

    features: int
    impl: Formulation
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, slice_size: int | None = None) -> jax.Array:
        fan_in = 3 * 3 * x.shape[-1]
        kernel = self.param("kernel", torch_uniform(fan_in), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        return conv_relu_pool(x, kernel, bias, self.impl, self.precision, slice_size)


class Classifier(nn.Module):
    """mnist_jax.model.Classifier with its convolutions and pooling in the formulation `impl`."""

    impl: Formulation
    precision: str = "default"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        precision = matmul_precision(self.precision)
        slice_size = None if train else inference_slice(self.impl)  # training's slices: mnist_jax.fast.programs
        x = ConvReluPool(32, self.impl, precision, name="conv1")(x, slice_size)
        x = ConvReluPool(64, self.impl, precision, name="conv2")(x, slice_size)
        x = x.reshape(x.shape[0], -1)
        init = torch_uniform(x.shape[-1])
        return nn.Dense(NUM_CLASSES, name="linear", precision=precision, kernel_init=init, bias_init=init)(x)


class Conv(nn.Module):
    """A 3x3 VALID convolution without bias in the formulation `impl`; `kernel` as `nn.Conv`'s."""

    features: int
    impl: Formulation

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", torch_uniform(3 * 3 * x.shape[-1]), (3, 3, x.shape[-1], self.features))
        if self.impl == "custom_vjp":
            return conv_im2col(x, kernel)
        return conv_as_matmul(x, kernel)


class NormalizedClassifier(nn.Module):
    """mnist_jax.networks.NormalizedClassifier with its convolutions and pooling in the formulation
    `impl` ("matmul" or "custom_vjp"); the same params and statistics."""

    impl: Formulation
    dropout: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        pool = max_pool_first if self.impl == "custom_vjp" else max_pool_2x2
        for name, features in (("conv1", 32), ("conv2", 64)):
            x = Conv(features, self.impl, name=name)(x)
            x = pool(nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"{name}_norm")(x)))
        x = nn.Dropout(self.dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
        init = torch_uniform(x.shape[-1])
        return nn.Dense(NUM_CLASSES, kernel_init=init, bias_init=init, name="linear")(x)


def fast_cnn_bn(config: TrainConfig) -> Model:
    """cnn_bn in the formulation its `conv` names ("xla": mnist_jax.networks' own)."""
    impl = resolve_conv_impl(config.conv)
    if impl == "xla":
        return LinenModel(NormalizedReference(config.dropout))
    return LinenModel(NormalizedClassifier(impl, config.dropout))


def fast_cnn(config: TrainConfig) -> Model:
    """The CNN of `config` in the formulation its `conv` names ("auto": the fastest measured on
    this backend); "xla" is the reference, mnist_jax.model itself."""
    impl = resolve_conv_impl(config.conv)
    if config.model == "nnx":
        from mnist_jax.fast.cnn_nnx import nnx_cnn  # on use: flax.nnx adds 0.35 s to every command's start

        return nnx_cnn(impl, config.precision)
    return LinenModel(Reference(config.precision) if impl == "xla" else Classifier(impl, config.precision))


def evaluation_slice(config: TrainConfig) -> int | None:
    """How many images at a time `config`'s model takes outside training (None: the whole batch):
    the linen CNN's im2col formulations on a CPU take 32 (`kernels.inference_slice`)."""
    if config.network != "cnn" or config.model != "linen":
        return None
    return inference_slice(resolve_conv_impl(config.conv))

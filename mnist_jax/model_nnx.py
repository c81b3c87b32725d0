"""The notebook's CNN written with Flax NNX, beside the linen one in mnist_jax.model.

    from flax import nnx
    from mnist_jax.model_nnx import Classifier
    classifier = Classifier(rngs=nnx.Rngs(0))           # a stateful object, as PyTorch's
    logits = classifier(images)                          # float images in [0, 1], (N, 28, 28, 1)
    params = to_params(classifier)                      # {"conv1": {"kernel", "bias"}, ...}, linen's layout

The same layers, parameter names and shapes as the linen `Classifier`, so one params file serves
both, and the same formulations of the convolutions (`conv`) and precision. Training, evaluation
and prediction call it through `NnxModel` (the `Model` seam of mnist_jax.model): `nnx.merge` of its
graph with the params inside each pure function, so that the same jitted steps train either form.

Which to pick: linen (the default, `--model linen`) keeps the module apart from its params, as
this project's pure steps do; NNX (`--model nnx`) holds them in the object, as PyTorch does, and
is what Flax's documentation now starts new users with. Both train to the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from mnist_jax.config import ConvImpl, Precision
from mnist_jax.fast.kernels import Formulation, conv_relu_pool, matmul_precision, resolve_conv_impl
from mnist_jax.model import NUM_CLASSES, LinenModel, Params, to_float, torch_uniform
from mnist_jax.model import Classifier as LinenClassifier


class ConvReluPool(nnx.Module):
    """conv 3x3 (VALID, with bias) - ReLU - 2x2 max pool; `kernel` and `bias` as linen's."""

    def __init__(self, in_features: int, features: int, impl: Formulation, precision: Any, *, rngs: nnx.Rngs):
        fan_in = 3 * 3 * in_features
        self.kernel = nnx.Param(torch_uniform(fan_in)(rngs.params(), (3, 3, in_features, features)))
        self.bias = nnx.Param(torch_uniform(fan_in)(rngs.params(), (features,)))
        self.impl, self.precision = impl, precision

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv_relu_pool(x, self.kernel[...], self.bias[...], self.impl, self.precision)


class Classifier(nnx.Module):
    """The notebook's `Classifier` in NNX, NHWC."""

    def __init__(self, conv: ConvImpl = "auto", precision: Precision = "default", *, rngs: nnx.Rngs):
        impl, matmul = resolve_conv_impl(conv), matmul_precision(precision)
        self.conv1 = ConvReluPool(1, 32, impl, matmul, rngs=rngs)
        self.conv2 = ConvReluPool(32, 64, impl, matmul, rngs=rngs)
        self.linear = nnx.Linear(1600, NUM_CLASSES, precision=matmul, kernel_init=torch_uniform(1600),
                                 bias_init=torch_uniform(1600), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv2(self.conv1(x))
        return self.linear(x.reshape(x.shape[0], -1))


def to_params(classifier: Classifier) -> Params:
    """The NNX model's parameters as linen's params dict (the layout params.msgpack holds)."""
    return nnx.to_pure_dict(nnx.state(classifier, nnx.Param))


def with_params(classifier: Classifier, params: Params) -> Classifier:
    """`classifier` with `params` (linen's layout) in place of its own; returns it."""
    state = nnx.state(classifier, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(classifier, state)
    return classifier


@dataclasses.dataclass(frozen=True)
class NnxModel:
    """`Model` for the NNX `Classifier`: pure `init` and `apply` over linen-layout params, hashable
    (by its settings), so that the jitted programs can take it as a static argument."""

    conv: ConvImpl = "auto"
    precision: Precision = "default"

    def init(self, key: jax.Array) -> Params:
        # Drawn as the linen module draws them, so that both forms start from the same numbers.
        return LinenModel(LinenClassifier(self.conv, self.precision)).init(key)

    def apply(self, params: Params, images: jax.Array) -> jax.Array:
        graph, state = nnx.split(nnx.eval_shape(lambda: Classifier(self.conv, self.precision, rngs=nnx.Rngs(0))))
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graph, state)(to_float(images))

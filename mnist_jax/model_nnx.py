"""The notebook's CNN written with Flax NNX, beside the linen one in mnist_jax.model.

    from flax import nnx
    from mnist_jax.model_nnx import Classifier
    classifier = Classifier(rngs=nnx.Rngs(0))           # a stateful object, as PyTorch's
    logits = classifier(images)                          # float images in [0, 1], (N, 28, 28, 1)
    params = to_params(classifier)                      # {"conv1": {"kernel", "bias"}, ...}, linen's layout

The same layers, parameter names and shapes as the linen `Classifier`, so one params file serves
both. Training, evaluation and prediction call it through `NnxModel` (the `Model` seam of
mnist_jax.model): `nnx.merge` of its graph with the params inside each pure function, so that the
same jitted steps train either form; mnist_jax.fast.cnn has its faster formulations.

Which to pick: linen (the default, `--model linen`) keeps the module apart from its params, as
this project's pure steps do; NNX (`--model nnx`) holds them in the object, as PyTorch does, and
is what Flax's documentation now starts new users with. Both train to the same numbers.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from mnist_jax.config import Precision
from mnist_jax.model import NUM_CLASSES, LinenModel, Params, matmul_precision, to_float, torch_uniform
from mnist_jax.model import Classifier as LinenClassifier


class Classifier(nnx.Module):
    """The notebook's `Classifier` in NNX, NHWC."""

    def __init__(self, precision: Precision = "default", *, rngs: nnx.Rngs):
        matmul = matmul_precision(precision)

        def conv(cin: int, cout: int) -> nnx.Conv:
            init = torch_uniform(3 * 3 * cin)
            return nnx.Conv(cin, cout, (3, 3), padding="VALID", precision=matmul, kernel_init=init,
                            bias_init=init, rngs=rngs)

        self.conv1, self.conv2 = conv(1, 32), conv(32, 64)
        self.linear = nnx.Linear(1600, NUM_CLASSES, precision=matmul, kernel_init=torch_uniform(1600),
                                 bias_init=torch_uniform(1600), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in (self.conv1, self.conv2):
            x = nnx.max_pool(nnx.relu(conv(x)), (2, 2), strides=(2, 2))
        return self.linear(x.reshape(x.shape[0], -1))


def to_params(classifier: nnx.Module) -> Params:
    """The NNX model's parameters as linen's params dict (the layout params.msgpack holds)."""
    return nnx.to_pure_dict(nnx.state(classifier, nnx.Param))


def with_params(classifier: nnx.Module, params: Params) -> nnx.Module:
    """`classifier` with `params` (linen's layout) in place of its own; returns it."""
    state = nnx.state(classifier, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(classifier, state)
    return classifier


@dataclasses.dataclass(frozen=True)
class NnxModel:
    """`Model` for the NNX `Classifier`: pure `init` and `apply` over linen-layout params, hashable
    (by its settings), so that the jitted programs can take it as a static argument."""

    precision: Precision = "default"

    def module(self, rngs: nnx.Rngs) -> nnx.Module:
        return Classifier(self.precision, rngs=rngs)

    def init(self, key: jax.Array) -> Params:
        # Drawn as the linen module draws them, so that both forms start from the same numbers.
        return LinenModel(LinenClassifier(self.precision)).init(key)

    def apply(self, params: Params, images: jax.Array, *, train: bool = False,
              key: jax.Array | None = None) -> jax.Array:
        graph, state = nnx.split(nnx.eval_shape(lambda: self.module(nnx.Rngs(0))))
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graph, state)(to_float(images))

    def train_apply(self, params: Params, images: jax.Array, key: jax.Array) -> tuple[jax.Array, Params]:
        return self.apply(params, images, train=True, key=key), {}  # no dropout, no statistics

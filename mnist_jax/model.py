"""The notebook's CNN as a Flax linen module, and the seam through which everything else calls it.

conv(1->32, 3x3) - ReLU - maxpool 2 - conv(32->64, 3x3) - ReLU - maxpool 2 - flatten - dense(1600->10),
34,826 parameters, initialised like PyTorch's defaults so the learning curve follows the notebook's.

    from mnist_jax.model import model_for
    model = model_for(TrainConfig())          # a LinenModel around Classifier()
    params = model.init(jax.random.key(0))
    logits = model.apply(params, images)      # images: uint8 (N, 28, 28, 1), as the dataset holds them

Training, evaluation, prediction and the figures call a model only through `init` and `apply`
(the `Model` protocol), so another model family plugs in by implementing those two and being
returned by `model_for`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.config import ConvImpl, Precision, TrainConfig

Params = Mapping[str, Any]

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10

# The formulation that trains fastest on each backend (same parameters, float32 throughout):
# - CPU: "custom_vjp". On 2 AMD EPYC (Zen) cores a 512-batch train step takes ~0.20 s against
#   0.27 s for "matmul" and ~8 s for "xla" (benchmarks/step_speed.py; docs/measurements.md).
# - GPU: "matmul": on an H200 a prototype of this model measured 0.046 s per epoch against 0.070 s
#   with cuDNN's convolutions ("xla").
# - TPU (and anything else): "xla", for the native convolution units.
_CONV_BY_BACKEND = {"cpu": "custom_vjp", "gpu": "matmul", "cuda": "matmul", "rocm": "matmul"}


def to_float(images: jax.Array) -> jax.Array:
    """uint8 pixels to the model's input, floats in [0, 1], as torchvision's `ToTensor`."""
    return images.astype(jnp.float32) / 255.0


def conv_as_matmul(x: jax.Array, kernel: jax.Array, precision: Any = None) -> jax.Array:
    """A VALID convolution, stride 1 (NHWC x HWIO), as one matmul: the kh*kw shifted slices of the
    input side by side on the channel axis (im2col), times the kernel as (kh*kw*in, out)."""
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    # One 2-D matmul: as a 4-D dot_general, XLA:CPU computed the weight gradient 2-8x slower.
    out = jnp.dot(_patches(x, kh, kw).reshape(-1, kh * kw * cin), kernel.reshape(-1, cout), precision=precision)
    return out.reshape(n, h - kh + 1, w - kw + 1, cout)


def _patches(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """(N, H, W, C) -> (N, H-kh+1, W-kw+1, kh*kw*C): the kh*kw shifted windows side by side (im2col)."""
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return jnp.concatenate([x[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)], axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_im2col(x: jax.Array, kernel: jax.Array, precision: Any = None) -> jax.Array:
    """A 3x3 VALID convolution (NHWC x HWIO) as one matmul, with hand-written gradients: the
    kernel's from the forward's own patches, the input's as a transposed `lax.conv`, which XLA:CPU
    ran faster here than the matmul's gradient and its 9 shifted sums (50 against 68 ms for conv2)."""
    return conv_as_matmul(x, kernel, precision)


def _conv_im2col_fwd(x, kernel, precision):
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    patches = _patches(x, kh, kw).reshape(-1, kh * kw * cin)
    out = jnp.dot(patches, kernel.reshape(-1, cout), precision=precision)
    return out.reshape(n, h - kh + 1, w - kw + 1, cout), (patches, kernel)


def _conv_im2col_bwd(precision, residuals, dy):
    patches, kernel = residuals
    kh, kw, cin, cout = kernel.shape
    dkernel = jnp.dot(patches.T, dy.reshape(-1, cout), precision=precision).reshape(kernel.shape)
    # The input's gradient: the full convolution of dy with the kernel flipped. Unused for the first
    # layer (its input is the images), where XLA drops it from the program.
    padded = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    dx = jax.lax.conv_general_dilated(padded, kernel[::-1, ::-1].transpose(0, 1, 3, 2), (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
    return dx, dkernel


conv_im2col.defvjp(_conv_im2col_fwd, _conv_im2col_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, floor mode (PyTorch's `MaxPool2d(2)`), as maxima of strided slices.

    XLA:CPU runs `reduce_window` very slowly inside `lax.scan`; this form also measured 11% faster
    per train step than reshape + max (142 -> 127 ms per 512-batch on 2 cores).
    """
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    rows = jnp.maximum(x[:, 0:h:2, :w], x[:, 1:h:2, :w])
    return jnp.maximum(rows[:, :, 0::2], rows[:, :, 1::2])


def _window_quarters(x: jax.Array) -> tuple[jax.Array, ...]:
    """The four elements of every 2x2 window (floor mode), in PyTorch's scan order."""
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    return x[:, 0:h:2, 0:w:2], x[:, 0:h:2, 1:w:2], x[:, 1:h:2, 0:w:2], x[:, 1:h:2, 1:w:2]


@jax.custom_vjp
def max_pool_first(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, floor mode, whose gradient goes to the first maximum of each window,
    as PyTorch's `MaxPool2d` gives it (the strided maxima's autodiff splits ties in halves). Ties are
    common here: MNIST's blank background makes whole windows equal."""
    a, b, c, d = _window_quarters(x)
    return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _max_pool_first_fwd(x):
    a, b, c, d = _window_quarters(x)
    y = jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))
    # Which of the four is the first maximum, one byte per output: the backward reads this, not x.
    first = jnp.where(a == y, 0, jnp.where(b == y, 1, jnp.where(c == y, 2, 3))).astype(jnp.int8)
    return y, (first, x.shape)


def _max_pool_first_bwd(residuals, dy):
    first, shape = residuals
    n, h2, w2, c = first.shape
    window = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)  # 0 1 / 2 3, as the quarters
    dx = jnp.where(first[:, :, None, :, None, :] == window, dy[:, :, None, :, None, :], 0)
    dx = dx.reshape(n, 2 * h2, 2 * w2, c)
    return (jnp.pad(dx, ((0, 0), (0, shape[1] - 2 * h2), (0, shape[2] - 2 * w2), (0, 0))),)


max_pool_first.defvjp(_max_pool_first_fwd, _max_pool_first_bwd)


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default for Conv2d and Linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def resolve_conv_impl(conv: ConvImpl, backend: str | None = None) -> Literal["matmul", "custom_vjp", "xla"]:
    """The convolution formulation to use: `conv` itself, or for "auto" the measured best on `backend`."""
    if conv != "auto":
        return conv
    return _CONV_BY_BACKEND.get(backend or jax.default_backend(), "xla")  # type: ignore[return-value]


def matmul_precision(precision: Precision) -> jax.lax.Precision | None:
    """`TrainConfig.precision` as what `jnp.dot` and `lax.conv` take; None keeps JAX's default."""
    return None if precision == "default" else jax.lax.Precision(precision)


class ConvReluPool(nn.Module):
    """conv 3x3 (VALID, with bias) - ReLU - 2x2 max pool, parameters `kernel` and `bias` as
    `nn.Conv`'s, initialised as PyTorch's `Conv2d`. `impl` is the formulation (see `Classifier`)."""

    features: int
    impl: Literal["matmul", "custom_vjp", "xla"]
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = 3 * 3 * x.shape[-1]
        kernel = self.param("kernel", torch_uniform(fan_in), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        if self.impl == "custom_vjp":
            # Pooled before the bias and ReLU, which commute with the maximum (the same numbers, bit
            # for bit): the two passes over the large pre-pooling map become passes over a quarter.
            return nn.relu(max_pool_first(conv_im2col(x, kernel, self.precision)) + bias)
        if self.impl == "matmul":
            return max_pool_2x2(nn.relu(conv_as_matmul(x, kernel, self.precision) + bias))
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=self.precision)
        return nn.max_pool(nn.relu(y + bias), (2, 2), strides=(2, 2))


class Classifier(nn.Module):
    """The notebook's `Classifier`, NHWC. `conv` picks the formulation of the convolutions and
    pooling ("matmul": im2col and one matmul, maxima of strided slices; "custom_vjp": the same
    matmuls with hand-written gradients, pooling first; "xla": `lax.conv` and `nn.max_pool`;
    "auto": the fastest measured on the backend) and `precision` the float32 matmul precision;
    neither changes the parameters or the forward's numbers beyond float rounding."""

    conv: ConvImpl = "auto"
    precision: Precision = "default"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        impl, precision = resolve_conv_impl(self.conv), matmul_precision(self.precision)
        x = ConvReluPool(32, impl, precision, name="conv1")(x)
        x = ConvReluPool(64, impl, precision, name="conv2")(x)
        x = x.reshape(x.shape[0], -1)  # (H, W, C) order; params_from_torch permutes PyTorch's (C, H, W)
        return nn.Dense(
            NUM_CLASSES, name="linear", precision=precision,
            kernel_init=torch_uniform(x.shape[-1]), bias_init=torch_uniform(x.shape[-1]),
        )(x)


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


def model_for(config: TrainConfig) -> Model:
    """The model that `config` trains: the linen `Classifier`, or its NNX twin (mnist_jax.model_nnx)."""
    if config.model == "nnx":
        from mnist_jax.model_nnx import NnxModel  # it imports this module

        return NnxModel(config.conv, config.precision)
    return LinenModel(Classifier(conv=config.conv, precision=config.precision))


def param_shapes(config: TrainConfig) -> Params:
    """The shapes and dtypes of `config`'s params, computing nothing."""
    return jax.eval_shape(model_for(config).init, jax.random.key(0))


def count_params(params: Params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))


def model_summary(params: Params) -> str:
    """The layer listing the notebook prints as `print(model)`, with parameter counts."""
    c1, c2, lin = params["conv1"]["kernel"].shape, params["conv2"]["kernel"].shape, params["linear"]["kernel"].shape

    def n(name: str) -> str:
        return f"{count_params(params[name]):,} params"

    pool = "MaxPool(kernel_size=2, stride=2, padding=0)"
    lines = [
        "Model Structure",
        "Classifier(",
        f"  (conv1): Conv({c1[2]}, {c1[3]}, kernel_size={c1[:2]}, stride=(1, 1), padding=VALID)  {n('conv1')}",
        "  (relu1): ReLU()",
        f"  (maxpool1): {pool}",
        f"  (conv2): Conv({c2[2]}, {c2[3]}, kernel_size={c2[:2]}, stride=(1, 1), padding=VALID)  {n('conv2')}",
        "  (relu2): ReLU()",
        f"  (maxpool2): {pool}",
        "  (flatten): Flatten()",
        f"  (linear): Dense(in_features={lin[0]}, out_features={lin[1]}, bias=True)  {n('linear')}",
        ")",
        f"Total parameters: {count_params(params):,}",
    ]
    return "\n".join(lines)


def params_from_torch(state_dict: Mapping[str, Any]) -> Params:
    """Flax params equal to the notebook model's PyTorch `state_dict` (names -> numpy arrays).

    Conv weights go OIHW -> HWIO. PyTorch flattens (C, H, W) and Flax here (H, W, C), so the
    linear weight's 1600 inputs are permuted to match.
    """
    missing = [f"{layer}.{p}" for layer in ("conv1", "conv2", "linear") for p in ("weight", "bias")
               if f"{layer}.{p}" not in state_dict]
    if missing:
        raise KeyError(f"state_dict lacks {', '.join(missing)} (expected the notebook's Classifier)")

    def arr(name: str) -> np.ndarray:
        return np.asarray(state_dict[name], dtype=np.float32)

    def conv(prefix: str) -> dict[str, jax.Array]:
        return {"kernel": jnp.asarray(arr(f"{prefix}.weight").transpose(2, 3, 1, 0)), "bias": jnp.asarray(arr(f"{prefix}.bias"))}

    linear_w = arr("linear.weight")  # (10, C*H*W)
    channels = arr("conv2.weight").shape[0]
    side = int(math.isqrt(linear_w.shape[1] // channels))
    kernel = linear_w.reshape(-1, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, linear_w.shape[0])
    return {
        "conv1": conv("conv1"),
        "conv2": conv("conv2"),
        "linear": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(arr("linear.bias"))},
    }

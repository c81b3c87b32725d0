"""The formulations of the CNN's convolution, ReLU and pooling: the same numbers, computed three ways.

    y = conv_relu_pool(x, kernel, bias, resolve_conv_impl("auto"), jax.lax.Precision.HIGHEST)

- "matmul": im2col and one 2-D matmul per convolution, pooling as maxima of strided slices;
- "custom_vjp": the same matmuls with hand-written gradients, pooling (PyTorch's tie rule) first;
- "xla": `lax.conv` and `lax.reduce_window`, what `nn.Conv` and `nn.max_pool` compute (the
  reference, mnist_jax.model).

The fast CNN's linen and NNX forms (mnist_jax.fast.cnn) both call `conv_relu_pool`, so they cannot
drift apart. Arrays are NHWC, kernels HWIO, as Flax's; docs/measurements.md has the timings.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp

from mnist_jax.config import ConvImpl

Formulation = Literal["matmul", "custom_vjp", "xla"]

# The formulation that trains fastest on each backend (same parameters, float32 throughout):
# - CPU: "custom_vjp". On 2 AMD EPYC (Zen) cores a 512-batch train step takes ~0.20 s against
#   0.27 s for "matmul" and ~8 s for "xla" (benchmarks/step_speed.py; docs/measurements.md).
# - GPU: "matmul": on an H200 a prototype of this model measured 0.046 s per epoch against 0.070 s
#   with cuDNN's convolutions ("xla").
# - TPU (and anything else): "xla", for the native convolution units.
CONV_BY_BACKEND = {"cpu": "custom_vjp", "gpu": "matmul", "cuda": "matmul", "rocm": "matmul"}

# Evaluation and prediction on a CPU run the im2col formulations 32 images at a time: a larger
# batch's patches leave the cache (a 1024-image forward took 180 us an image whole, 47 in slices
# of 32 on 2 AMD EPYC Zen 4 cores), each image's numbers the same bits there.
INFERENCE_SLICE_BY_BACKEND = {"cpu": 32}

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def resolve_conv_impl(conv: ConvImpl, backend: str | None = None) -> Formulation:
    """The convolution formulation to use: `conv` itself, or for "auto" the measured best on `backend`."""
    if conv != "auto":
        return conv
    return CONV_BY_BACKEND.get(backend or jax.default_backend(), "xla")  # type: ignore[return-value]


def inference_slice(impl: Formulation, backend: str | None = None) -> int | None:
    """How many images at a time `conv_relu_pool` should take outside training (None: all at once)."""
    return None if impl == "xla" else INFERENCE_SLICE_BY_BACKEND.get(backend or jax.default_backend())


def conv_relu_pool(x: jax.Array, kernel: jax.Array, bias: jax.Array, impl: Formulation,
                   precision: Any = None, slice_size: int | None = None) -> jax.Array:
    """conv (VALID, stride 1) + bias - ReLU - 2x2 max pool, in the formulation `impl`; `slice_size`
    images at a time where given (`lax.map`, the batch padded to a multiple)."""
    n = x.shape[0]
    if slice_size and isinstance(n, int) and n > slice_size:  # not where the batch is symbolic (export)
        padded = jnp.pad(x, ((0, -n % slice_size), *[(0, 0)] * (x.ndim - 1)))
        y = jax.lax.map(lambda part: conv_relu_pool(part, kernel, bias, impl, precision),
                        padded.reshape(-1, slice_size, *x.shape[1:]))
        return y.reshape(-1, *y.shape[2:])[:n]
    if impl == "custom_vjp":
        # Pooled before the bias and ReLU, which commute with the maximum (the same numbers, bit
        # for bit): the two passes over the large pre-pooling map become passes over a quarter.
        return jax.nn.relu(max_pool_first(conv_im2col(x, kernel, precision)) + bias)
    if impl == "matmul":
        return max_pool_2x2(jax.nn.relu(conv_as_matmul(x, kernel, precision) + bias))
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMENSIONS, precision=precision)
    return max_pool_xla(jax.nn.relu(y + bias))


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
                                      dimension_numbers=_DIMENSIONS, precision=precision)
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


def max_pool_xla(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, floor mode, as XLA's `reduce_window`: what `flax.linen.max_pool`
    computes, forward and gradient, for TPUs' native pooling."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


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

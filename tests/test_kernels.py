"""The formulations of mnist_jax.fast.kernels compute the convolution's and pooling's own numbers and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax.fast.compiling import quick_jit
from mnist_jax.fast.kernels import (conv_as_matmul, conv_im2col, conv_relu_pool, inference_slice, max_pool_2x2,
                                    max_pool_first, max_pool_xla, resolve_conv_impl)

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Test inputs from a seeded NumPy generator: an eager jax.random call compiles a program for each
    new shape (0.8-1.5 s each on 2 Zen 4 cores), which is most of this file's time otherwise."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def uniform(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def lax_conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=DIMENSIONS, precision="highest")


def test_matmul_formulation_equals_lax_conv_and_max_pool():
    x = uniform(1, (4, 13, 13, 32))
    kernel = normal(2, (3, 3, 32, 64))
    expected = quick_jit(lax_conv)(x, kernel)
    got = quick_jit(lambda x, k: conv_as_matmul(x, k, precision="highest"))(x, kernel)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(quick_jit(lambda x, k: conv_im2col(x, k, jax.lax.Precision.HIGHEST))(x, kernel), got)
    # Odd sizes floor, as PyTorch's MaxPool2d(2) does on the 11x11 map.
    y = normal(3, (2, 11, 11, 8))
    strided = quick_jit(max_pool_2x2)(y)
    np.testing.assert_array_equal(strided, quick_jit(lambda y: nn.max_pool(y, (2, 2), strides=(2, 2)))(y))
    np.testing.assert_array_equal(quick_jit(max_pool_first)(y), strided)


def test_the_xla_pooling_is_linens_max_pool_bit_for_bit():
    """The xla formulation of both the linen and the NNX module pools so; linen's used `nn.max_pool`."""
    y = jnp.round(normal(3, (2, 11, 11, 8)))  # rounded: tied windows too
    g = normal(6, (2, 5, 5, 8))
    linen = lambda y: nn.max_pool(y, (2, 2), strides=(2, 2))  # noqa: E731
    np.testing.assert_array_equal(quick_jit(max_pool_xla)(y), quick_jit(linen)(y))
    vjp = quick_jit(lambda pool, y, g: jax.vjp(pool, y)[1](g)[0], static_argnums=0)
    np.testing.assert_array_equal(vjp(max_pool_xla, y, g), vjp(linen, y, g))


def test_the_hand_written_gradients_are_the_convolutions_and_poolings_own():
    x = uniform(1, (4, 13, 13, 32))
    kernel = normal(2, (3, 3, 32, 64))
    dy = normal(5, (4, 11, 11, 64))

    def vjp(conv):
        return quick_jit(lambda x, k, dy: jax.vjp(conv, x, k)[1](dy))(x, kernel, dy)

    want = vjp(lax_conv)
    got = vjp(lambda x, k: conv_im2col(x, k, jax.lax.Precision.HIGHEST))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
    # Without ties (random values) every formulation of pooling passes each window's gradient to its maximum.
    y = normal(3, (2, 11, 11, 8))
    g = normal(6, (2, 5, 5, 8))
    pool_vjp = quick_jit(lambda pool, y, g: jax.vjp(pool, y)[1](g)[0], static_argnums=0)
    np.testing.assert_array_equal(pool_vjp(max_pool_first, y, g), pool_vjp(max_pool_2x2, y, g))
    np.testing.assert_array_equal(pool_vjp(max_pool_xla, y, g), pool_vjp(max_pool_2x2, y, g))


def test_pooling_gives_a_tied_windows_gradient_to_its_first_maximum_as_pytorch():
    """MNIST's blank background makes whole windows equal; PyTorch's MaxPool2d passes the gradient to
    the first of them (top left, then along the row), not half to each as the maxima's autodiff."""
    x = jnp.array([[0.0, 0.0, 1.0, 2.0, 0.5], [0.0, 0.0, 2.0, 2.0, 0.5], [3.0, 1.0, 4.0, 4.0, 9.0]])[None, :, :, None]
    dx = jax.vjp(max_pool_first, x)[1](jnp.array([[10.0, 20.0]])[None, :, :, None])[0][0, :, :, 0]
    np.testing.assert_array_equal(dx, [[10, 0, 0, 20, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])


def test_every_formulation_of_conv_relu_pool_gives_the_same_numbers_and_gradients():
    x = uniform(1, (4, 13, 13, 8))
    kernel = normal(2, (3, 3, 8, 16)) / 5
    bias = normal(3, (16,)) / 5

    def value_and_grads(impl):
        f = lambda x, k, b: conv_relu_pool(x, k, b, impl, jax.lax.Precision.HIGHEST)  # noqa: E731
        return quick_jit(lambda x, k, b: jax.value_and_grad(lambda *a: (f(*a) ** 2).sum(), argnums=(0, 1, 2))(x, k, b))(
            x, kernel, bias)

    want_y, want_grads = value_and_grads("xla")
    for impl in ("matmul", "custom_vjp"):
        y, grads = value_and_grads(impl)
        np.testing.assert_allclose(y, want_y, rtol=1e-5)
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


@pytest.mark.parametrize("impl", ["matmul", "custom_vjp"])
def test_a_batch_taken_in_slices_is_the_whole_batchs(impl):
    """Evaluation on a CPU takes 32 images at a time (`inference_slice`): each image's numbers are
    those of the batch taken whole, the last slice padded (70 images: 32, 32 and 6). Bit for bit on
    the 2 AMD EPYC (Zen 4) cores measured; another CPU's matmul library may add up in another order."""
    x = uniform(1, (70, 13, 13, 32))
    kernel, bias = normal(2, (3, 3, 32, 64)) / 10, normal(3, (64,)) / 10
    layer = quick_jit(lambda x, size: conv_relu_pool(x, kernel, bias, impl, None, size), static_argnums=1)
    whole, sliced = layer(x, None), layer(x, 32)
    assert sliced.shape == whole.shape == (70, 5, 5, 64)
    np.testing.assert_allclose(sliced, whole, rtol=1e-6, atol=1e-7)
    assert inference_slice(impl, "cpu") == 32 and inference_slice(impl, "gpu") is None
    assert inference_slice("xla", "cpu") is None  # lax.conv keeps its own batching


@pytest.mark.parametrize(("backend", "want"), [("cpu", "custom_vjp"), ("gpu", "matmul"), ("cuda", "matmul"),
                                               ("rocm", "matmul"), ("tpu", "xla")])
def test_auto_picks_the_formulation_measured_fastest_on_the_backend(backend, want):
    assert resolve_conv_impl("auto", backend) == want
    assert resolve_conv_impl("xla", backend) == "xla"  # an explicit choice stays


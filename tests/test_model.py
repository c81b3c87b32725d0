import math
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.model import (Classifier, LinenModel, conv_as_matmul, conv_im2col, count_params, matmul_precision,
                             max_pool_2x2, max_pool_first, model_for, model_summary, params_from_torch)

FIXTURE = Path(__file__).parent / "fixtures" / "torch_parity.npz"


FORMULATIONS = ["matmul", "custom_vjp", "xla"]


@pytest.mark.parametrize("conv", FORMULATIONS)
def test_output_shape_and_parameter_count(conv):
    model = Classifier(conv=conv)
    params = jax.jit(LinenModel(model).init)(jax.random.key(0))
    assert count_params(params) == 34_826
    logits = jax.jit(model.apply)({"params": params}, jnp.zeros((5, 28, 28, 1)))
    assert logits.shape == (5, 10)
    assert "Total parameters: 34,826" in model_summary(params)


def test_matmul_formulation_equals_lax_conv_and_max_pool():
    x = jax.random.uniform(jax.random.key(1), (4, 13, 13, 32))
    kernel = jax.random.normal(jax.random.key(2), (3, 3, 32, 64))
    dims = ("NHWC", "HWIO", "NHWC")
    expected = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=dims,
                                                                 precision="highest"))(x, kernel)
    got = jax.jit(lambda x, k: conv_as_matmul(x, k, precision="highest"))(x, kernel)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(jax.jit(lambda x, k: conv_im2col(x, k, jax.lax.Precision.HIGHEST))(x, kernel), got)
    # Odd sizes floor, as PyTorch's MaxPool2d(2) does on the 11x11 map.
    y = jax.random.normal(jax.random.key(3), (2, 11, 11, 8))
    strided = jax.jit(max_pool_2x2)(y)
    np.testing.assert_array_equal(strided, jax.jit(lambda y: nn.max_pool(y, (2, 2), strides=(2, 2)))(y))
    np.testing.assert_array_equal(jax.jit(max_pool_first)(y), strided)


def test_the_hand_written_gradients_are_the_convolutions_and_poolings_own():
    x = jax.random.uniform(jax.random.key(1), (4, 13, 13, 32))
    kernel = jax.random.normal(jax.random.key(2), (3, 3, 32, 64))
    dy = jax.random.normal(jax.random.key(5), (4, 11, 11, 64))
    def vjp(conv):
        return jax.jit(lambda x, k, dy: jax.vjp(conv, x, k)[1](dy))(x, kernel, dy)

    want = vjp(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", precision="highest",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
    got = vjp(lambda x, k: conv_im2col(x, k, jax.lax.Precision.HIGHEST))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
    # Without ties (random values) every formulation of pooling passes each window's gradient to its maximum.
    y = jax.random.normal(jax.random.key(3), (2, 11, 11, 8))
    g = jax.random.normal(jax.random.key(6), (2, 5, 5, 8))
    pool_vjp = jax.jit(lambda pool, y, g: jax.vjp(pool, y)[1](g)[0], static_argnums=0)
    np.testing.assert_array_equal(pool_vjp(max_pool_first, y, g), pool_vjp(max_pool_2x2, y, g))


def test_pooling_gives_a_tied_windows_gradient_to_its_first_maximum_as_pytorch():
    """MNIST's blank background makes whole windows equal; PyTorch's MaxPool2d passes the gradient to
    the first of them (top left, then along the row), not half to each as the maxima's autodiff."""
    x = jnp.array([[0.0, 0.0, 1.0, 2.0, 0.5], [0.0, 0.0, 2.0, 2.0, 0.5], [3.0, 1.0, 4.0, 4.0, 9.0]])[None, :, :, None]
    dx = jax.vjp(max_pool_first, x)[1](jnp.array([[10.0, 20.0]])[None, :, :, None])[0][0, :, :, 0]
    np.testing.assert_array_equal(dx, [[10, 0, 0, 20, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("conv", ["matmul", "custom_vjp"])
def test_every_formulation_gives_the_same_logits(conv):
    params = jax.jit(LinenModel(Classifier(conv="xla")).init)(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(4), (8, 28, 28, 1))
    # Pinned to full float32: under TF32 (a GPU's default) the two would differ by more than rounding.
    a = jax.jit(Classifier(conv="xla", precision="highest").apply)({"params": params}, x)
    b = jax.jit(Classifier(conv=conv, precision="highest").apply)({"params": params}, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_initialisation_is_pytorch_default_uniform():
    params = jax.jit(LinenModel(Classifier()).init)(jax.random.key(0))
    fan_in = {"conv1": 9, "conv2": 288, "linear": 1600}
    for layer, n in fan_in.items():
        bound = 1 / math.sqrt(n)
        for name in ("kernel", "bias"):
            p = np.asarray(params[layer][name])
            assert np.abs(p).max() <= bound, (layer, name)
            if p.size >= 64:  # large enough to see the full range and the flat spread
                assert np.abs(p).max() > 0.9 * bound, (layer, name)
                assert abs(p.std() - bound / math.sqrt(3)) < 0.15 * bound, (layer, name)


def test_params_from_torch_reproduces_pytorch_logits():
    fixture = np.load(FIXTURE)
    params = params_from_torch({k: fixture[k] for k in fixture.files})
    images = fixture["images_nchw"].transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    for conv in FORMULATIONS:  # PyTorch's CPU matmuls are full float32: compare at the highest precision
        logits = jax.jit(Classifier(conv=conv, precision="highest").apply)({"params": params}, images)
        np.testing.assert_allclose(logits, fixture["logits"], atol=1e-5, rtol=0)
    assert "torch" not in sys.modules


def test_params_from_torch_names_a_missing_weight():
    with pytest.raises(KeyError, match="conv1.weight"):
        params_from_torch({})


@pytest.mark.parametrize("conv", FORMULATIONS)
def test_precision_reaches_every_matmul_and_the_config_builds_the_model(conv):
    """On a CPU every precision computes the same numbers, so only the program shows it; on a GPU a
    matmul left at the default would run in TF32."""
    assert matmul_precision("default") is None
    assert matmul_precision("highest") == jax.lax.Precision.HIGHEST
    assert matmul_precision("high") == jax.lax.Precision.HIGH
    model = model_for(TrainConfig(conv=conv, precision="highest"))
    assert model == LinenModel(Classifier(conv=conv, precision="highest"))
    params = jax.jit(model.init)(jax.random.key(0))
    images = jnp.zeros((2, 28, 28, 1), jnp.uint8)
    jaxpr = str(jax.make_jaxpr(model.apply)(params, images))
    # Both convolutions and the dense layer carry the precision; nothing is left at the default.
    assert jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == 3, jaxpr
    default = str(jax.make_jaxpr(model_for(TrainConfig(conv=conv)).apply)(params, images))
    assert "Precision.HIGHEST" not in default
    # And every matmul and convolution of the gradient, the hand-written ones included.
    grad = str(jax.make_jaxpr(jax.grad(lambda p: model.apply(p, images).sum()))(params))
    ops = grad.count("dot_general[") + grad.count("conv_general_dilated[")
    assert ops >= 8 and grad.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == ops, grad


def test_the_nnx_twin_has_linens_parameters_and_gives_its_logits(mnist):
    from flax import nnx

    from mnist_jax import model_nnx

    params = jax.jit(model_for(TrainConfig()).init)(jax.random.key(3))
    images = mnist["test"][0][:16]
    for conv in FORMULATIONS:
        linen, twin = model_for(TrainConfig(conv=conv, precision="highest")), model_nnx.NnxModel(conv, "highest")
        np.testing.assert_allclose(jax.jit(twin.apply)(params, images), jax.jit(linen.apply)(params, images),
                                   rtol=1e-5, atol=1e-6)
    # Both ways between the NNX object and linen's params dict, shapes and names alike.
    classifier = model_nnx.Classifier(rngs=nnx.Rngs(0))
    own = model_nnx.to_params(classifier)
    assert jax.tree_util.tree_map(np.shape, own) == jax.tree_util.tree_map(np.shape, params)
    model_nnx.with_params(classifier, params)
    for a, b in zip(jax.tree_util.tree_leaves(model_nnx.to_params(classifier)), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
    # Called as an object (jitted: eagerly, each of its ops would compile alone).
    logits = nnx.jit(lambda module, x: module(x))(classifier, images.astype(np.float32) / 255)
    np.testing.assert_allclose(logits, jax.jit(linen.apply)(params, images), rtol=1e-4, atol=1e-5)
    assert model_for(TrainConfig(model="nnx")) == model_nnx.NnxModel()
    # The NNX form starts where the linen form does: the same initial params for the same key.
    for a, b in zip(jax.tree_util.tree_leaves(jax.jit(model_nnx.NnxModel().init)(jax.random.key(3))),
                    jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)

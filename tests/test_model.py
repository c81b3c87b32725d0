import math
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax.config import TrainConfig
from mnist_jax.model import (Classifier, classifier_for, conv_as_matmul, count_params, init_params, matmul_precision,
                             max_pool_2x2, model_summary, params_from_torch)

FIXTURE = Path(__file__).parent / "fixtures" / "torch_parity.npz"


@pytest.mark.parametrize("conv", ["matmul", "xla"])
def test_output_shape_and_parameter_count(conv):
    model = Classifier(conv=conv)
    params = init_params(model, jax.random.key(0))
    assert count_params(params) == 34_826
    logits = model.apply({"params": params}, jnp.zeros((5, 28, 28, 1)))
    assert logits.shape == (5, 10)
    assert "Total parameters: 34,826" in model_summary(params)


def test_matmul_formulation_equals_lax_conv_and_max_pool():
    x = jax.random.uniform(jax.random.key(1), (4, 13, 13, 32))
    kernel = jax.random.normal(jax.random.key(2), (3, 3, 32, 64))
    dims = ("NHWC", "HWIO", "NHWC")
    expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=dims,
                                            precision="highest")
    got = conv_as_matmul(x, kernel, (1, 1), "VALID", dimension_numbers=dims, precision="highest")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Odd sizes floor, as PyTorch's MaxPool2d(2) does on the 11x11 map.
    y = jax.random.normal(jax.random.key(3), (2, 11, 11, 8))
    np.testing.assert_array_equal(max_pool_2x2(y), nn.max_pool(y, (2, 2), strides=(2, 2)))


def test_both_formulations_give_the_same_logits():
    params = init_params(Classifier(conv="xla"), jax.random.key(0))
    x = jax.random.uniform(jax.random.key(4), (8, 28, 28, 1))
    # Pinned to full float32: under TF32 (a GPU's default) the two would differ by more than rounding.
    a = Classifier(conv="xla", precision="highest").apply({"params": params}, x)
    b = Classifier(conv="matmul", precision="highest").apply({"params": params}, x)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_initialisation_is_pytorch_default_uniform():
    params = init_params(Classifier(), jax.random.key(0))
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
    for conv in ("matmul", "xla"):  # PyTorch's CPU matmuls are full float32: compare at the highest precision
        logits = Classifier(conv=conv, precision="highest").apply({"params": params}, images)
        np.testing.assert_allclose(logits, fixture["logits"], atol=1e-5, rtol=0)
    assert "torch" not in sys.modules


def test_params_from_torch_names_a_missing_weight():
    with pytest.raises(KeyError, match="conv1.weight"):
        params_from_torch({})


def test_precision_reaches_every_matmul_and_the_config_builds_the_model():
    assert matmul_precision("default") is None
    assert matmul_precision("highest") == jax.lax.Precision.HIGHEST
    assert matmul_precision("high") == jax.lax.Precision.HIGH
    model = classifier_for(TrainConfig(conv="xla", precision="highest"))
    assert model == Classifier(conv="xla", precision="highest")
    params = init_params(model, jax.random.key(0))
    jaxpr = str(jax.make_jaxpr(lambda x: model.apply({"params": params}, x))(jnp.zeros((2, 28, 28, 1))))
    # Both convolutions and the dense layer carry the precision; nothing is left at the default.
    assert jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == 3, jaxpr
    default = str(jax.make_jaxpr(lambda x: Classifier().apply({"params": params}, x))(jnp.zeros((2, 28, 28, 1))))
    assert "Precision.HIGHEST" not in default

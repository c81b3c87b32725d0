"""The linen `Classifier` and its NNX twin: the notebook's layers, PyTorch's initialisation, one set of numbers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import init_params

from mnist_jax import model_nnx
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.model import Classifier, LinenModel

SHAPES = {"conv1": {"kernel": (3, 3, 1, 32), "bias": (32,)}, "conv2": {"kernel": (3, 3, 32, 64), "bias": (64,)},
          "linear": {"kernel": (1600, 10), "bias": (10,)}}


def test_the_notebooks_layers_and_output_shape():
    model = Classifier()
    params = init_params(LinenModel(model))
    assert jax.tree_util.tree_map(np.shape, params) == SHAPES  # 34,826 parameters
    logits = quick_jit(model.apply)({"params": params}, jnp.zeros((5, 28, 28, 1)))
    assert logits.shape == (5, 10)


def test_the_layers_compute_what_the_notebook_writes(mnist):
    """conv - ReLU - 2x2 max pool, twice, then the linear layer, written out in numpy from the params."""
    params = init_params(LinenModel(Classifier("highest")), 1)
    images = mnist["test"][0][:4]
    x = images.astype(np.float64) / 255
    for layer in ("conv1", "conv2"):
        kernel, bias = (np.asarray(params[layer][k], np.float64) for k in ("kernel", "bias"))
        h, w = x.shape[1] - 2, x.shape[2] - 2
        y = sum(np.einsum("nhwc,co->nhwo", x[:, i:i + h, j:j + w], kernel[i, j]) for i in range(3) for j in range(3))
        y = np.maximum(y + bias, 0)[:, :h // 2 * 2, :w // 2 * 2]
        x = y.reshape(y.shape[0], h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))
    want = x.reshape(len(x), -1) @ np.asarray(params["linear"]["kernel"]) + np.asarray(params["linear"]["bias"])
    got = LinenModel(Classifier("highest")).apply(params, images)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form", ["linen", "nnx"])
def test_initialisation_is_pytorch_default_uniform(form):
    """Both the linen module's draw and the NNX object's own (`Classifier(rngs=...)`) follow PyTorch."""
    if form == "linen":
        params = init_params(LinenModel(Classifier()))
    else:  # the object drawn in one program: eagerly, each of its draws would compile alone (3 s on 2 cores)
        params = quick_jit(lambda: model_nnx.to_params(model_nnx.Classifier(rngs=nnx.Rngs(0))), random_numbers=True)()
    assert jax.tree_util.tree_map(np.shape, params) == SHAPES
    fan_in = {"conv1": 9, "conv2": 288, "linear": 1600}
    for layer, n in fan_in.items():
        bound = 1 / math.sqrt(n)
        for name in ("kernel", "bias"):
            p = np.asarray(params[layer][name])
            assert p.dtype == np.float32 and np.abs(p).max() <= bound, (layer, name)
            if p.size >= 64:  # large enough to see the full range and the flat spread
                assert np.abs(p).max() > 0.9 * bound, (layer, name)
                assert abs(p.std() - bound / math.sqrt(3)) < 0.15 * bound, (layer, name)
    # Every array is a draw of its own: no two layers or kernels share numbers.
    firsts = [float(np.ravel(p)[0]) for p in jax.tree_util.tree_leaves(params)]
    assert len(set(firsts)) == len(firsts)


def test_the_nnx_twin_has_linens_parameters_and_gives_its_logits(mnist):
    params = init_params(LinenModel(Classifier()), 3)
    images = mnist["test"][0][:16]
    linen, twin = LinenModel(Classifier("highest")), model_nnx.NnxModel("highest")
    np.testing.assert_allclose(quick_jit(twin.apply)(params, images), quick_jit(linen.apply)(params, images),
                               rtol=1e-5, atol=1e-6)
    # Both ways between the NNX object and linen's params dict, shapes and names alike.
    classifier = nnx.eval_shape(lambda: model_nnx.Classifier(rngs=nnx.Rngs(0)))  # its shapes, nothing drawn
    own = model_nnx.to_params(classifier)
    assert jax.tree_util.tree_map(np.shape, own) == jax.tree_util.tree_map(np.shape, params)
    model_nnx.with_params(classifier, params)
    for a, b in zip(jax.tree_util.tree_leaves(model_nnx.to_params(classifier)), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
    # Called as an object (jitted: eagerly, each of its ops would compile alone).
    logits = nnx.jit(lambda module, x: module(x))(classifier, images.astype(np.float32) / 255)
    np.testing.assert_allclose(logits, quick_jit(linen.apply)(params, images), rtol=1e-4, atol=1e-5)


def test_the_nnx_model_starts_where_the_linen_model_does():
    """`NnxModel.init` draws through the linen module, so `--model nnx` trains from the same numbers
    as linen for the same seed (the NNX object's own draw is checked in the initialisation test)."""
    linen = init_params(LinenModel(Classifier()), 3)
    twin = init_params(model_nnx.NnxModel(), 3)
    assert jax.tree_util.tree_structure(twin) == jax.tree_util.tree_structure(linen)
    for a, b in zip(jax.tree_util.tree_leaves(twin), jax.tree_util.tree_leaves(linen)):
        np.testing.assert_array_equal(a, b)

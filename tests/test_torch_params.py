"""The notebook's PyTorch weights, converted, give PyTorch's logits (tests/fixtures/torch_parity.npz)."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mnist_jax.model import Classifier
from mnist_jax.torch_params import params_from_torch

FIXTURE = Path(__file__).parent / "fixtures" / "torch_parity.npz"


def test_params_from_torch_reproduces_pytorch_logits():
    fixture = np.load(FIXTURE)
    params = params_from_torch({k: fixture[k] for k in fixture.files})
    images = fixture["images_nchw"].transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    for conv in ["matmul", "custom_vjp", "xla"]:  # PyTorch's CPU matmuls are full float32: compare at the highest
        logits = jax.jit(Classifier(conv=conv, precision="highest").apply)({"params": params}, images)
        np.testing.assert_allclose(logits, fixture["logits"], atol=1e-5, rtol=0)
    assert "torch" not in sys.modules


def test_params_from_torch_names_a_missing_weight():
    with pytest.raises(KeyError, match="conv1.weight"):
        params_from_torch({})

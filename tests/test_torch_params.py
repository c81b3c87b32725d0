"""The notebook's PyTorch weights, converted, give PyTorch's logits (tests/fixtures/torch_parity.npz)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_jax.apps.torch_params import params_from_torch
from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for
from mnist_jax.fast.compiling import quick_jit

FIXTURE = Path(__file__).parent / "fixtures" / "torch_parity.npz"


def test_params_from_torch_reproduces_pytorch_logits():
    fixture = np.load(FIXTURE)
    params = params_from_torch({k: fixture[k] for k in fixture.files})
    images = fixture["images_nchw"].transpose(0, 2, 3, 1)
    for conv in ["matmul", "custom_vjp", "xla"]:  # PyTorch's CPU matmuls are full float32: compare at the highest
        logits = quick_jit(model_for(TrainConfig(conv=conv, precision="highest")).apply)(params, images)
        np.testing.assert_allclose(logits, fixture["logits"], atol=1e-5, rtol=0)


def test_converting_needs_no_torch():
    """In a fresh process (this one may have imported torch through another test's library)."""
    code = ("import sys, numpy as np; from mnist_jax.apps.torch_params import params_from_torch; "
            f"f = np.load({str(FIXTURE)!r}); params_from_torch({{k: f[k] for k in f.files}}); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "False\n", result.stderr


def test_params_from_torch_names_a_missing_weight():
    with pytest.raises(KeyError, match="conv1.weight"):
        params_from_torch({})

"""The notebook's PyTorch weights as this package's params, without importing torch.

    state = {name: t.numpy() for name, t in torch_model.state_dict().items()}
    params = params_from_torch(state)     # for mnist_jax.model.Classifier, linen or NNX alike
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.model import Params


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
        return {"kernel": jnp.asarray(arr(f"{prefix}.weight").transpose(2, 3, 1, 0)),
                "bias": jnp.asarray(arr(f"{prefix}.bias"))}

    linear_w = arr("linear.weight")  # (10, C*H*W)
    channels = arr("conv2.weight").shape[0]
    side = int(math.isqrt(linear_w.shape[1] // channels))
    kernel = linear_w.reshape(-1, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, linear_w.shape[0])
    return {
        "conv1": conv("conv1"),
        "conv2": conv("conv2"),
        "linear": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(arr("linear.bias"))},
    }

"""The same numbers, sooner: the convolution's faster formulations (`kernels`, `cnn`), the compiled
programs of a run (`programs`: gradient slices, the models' axis, progress chunks, the cache) and
the devices (`parallel`). Each is tested against the core (mnist_jax.model, mnist_jax.steps).

    model = model_for(TrainConfig())     # the model a config trains, as every command builds it
"""

from __future__ import annotations

import mnist_jax
from mnist_jax import networks
from mnist_jax.config import TrainConfig
from mnist_jax.fast.cnn import fast_cnn, fast_cnn_bn
from mnist_jax.model import Model
from mnist_jax.networks import NETWORKS, count_params, model_summary, param_shapes  # noqa: F401 (mnist_jax.models)

__getattr__ = mnist_jax.lazy_submodules(__name__, __path__)

# The networks with faster formulations here, and how to build them from a config.
FASTER = {"cnn": fast_cnn, "cnn_bn": fast_cnn_bn}


def model_for(config: TrainConfig) -> Model:
    """The model that `config` trains: its network (mnist_jax.networks), in the formulation that
    `--conv` names where the network has faster ones (auto: the fastest measured on this backend)."""
    if config.network in FASTER:
        return FASTER[config.network](config)
    return networks.NETWORKS[config.network].build(config)

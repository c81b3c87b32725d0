"""mnist-jax: the PyTorch MNIST notebook in pure-functional JAX/Flax.

The core, lowest first: config, history (every number of an epoch, declared once), sweep (which
model of a sweep is which), kernels (the convolution's formulations), model (the CNN and the
`Model` seam), model_nnx (its Flax NNX twin),
models (the model a config trains, any params' summary), datasets (their declarations), data
(through TFDS), augment, optimizer, steps (pure train and eval steps), hooks, parallel, loop (the
training loop). Around it: torch_params (the notebook's PyTorch weights), checkpoints, rundir (a
run directory), memory, console, summaries (TensorBoard), profiling, inference, plotting,
experiment (a whole run, as `mnist-jax train`), images, drawing (a drawing made MNIST-like in JAX),
export, web (the model on a static web page), demo, environment, cli. Each imports only
modules before it.

`import mnist_jax` is instant: a submodule is imported when first used, so
`mnist_jax.rundir.load_run(...)` works after `import mnist_jax` alone.
"""

import importlib
import pkgutil

__version__ = "0.2.0"

_SUBMODULES = frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"mnist_jax.{name}")
    raise AttributeError(f"module 'mnist_jax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES])

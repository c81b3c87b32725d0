"""mnist-jax: the PyTorch MNIST notebook in pure-functional JAX/Flax.

Modules, each one concern, lower ones first: errors, config, files; model, data; train (pure steps),
history, parallel, checkpoints, runs, inference, images, plotting; trainer (the loop); runtime,
console, benchmark and cli (the `mnist-jax` command). `import mnist_jax` is instant: a module is
imported when first used, so `mnist_jax.runs.load_run(...)` works after `import mnist_jax` alone.
"""

import importlib

_MODULES = ("benchmark", "checkpoints", "cli", "config", "console", "data", "errors", "files", "history", "images",
            "inference", "model", "parallel", "plotting", "runs", "runtime", "train", "trainer")


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"mnist_jax.{name}")
    raise AttributeError(f"module 'mnist_jax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODULES])

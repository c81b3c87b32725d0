"""A run's lifecycle: the training loop with its hooks (`loop`), a whole run in a run directory
(`experiment`), the run directory and its files (`rundir`, `history`, `checkpoints`), and the checks
and facts around them (`memory`, `environment`)."""

import mnist_jax

__getattr__ = mnist_jax.lazy_submodules(__name__, __path__)

"""The same numbers, sooner: the convolution's faster formulations (`kernels`, `cnn`), the compiled
programs of a run (`programs`: gradient slices, the models' axis, progress chunks, the cache) and
the devices (`parallel`). Each is tested against the core (mnist_jax.model, mnist_jax.steps)."""

import mnist_jax

__getattr__ = mnist_jax.lazy_submodules(__name__, __path__)

"""mnist-jax: the PyTorch MNIST notebook in pure-functional JAX/Flax. Modules: model, data, train, plotting, runs."""

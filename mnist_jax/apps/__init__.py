"""What uses a trained model: `inference` (classify, unsure), `explain` (integrated gradients),
`images` and `drawing` (any picture or drawing to an MNIST-like digit), `plotting` (the figures),
`export` (jax.export, ONNX), `web` (the static page), `demo` (the drawing pad), `torch_params`."""

import mnist_jax

__getattr__ = mnist_jax.lazy_submodules(__name__, __path__)

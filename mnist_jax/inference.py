"""Apply a trained model: class probabilities and predictions of uint8 digit images.

    from mnist_jax import images, inference, runs
    config, _, params = runs.load_run("runs/20261129-223500")
    digit = images.load_image("my_digit.png")                  # uint8 (28, 28, 1), MNIST-style
    for label, p in inference.top_k(inference.classify(params, digit[None])[0]):
        print(label, p)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.model import NUM_CLASSES, Classifier, Params
from mnist_jax.train import padded_batches, to_float


def probabilities(params: Params, images: jax.Array, *, model: Classifier, batch_size: int) -> jax.Array:
    """Class probabilities (N, 10) of uint8 images, computed `batch_size` at a time."""
    indices, _ = padded_batches(jnp.arange(images.shape[0]), batch_size)

    def step(carry: None, idx: jax.Array) -> tuple[None, jax.Array]:
        return None, jax.nn.softmax(model.apply({"params": params}, to_float(images[idx])), -1)

    _, probs = jax.lax.scan(step, None, indices)
    return probs.reshape(-1, NUM_CLASSES)[: images.shape[0]]


def predict(params: Params, images: jax.Array, model: Classifier) -> jax.Array:
    """Predicted classes of uint8 images."""
    return jnp.argmax(model.apply({"params": params}, to_float(images)), -1)


_probabilities = jax.jit(probabilities, static_argnames=("model", "batch_size"))


def classify(params: Params, images: np.ndarray, model: Classifier | None = None, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28, 1), at most `batch_size` at a time."""
    return np.asarray(_probabilities(params, jnp.asarray(images), model=model or Classifier(),
                                     batch_size=min(len(images), batch_size)))


def top_k(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The k most probable classes of one image, most probable first."""
    order = np.argsort(probabilities)[::-1][:k]
    return [(int(c), float(probabilities[c])) for c in order]

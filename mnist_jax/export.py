"""A trained classifier as a file that runs without mnist_jax or Flax: a `jax.export` artifact.

    mnist-jax export --out classifier.jaxexport              # the bundled weights
    mnist-jax export runs/quick --out quick.jaxexport --output logits

    import jax, numpy as np                                  # anywhere, with jax alone:
    exported = jax.export.deserialize(open("classifier.jaxexport", "rb").read())
    probabilities = exported.call(np.zeros((5, 28, 28, 1), np.uint8))   # (5, 10)

The artifact is serialized StableHLO with the params inside it, for any batch size (the batch
dimension is symbolic): uint8 images (N, 28, 28, 1) in, the ten class probabilities (or logits)
out, as float32. It runs on the platform it was exported on (`jax.default_backend()`); pass
`platforms` for others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp

from mnist_jax.model import IMAGE_SHAPE, Model, Params

Output = Literal["probabilities", "logits"]


def export_classifier(params: Params, model: Model, output: Output = "probabilities",
                      platforms: Sequence[str] | None = None) -> bytes:
    """The serialized `jax.export.Exported` of `model` with `params`: uint8 images (N, 28, 28, 1),
    N any, to float32 (N, 10) probabilities or logits."""
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def classify(images: jax.Array) -> jax.Array:
        logits = model.apply(params, images)
        return jax.nn.softmax(logits, -1) if output == "probabilities" else logits

    (batch,) = jax.export.symbolic_shape("batch")
    images = jax.ShapeDtypeStruct((batch, *IMAGE_SHAPE), jnp.uint8)
    return jax.export.export(jax.jit(classify), platforms=platforms)(images).serialize()

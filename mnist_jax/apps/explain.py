"""Why the model read a digit as it did: integrated gradients of a class's logit over the pixels.

    from mnist_jax.apps import explain, images
    from mnist_jax.run import rundir
    from mnist_jax.fast import model_for
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    digits = images.load_image("my_digit.png")[None]              # uint8 (N, 28, 28, 1)
    explained = explain.explain(params, digits, model_for(config))
    explained.attributions[0, 0]      # (28, 28): evidence for the top class, pixel by pixel

Integrated gradients (Sundararajan, Taly and Yan, 2017): a pixel's attribution is its value times
the class logit's gradient averaged along the straight path from a baseline (the blank digit, all
zeros: MNIST's background) to the picture. The attributions of a picture add up to its logit less
the blank digit's (completeness), up to the error of averaging over `steps` points (the midpoint
rule); a positive one is evidence for the class, a negative one against it. The path points go
through one jitted program in batches of a bounded size: JAX's `grad` of the logits, with respect
to the input, under `vmap`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.fast.compiling import quick_jit
from mnist_jax.model import Model, Params

# Steps of the path average. A ReLU network's gradient is piecewise constant along the path; at 64
# midpoints the bundled model's attributions add up to the logit difference within 1% on test digits
# (tests/test_explain.py), and one picture costs 64 forward and backward passes.
STEPS = 64


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The top classes of N pictures and the attributions of their logits to the pixels."""

    classes: np.ndarray  # (N, K) the K most probable classes of each picture, most probable first
    probabilities: np.ndarray  # (N, K) their probabilities
    attributions: np.ndarray  # (N, K, 28, 28) each class's integrated gradients, in logit units
    logit_gain: np.ndarray  # (N, K) each class's logit on the picture less its logit on the blank digit
    all_probabilities: np.ndarray  # (N, classes) every class's probability


# Path points per program: each holds the network's activations and their gradients, so a bound
# on them bounds the memory whatever the pictures, classes and steps (all of them in one batch:
# 33 pictures, 2 classes, 64 steps peaked at 9.1 GB on a CPU).
POINTS_PER_BATCH = 256


@quick_jit(static_argnames="model")
def _path_gradient_sums(params: Params, pictures: jax.Array, classes: jax.Array, alphas: jax.Array,
                        weights: jax.Array, *, model: Model) -> jax.Array:
    """For each picture (P, 28, 28, 1) and its class (P,): the class logit's gradients at the path
    points alphas * picture (alphas (S,)), summed with `weights` (S,) (0 for padding)."""

    def gradient_sum(picture: jax.Array, c: jax.Array) -> jax.Array:
        path = alphas[:, None, None, None] * picture  # (S, 28, 28, 1), towards the picture from the blank
        # The pictures of a batch do not interact, so the gradient of the summed logit is each one's.
        grads = jax.grad(lambda p: model.apply(params, p)[:, c].sum())(path)
        return jnp.tensordot(weights, grads, 1)

    return jax.vmap(gradient_sum)(pictures, classes)


def integrated_gradients(params: Params, images: np.ndarray, classes: np.ndarray, *, model: Model,
                         steps: int = STEPS) -> np.ndarray:
    """Attributions (N, K, 28, 28, 1) of the logits of `classes` (N, K) to the pixels of uint8
    `images` (N, 28, 28, 1), from the blank digit, in programs of at most POINTS_PER_BATCH path points."""
    pixels = np.asarray(images, np.float32)  # the model's apply divides by 255 itself
    count, top = np.shape(classes)
    pictures, flat_classes = np.repeat(pixels, top, axis=0), np.asarray(classes, np.int32).reshape(-1)
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps  # midpoints of the path
    block = min(steps, POINTS_PER_BATCH)  # steps per program
    pairs = min(1 << (len(pictures) - 1).bit_length(), max(1, POINTS_PER_BATCH // block))  # pictures per program
    sums = np.zeros_like(pictures)
    for first in range(0, len(pictures), pairs):
        chunk = slice(first, first + pairs)
        some = len(pictures[chunk])
        batch = np.zeros((pairs, *pixels.shape[1:]), np.float32)
        batch[:some] = pictures[chunk]
        batch_classes = np.zeros(pairs, np.int32)
        batch_classes[:some] = flat_classes[chunk]
        for step in range(0, steps, block):
            part = alphas[step:step + block]
            weights = np.zeros(block, np.float32)
            weights[:len(part)] = 1
            sums[chunk] += np.asarray(_path_gradient_sums(
                params, batch, batch_classes, np.pad(part, (0, block - len(part))), weights, model=model))[:some]
    return pixels[:, None] * (sums / steps).reshape(count, top, *pixels.shape[1:])


@quick_jit(static_argnames="model")
def _logits(params: Params, images: jax.Array, model: Model) -> jax.Array:
    return model.apply(params, images)


def explain(params: Params, images: np.ndarray, model: Model, top: int = 2, steps: int = STEPS) -> Explanation:
    """The `top` most probable classes of uint8 `images` (N, 28, 28, 1), or a list of N digits (28, 28, 1),
    and their attributions, in memory bounded whatever N, `top` and `steps`.

    N is padded to the next power of two for the logits, so that a few programs serve every count."""
    count = len(images)
    padded = np.zeros((1 << max(count - 1, 0).bit_length(), *np.shape(images)[1:]), np.uint8)
    padded[:count] = images
    logits = np.asarray(_logits(params, jnp.asarray(padded), model))[:count]
    blank = np.asarray(_logits(params, jnp.zeros((1, *np.shape(images)[1:]), jnp.uint8), model))[0]
    classes = np.argsort(-logits, axis=1)[:, :top]
    probs = np.asarray(jax.nn.softmax(logits, -1))
    attributions = integrated_gradients(params, padded[:count], classes, model=model, steps=steps)
    rows = np.arange(count)[:, None]
    return Explanation(classes, probs[rows, classes], attributions[..., 0], logits[rows, classes] - blank[classes],
                       probs)


def evidence_image(digit: np.ndarray, attributions: np.ndarray) -> np.ndarray:
    """One class's attributions (28, 28) over its uint8 digit (28, 28, 1) as a uint8 RGB picture:
    white paper, the stroke in light grey, red where a pixel is evidence for the class and blue
    where against, the strongest at full colour (what the demo shows)."""
    scale = float(np.abs(attributions).max()) or 1.0
    v = np.clip(attributions / scale, -1, 1)
    paper = 255 - 0.3 * digit[..., 0].astype(np.float32)
    rgb = np.stack([paper * (1 + np.minimum(v, 0)), paper * (1 - np.abs(v)), paper * (1 - np.maximum(v, 0))], -1)
    return rgb.round().astype(np.uint8)

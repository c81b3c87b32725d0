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
rule); a positive one is evidence for the class, a negative one against it. Every path point of
every picture is one batch of a single jitted program: JAX's `grad` of the logits, with respect to
the input, under `vmap`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

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


@functools.partial(jax.jit, static_argnames=("model", "steps"))
def integrated_gradients(params: Params, images: jax.Array, classes: jax.Array, *, model: Model,
                         steps: int = STEPS) -> jax.Array:
    """Attributions (N, K, 28, 28, 1) of the logits of `classes` (N, K) to the pixels of uint8
    `images` (N, 28, 28, 1), from the blank digit: one program for every picture, class and step."""
    pixels = images.astype(jnp.float32)  # the model's apply divides by 255 itself
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps  # midpoints of the path

    def mean_gradient(picture: jax.Array, c: jax.Array) -> jax.Array:
        path = alphas[:, None, None, None] * picture  # (steps, 28, 28, 1), blank to the picture
        # The pictures of a batch do not interact, so the gradient of the summed logit is each one's.
        grads = jax.grad(lambda p: model.apply(params, p)[:, c].sum())(path)
        return grads.mean(0)

    per_class = jax.vmap(mean_gradient, in_axes=(None, 0))  # over a picture's K classes
    return pixels[:, None] * jax.vmap(per_class)(pixels, classes)


@functools.partial(jax.jit, static_argnames="model")
def _logits(params: Params, images: jax.Array, model: Model) -> jax.Array:
    return model.apply(params, images)


def explain(params: Params, images: np.ndarray, model: Model, top: int = 2, steps: int = STEPS) -> Explanation:
    """The `top` most probable classes of uint8 `images` (N, 28, 28, 1) and their attributions.

    N is padded to the next power of two, so that a few programs serve every count."""
    count = len(images)
    padded = np.zeros((1 << max(count - 1, 0).bit_length(), *np.shape(images)[1:]), np.uint8)
    padded[:count] = images
    logits = np.asarray(_logits(params, jnp.asarray(padded), model))
    blank = np.asarray(_logits(params, jnp.zeros((1, *np.shape(images)[1:]), jnp.uint8), model))[0]
    classes = np.argsort(-logits, axis=1)[:, :top]
    probs = np.asarray(jax.nn.softmax(logits, -1))
    attributions = np.asarray(integrated_gradients(params, jnp.asarray(padded), jnp.asarray(classes),
                                                   model=model, steps=steps))
    rows = np.arange(len(padded))[:, None]
    return Explanation(classes[:count], probs[rows, classes][:count], attributions[:count, ..., 0],
                       (logits[rows, classes] - blank[classes])[:count], probs[:count])


def evidence_image(digit: np.ndarray, attributions: np.ndarray) -> np.ndarray:
    """One class's attributions (28, 28) over its uint8 digit (28, 28, 1) as a uint8 RGB picture:
    white paper, the stroke in light grey, red where a pixel is evidence for the class and blue
    where against, the strongest at full colour (what the demo shows)."""
    scale = float(np.abs(attributions).max()) or 1.0
    v = np.clip(attributions / scale, -1, 1)
    paper = 255 - 0.3 * digit[..., 0].astype(np.float32)
    rgb = np.stack([paper * (1 + np.minimum(v, 0)), paper * (1 - np.abs(v)), paper * (1 - np.maximum(v, 0))], -1)
    return rgb.round().astype(np.uint8)

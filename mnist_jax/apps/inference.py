"""Apply a trained model: class probabilities and predictions of uint8 digit images.

    from mnist_jax.apps import images, inference
    from mnist_jax.run import rundir
    from mnist_jax.fast import model_for
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)    # or a run directory of your own
    digit = images.load_image("my_digit.png")                  # uint8 (28, 28, 1), MNIST-style
    probs = inference.classify(params, digit[None], model_for(config))[0]
    for label, p in inference.top_k(probs):
        print(label, p)

Imports only JAX, Flax and the model: predicting needs neither Optax, Orbax nor TFDS.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.apps import novelty
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.model import NUM_CLASSES, Model, Params


def model_and_names(config):
    """The model of a run's `config` and its dataset's class names."""
    from mnist_jax.data.datasets import DATASETS
    from mnist_jax.fast import model_for

    return model_for(config), DATASETS[config.dataset].class_names


def probabilities(params: Params, images: jax.Array, *, model: Model, batch_size: int) -> jax.Array:
    """Class probabilities (N, 10) of uint8 images, computed `batch_size` at a time (N a multiple)."""
    batches = images.reshape(-1, batch_size, *images.shape[1:])

    def step(carry: None, batch: jax.Array) -> tuple[None, jax.Array]:
        return None, jax.nn.softmax(model.apply(params, batch), -1)

    _, probs = jax.lax.scan(step, None, batches)
    return probs.reshape(-1, NUM_CLASSES)


@quick_jit(static_argnames="model")
def predict(params: Params, images: jax.Array, model: Model) -> jax.Array:
    """Predicted classes of uint8 images (jitted: run eagerly, each of the model's ops compiles alone)."""
    return jnp.argmax(model.apply(params, images), -1)


_probabilities = quick_jit(probabilities, static_argnames=("model", "batch_size"))


def classify(params: Params, images: np.ndarray, model: Model, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28, 1), at most `batch_size` at a time.

    Fewer images than `batch_size` are padded as `novelty.batch_for` pads them, so that a few
    programs, compiled once and kept in the persistent compilation cache, serve every count.
    """
    count = len(images)
    batch_size = novelty.batch_for(count, batch_size)
    images = novelty.padded(np.asarray(images, np.uint8), -(-count // batch_size) * batch_size)
    probs = _probabilities(params, jnp.asarray(images), model=model, batch_size=batch_size)
    return np.asarray(probs)[:count]


# Where a run has no rule of doubt (--no-doubts, or a network whose features cannot be read), a picture
# is "unsure" when its top probability is below the one that this share of its held-out digits fall below.
UNSURE_SHARE = novelty.SHARE


def unsure_threshold(probabilities: np.ndarray) -> float:
    """The top probability under which a picture is called unsure, from a run's probabilities (N, 10)
    on its held-out digits: UNSURE_SHARE of them fall below it."""
    return float(np.quantile(np.max(probabilities, axis=1), UNSURE_SHARE))


def run_notes(run_name, finished: bool, unsure_below: float | None) -> list[str]:
    """What predict says of the run it reads before its answers: that a run still training (or
    stopped) gives its latest checkpoint's params and, having no threshold yet, calls nothing unsure."""
    if finished or unsure_below is not None:
        return []
    return [(f"{run_name} is still training (or stopped): its params are its latest checkpoint's and it has no "
             f"unsure threshold until it finishes")]


def top_k(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The k most probable classes of one image, most probable first."""
    order = np.argsort(probabilities)[::-1][:k]
    return [(int(c), float(probabilities[c])) for c in order]


def ranked(classes_and_probabilities, class_names) -> str:
    """Classes and their probabilities as the commands print them: "7 (0.9812)  1 (0.0101)"."""
    return "  ".join(f"{class_names[c]} ({p:.4f})" for c, p in classes_and_probabilities)


@dataclasses.dataclass(frozen=True)
class Doubts:
    """What a finished run doubts of a picture: by its rule (apps/novelty.py, novelty.msgpack),
    "unsure" or "not a digit"; a run written before the rule existed, "unsure" where the top
    probability is below its `unsure_below`. Neither, for a run that has not finished: no doubt."""

    unsure_below: float | None = None
    rule: novelty.NoveltyRule | None = None
    thing: str = "digit"  # what the run's pictures show (its dataset's `thing`)

    @property
    def not_word(self) -> str:
        """The verdict on a picture unlike the run's: "not a digit" (a Fashion-MNIST run's: "not a fashion article")."""
        return f"not a {self.thing}"

    def verdicts(self, params: Params, images: np.ndarray, probabilities: np.ndarray) -> list[str]:
        """One word per picture: `not_word`, "unsure" or ""."""
        if self.rule is not None and len(images):
            features = novelty.batched(self.rule.features, params, images)
            codes = self.rule.verdicts(jnp.asarray(features), jnp.asarray(probabilities))
            return [{novelty.UNSURE: "unsure", novelty.NOT_A_DIGIT: self.not_word}.get(int(c), "") for c in codes]
        if self.unsure_below is None:
            return [""] * len(images)
        return ["unsure" if p < self.unsure_below else "" for p in np.max(probabilities, axis=1)]

    def flags(self, params: Params, images: np.ndarray, model: Model) -> np.ndarray:
        """Whether each picture is doubted, either way."""
        return np.asarray([bool(v) for v in self.verdicts(params, images, classify(params, images, model))], bool)


def prediction_line(probabilities: np.ndarray, class_names, k: int, verdict: str = "") -> str:
    """One image's `k` most probable classes, ranked, and its verdict (`Doubts.verdicts`) if any."""
    return ranked(top_k(probabilities, k), class_names) + (f"  {verdict}" if verdict else "")

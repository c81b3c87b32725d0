"""Not a digit: the second opinion that every run keeps beside its classifier.

A classifier names a class for anything: a letter, a smiley, a checkerboard. Its top probability
alone catches few of them (docs/measurements.md, "not a digit"), so each finished run also keeps
two scores computed from the features its dense layer reads (the CNN's 1,600):

- a small head (features -> 64 -> 1) trained, once the classifier is, to tell the run's training
  digits from non-digits made from them on the fly (`made_pictures`: digits cut and joined, laid
  over each other, mirrored, turned on their side, shuffled, inverted, cropped, swollen; a third of
  them pen strokes); no picture that the measurements use is trained or tuned on;
- the distance to the nearest of REFERENCES training digits (1 - cosine similarity).

With the top probability, that makes three scores. Each becomes how rare it is among held-out
digits (their share scoring lower, from KNOTS of their quantiles), and the three are summed as
Fisher's method sums p-values: -log(1 - share) each. A picture whose sum is above the threshold
that SHARE of the held-out digits pass is doubted: "unsure" where its top probability is the
rarest of its three scores (a digit written ambiguously), else "not a digit". The held-out digits
are the validation split, else the test set's even-numbered digits. So combined, the three catch
more of every kind of non-digit than their union at the same share of digits doubted (on the
bundled run, as first fitted: 57% of rendered letters against 40%; docs/measurements.md, "Per kind of picture").

    rule = novelty.fit(config, params, train_images, train_labels, chosen_digits, their_probabilities, key)
    codes = rule.verdicts(rule.features(params, digits), probabilities)   # 0, UNSURE or NOT_A_DIGIT

The head trains with Optax, imported only by `fit`: using a rule needs JAX and Flax alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.fast.compiling import quick_jit
from mnist_jax.model import LinenModel, Model, Params

FILE = "novelty.msgpack"  # in a run directory, beside params.msgpack
SHARE = 0.015  # of held-out digits doubted, "unsure" or "not a digit" (the goal is at most 2%)
REFERENCES = 2000  # training digits' features kept (float16: 6.4 MB for the CNN's 1,600)
MADE = 4096  # training digits, and as many non-digits made from them, that the head learns from
HEAD_WIDTH = 64
HEAD_EPOCHS = 16  # over the 2 MADE pictures, batches of 256: 2.6 s for the CNN on 2 AMD EPYC cores
KNOTS = 1000  # quantiles of each score on the held-out digits
RARE = 1e-3  # the least share a score counts with: -log(RARE) = 6.9 at most each
UNSURE, NOT_A_DIGIT = 1, 2  # the verdicts' codes; 0: no doubt
SIZE = 28


class Head(nn.Module):
    """Features -> a score, higher: less like the training digits."""

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        return nn.Dense(1)(nn.relu(nn.Dense(HEAD_WIDTH)(features)))[:, 0]


@dataclasses.dataclass(frozen=True)
class NoveltyRule:
    """A run's rule of doubt: the head's params, the reference features (unit length), each score's
    quantiles on held-out digits, the combined score's threshold, and the function that computes
    features from the classifier's params."""

    head: Params
    references: np.ndarray  # (REFERENCES, features) float16
    knots: np.ndarray  # (3, KNOTS) float32: the head's score, the nearest distance, 1 - top probability
    doubt_above: float
    features: Callable[[Params, jax.Array], jax.Array]  # (classifier params, uint8 images) -> (N, features)

    def scores(self, features: jax.Array, probabilities: jax.Array) -> jax.Array:
        """The three scores (3, N), higher: less like a digit."""
        return _scores(self.head, jnp.asarray(self.references), features, probabilities)

    def doubt(self, features: jax.Array, probabilities: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The combined score less its threshold (> 0: doubted), and the verdict's code, (N,) each
        (computed on N padded as `batch_for` pads it)."""
        count = features.shape[0]
        size = batch_for(count, count)
        if size != count:
            features, probabilities = padded(features, size), padded(probabilities, size)
        margin, codes = doubt(self.head, jnp.asarray(self.references), jnp.asarray(self.knots), self.doubt_above,
                              features, probabilities)
        return margin[:count], codes[:count]

    def verdicts(self, features: jax.Array, probabilities: jax.Array) -> np.ndarray:
        """Each picture's code: 0, UNSURE or NOT_A_DIGIT."""
        return np.asarray(self.doubt(features, probabilities)[1])

    def record(self) -> dict[str, float]:
        """What history.json keeps of it (the arrays are novelty.msgpack's)."""
        return {"doubt_above": self.doubt_above}


@quick_jit
def _scores(head: Params, references: jax.Array, features: jax.Array, probabilities: jax.Array) -> jax.Array:
    unit = features / jnp.maximum(jnp.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    nearest = jnp.max(unit @ references.astype(jnp.float32).T, axis=1)
    return jnp.stack([Head().apply({"params": head}, features), 1 - nearest, 1 - jnp.max(probabilities, axis=-1)])


@quick_jit
def _combined(knots: jax.Array, scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The scores' shares of held-out digits below them, summed as Fisher's method does; which is rarest."""
    below = jnp.mean((knots[:, None, :] < scores[:, :, None]).astype(jnp.float32), axis=-1)
    terms = -jnp.log(1 - below + RARE)
    return jnp.sum(terms, axis=0), jnp.argmax(terms, axis=0)


@quick_jit
def doubt(head: Params, references: jax.Array, knots: jax.Array, doubt_above: float, features: jax.Array,
          probabilities: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`NoveltyRule.doubt` as one function of arrays (the web page's ONNX graph computes it too)."""
    combined, rarest = _combined(knots, _scores(head, references, features, probabilities))
    margin = combined - doubt_above
    return margin, jnp.where(margin > 0, jnp.where(rarest == 2, UNSURE, NOT_A_DIGIT), 0).astype(jnp.int32)


def feature_model(model: Model) -> Callable[[Params, jax.Array], jax.Array] | None:
    """(params, uint8 images) -> the features the model's last dense layer reads, (N, features),
    jitted; None for a model that is not a linen module (whose layers cannot be watched)."""
    return _feature_model(model) if isinstance(model, LinenModel) else None


@functools.lru_cache(maxsize=8)
def _feature_model(model: LinenModel) -> Callable[[Params, jax.Array], jax.Array]:
    @quick_jit
    def features(params: Params, images: jax.Array) -> jax.Array:
        seen = []

        def keep(next_fun, args, kwargs, context):
            if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
                seen.append(args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(keep):
            model.apply(params, images)
        return seen[-1].reshape(images.shape[0], -1)

    return features


def features_for(config) -> Callable[[Params, jax.Array], jax.Array] | None:
    """`feature_model` of `config`'s model, or of its linen twin where it is an NNX one."""
    from mnist_jax.fast import model_for

    found = feature_model(model_for(config))
    if found is None and getattr(config, "model", "linen") != "linen":
        found = feature_model(model_for(dataclasses.replace(config, model="linen")))
    return found


SMALLEST_BATCH = 32  # one program serves any handful of pictures; 32 take 1.6 ms on 2 Zen 4 cores


def batch_for(count: int, largest: int) -> int:
    """The batch that `count` pictures are computed in, padded: the next power of two, at least
    SMALLEST_BATCH, at most `largest`, so that a few compiled programs serve every count."""
    return min(largest, max(SMALLEST_BATCH, 1 << max(count - 1, 0).bit_length()))


def padded(pictures: np.ndarray, rows: int) -> np.ndarray:
    """`pictures` (or any array) with zeros appended along its first axis up to `rows`."""
    pictures = np.asarray(pictures)
    return np.pad(pictures, [(0, rows - len(pictures))] + [(0, 0)] * (pictures.ndim - 1))


def batched(fn: Callable[..., jax.Array], params: Params, images: np.ndarray, size: int = 1024,
            shrink: bool = True) -> np.ndarray:
    """`fn(params, images)` (jitted) `size` images at a time, the last batch padded (fewer than `size`:
    to `batch_for`'s batch, unless not to `shrink`), so that a few programs serve every count."""
    if not len(images):
        return np.zeros((0,))
    size = batch_for(len(images), size) if shrink else size
    parts = []
    for start in range(0, len(images), size):
        part = images[start:start + size]
        parts.append(np.asarray(fn(params, jnp.asarray(padded(part, size))))[:len(part)])
    return np.concatenate(parts)


# ---- Non-digits made from digits -------------------------------------------------------------

def _dilate(x: jax.Array, size: int) -> jax.Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (size, size), (1, 1), "SAME")


def _centred(x: jax.Array) -> jax.Array:
    """The ink's centre of mass moved to the middle, as MNIST's digits (and the picture reader's) are."""
    total = x.sum() + 1e-6
    r = jnp.arange(SIZE, dtype=jnp.float32)
    cy, cx = (x.sum(1) * r).sum() / total, (x.sum(0) * r).sum() / total
    return jnp.roll(x, (jnp.round(13.5 - cy).astype(jnp.int32), jnp.round(13.5 - cx).astype(jnp.int32)), (0, 1))


def _strokes(key: jax.Array) -> jax.Array:
    """One to four pen strokes (quadratic curves) about MNIST's width, in its 20 x 20 box, centred."""
    k_count, k_points, k_width = jax.random.split(key, 3)
    count = jax.random.randint(k_count, (), 1, 5)
    control = jax.random.uniform(k_points, (4, 3, 2), minval=4, maxval=24)
    width = jax.random.uniform(k_width, (), minval=1.0, maxval=2.2)
    t = jnp.linspace(0, 1, 9)[:, None]
    grid = jnp.stack(jnp.meshgrid(jnp.arange(SIZE), jnp.arange(SIZE), indexing="ij"), -1)
    pixels = grid.reshape(-1, 1, 2).astype(jnp.float32)

    def stroke(c: jax.Array) -> jax.Array:
        points = (1 - t) ** 2 * c[0] + 2 * (1 - t) * t * c[1] + t ** 2 * c[2]
        a, ab = points[:-1], points[1:] - points[:-1]
        along = jnp.clip(((pixels - a) * ab).sum(-1) / ((ab * ab).sum(-1) + 1e-6), 0, 1)
        distance = jnp.linalg.norm(pixels - (a + along[..., None] * ab), axis=-1).min(-1)
        return jnp.clip(width + 0.5 - distance, 0, 1).reshape(SIZE, SIZE)

    ink = jax.vmap(stroke)(control) * (jnp.arange(4) < count)[:, None, None]
    return _centred(ink.max(0) * 255)


def _non_digit(key: jax.Array, a: jax.Array, b: jax.Array, label: jax.Array) -> jax.Array:
    """One picture that is not a digit, made from the digits `a` and `b` (floats 0-255, 28 x 28)."""
    keys = jax.random.split(key, 5)
    cut = jax.random.randint(keys[0], (), 10, 19)
    rows = jnp.arange(SIZE)
    blocks = a.reshape(4, 7, 4, 7).transpose(0, 2, 1, 3).reshape(16, 7, 7)[jax.random.permutation(keys[2], 16)]
    corner = jax.random.randint(keys[3], (2,), 0, 15)
    mirrored_is_no_digit = (label != 0) & (label != 1) & (label != 8)
    made = jnp.stack([
        jnp.where(rows[:, None] < cut, a, b),  # the top of one digit on the bottom of another
        jnp.where(rows[None, :] < cut, a, b),  # left and right
        jnp.maximum(a, jnp.roll(b, jax.random.randint(keys[1], (2,), -6, 7), (0, 1))),  # one over another
        jnp.where(mirrored_is_no_digit, a[:, ::-1], jnp.rot90(a)),  # mirrored
        jnp.where(label == 0, jnp.rot90(b), jnp.rot90(a, 3)),  # on its side
        blocks.reshape(4, 4, 7, 7).transpose(0, 2, 1, 3).reshape(SIZE, SIZE),  # its 7 x 7 blocks shuffled
        jax.random.permutation(keys[4], a.reshape(-1)).reshape(SIZE, SIZE),  # its pixels shuffled
        255 - a,  # inverted
        jnp.repeat(jnp.repeat(jax.lax.dynamic_slice(a, corner, (14, 14)), 2, 0), 2, 1),  # a quarter, enlarged
        _dilate(a, 5),  # swollen into a blob
    ])
    return made[jax.random.randint(jax.random.fold_in(key, 7), (), 0, len(made))]


def _digit(key: jax.Array, a: jax.Array) -> jax.Array:
    """A training digit moved up to 2 pixels, and in 3 of 10 drawn a pixel thicker."""
    k_shift, k_thick = jax.random.split(key)
    a = jnp.roll(a, jax.random.randint(k_shift, (2,), -2, 3), (0, 1))
    return jnp.where(jax.random.uniform(k_thick) < 0.3, _dilate(a, 2), a)


def made_pictures(key: jax.Array, images: jax.Array, labels: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
    """`count` training digits (target 0) and `count` non-digits made from them (target 1): uint8
    pictures (2 count, 28, 28, 1) and their targets (2 count,)."""
    return _made_pictures(key, images, labels, count=count)


@quick_jit(random_numbers=True, static_argnames="count")
def _made_pictures(key: jax.Array, images: jax.Array, labels: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
    k_pick, k_digit, k_made, k_strokes = jax.random.split(key, 4)
    picked = jax.random.randint(k_pick, (3, count), 0, images.shape[0])
    x = images[..., 0].astype(jnp.float32)
    digits = jax.vmap(_digit)(jax.random.split(k_digit, count), x[picked[0]])
    # A third pen strokes (up to 4): 1-3 points more of most kinds caught than a sixth of up to 3.
    strokes = count // 3
    made = jax.vmap(_non_digit)(jax.random.split(k_made, count - strokes), x[picked[1, strokes:]],
                                x[picked[2, strokes:]], labels[picked[1, strokes:]])
    made = jnp.concatenate([jax.vmap(_strokes)(jax.random.split(k_strokes, strokes)), made])
    pictures = jnp.clip(jnp.round(jnp.concatenate([digits, made])), 0, 255).astype(jnp.uint8)[..., None]
    return pictures, jnp.concatenate([jnp.zeros(count), jnp.ones(count)])


# ---- Fitting a run's rule -------------------------------------------------------------------

def fit(config, params: Params, train_images: np.ndarray, train_labels: np.ndarray, chosen: np.ndarray,
        chosen_probabilities: np.ndarray, key: jax.Array) -> NoveltyRule | None:
    """The rule of a trained classifier (`params` of `config`'s network): the head trained on the
    training digits and non-digits made from them, the references drawn from the training digits,
    the scores' quantiles and the threshold from the held-out digits `chosen` (and the classifier's
    probabilities of them, as prediction computes them), SHARE of which it doubts. None where the
    model's features cannot be read (`feature_model`)."""
    features = features_for(config)
    if features is None:
        return None
    k_made, k_head, k_refs = jax.random.split(key, 3)
    count = min(MADE, len(train_images))
    pictures, targets = made_pictures(k_made, jnp.asarray(train_images), jnp.asarray(train_labels), count)
    made_features = batched(features, params, np.asarray(pictures))
    head_params = _train_head(jax.random.split(k_head, 2), jnp.asarray(made_features), targets)
    picked = np.sort(np.asarray(jax.random.choice(k_refs, len(train_images), (min(REFERENCES, len(train_images)),),
                                                  replace=False)))
    references = batched(features, params, train_images[picked])
    references = (references / np.maximum(np.linalg.norm(references, axis=1, keepdims=True), 1e-12)).astype(np.float16)
    chosen_features = batched(features, params, chosen, shrink=False)  # the programs above, not new ones
    scores = np.asarray(_scores(head_params, jnp.asarray(references), jnp.asarray(chosen_features),
                                jnp.asarray(chosen_probabilities)))
    knots = np.quantile(scores, (np.arange(KNOTS) + 0.5) / KNOTS, axis=1).T.astype(np.float32)
    combined, _ = _combined(jnp.asarray(knots), jnp.asarray(scores))
    doubt_above = float(np.quantile(np.asarray(combined), 1 - SHARE))
    return NoveltyRule(jax.device_get(head_params), references, knots, doubt_above, features)


@quick_jit(random_numbers=True)  # LLVM level 1, as when the bundled run's rule was fitted
def _train_head(keys: jax.Array, features: jax.Array, targets: jax.Array) -> Params:
    """The head trained HEAD_EPOCHS over `features` and their targets (1: made non-digit), batches of 256."""
    import optax  # training: Optax only here

    head, optimizer = Head(), optax.adam(1e-3)
    params = head.init(keys[0], features[:1])["params"]
    batch = min(256, features.shape[0])
    steps = features.shape[0] // batch

    def epoch(carry, order_key):
        def step(carry, indices):
            params, state = carry
            loss = lambda p: optax.sigmoid_binary_cross_entropy(head.apply({"params": p}, features[indices]),
                                                                targets[indices]).mean()
            updates, state = optimizer.update(jax.grad(loss)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        order = jax.random.permutation(order_key, features.shape[0])[:steps * batch].reshape(steps, batch)
        return jax.lax.scan(step, carry, order)[0], None

    (params, _), _ = jax.lax.scan(epoch, (params, optimizer.init(params)), jax.random.split(keys[1], HEAD_EPOCHS))
    return params


def to_bytes(rule: NoveltyRule) -> bytes:
    """The rule's arrays, as novelty.msgpack holds them (its thresholds are in history.json)."""
    return flax.serialization.msgpack_serialize({"head": jax.tree_util.tree_map(np.asarray, rule.head),
                                                 "references": np.asarray(rule.references, np.float16),
                                                 "knots": np.asarray(rule.knots, np.float32)})


def from_bytes(content: bytes, recorded: dict[str, float], features: Callable) -> NoveltyRule:
    """A rule from novelty.msgpack's bytes and what history.json records of it (`NoveltyRule.record`);
    ValueError if they do not fit."""
    try:
        arrays = flax.serialization.msgpack_restore(content)
        head, references, knots = arrays["head"], np.asarray(arrays["references"]), np.asarray(arrays["knots"])
        width = references.shape[1]
        want = jax.eval_shape(lambda: Head().init(jax.random.key(0), jnp.zeros((1, width)))["params"])
        same = jax.tree_util.tree_map(np.shape, head) == jax.tree_util.tree_map(lambda s: s.shape, want)
    except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated types on bad bytes
        raise ValueError(f"not a saved rule ({type(e).__name__})") from None
    if not same or references.dtype != np.float16 or knots.shape != (3, KNOTS):
        raise ValueError("not a saved rule (its arrays do not have the rule's shapes)")
    return NoveltyRule(head, references, knots, float(recorded["doubt_above"]), features)

"""Which pictures does a run call "not a digit"? Per kind of picture, as OpenOOD reports: each
score's AUROC against held-out MNIST digits and the share caught at the threshold that calls 2% of
digits unsure, and the run's own doubts (`predict`'s "unsure" or "not a digit") as it stores them.

    python benchmarks/not_digits.py                         # the bundled run
    python benchmarks/not_digits.py --run runs/x --data-dir DIR

Digits: the MNIST test set's even-numbered digits choose each score's threshold (as they chose the
bundled run's rule), its odd-numbered ones are the held-out digits, and tests/fixtures/digits the
photographed and drawn ones. Not digits, each made here from a fixed seed as a user would hand them
over (black ink on white, a PNG read by `predict`'s reader; a picture the reader refuses, "no digit
found", counts as caught): capital and small letters rendered from the system's DejaVu fonts
(leaving out those that look like digits), uniform, Gaussian and binary noise, plain patterns
(checkerboards, ramps, halves, speckle), near-blank pages, scribbles, the 120 drawn non-digits of
tests/fixtures/not-digits; and the first 1,000 Fashion-MNIST test images (Debian's
dataset-fashion-mnist) as the model's input. Nothing measured here is trained or tuned on.

Scores (higher: less like a digit), each at its own threshold: the top probability, the energy
(the logits' log-sum-exp), the Mahalanobis distance of the 1,600 features before the dense layer to
the nearest class mean, the cosine distance to the 10th nearest training digit in those features,
and the run's rule's two scores (apps/novelty.py, from its novelty.msgpack): its head's score and
the cosine distance to the nearest of its stored training features. The last column is the run's
stored verdict (`inference.Doubts.flags`: "unsure" or "not a digit" at its recorded threshold,
nothing re-tuned); "n/a" for a run that has none. Prints a Markdown table, one row per kind, then
the thresholds. Expect, for the bundled run on 2 AMD EPYC cores, about two minutes: see
docs/measurements.md ("not a digit").
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.special import logsumexp
from unsure_scores import network_outputs  # this folder's: the logits and the dense layer's features

ROOT = Path(__file__).resolve().parent.parent
FONTS = Path("/usr/share/fonts/truetype/dejavu")
# Letters that a hand writes like a digit (0 1 5 2 8 6 9 and their kin), left out of the letters.
LOOKALIKES = set("OoIlSsZzBGbgqDT")
SHARE = 0.02  # of digits called unsure at each score's threshold


def png(array: np.ndarray) -> bytes:
    """A uint8 grey picture (H, W) as a PNG file's bytes."""
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), "L").save(out, format="PNG")
    return out.getvalue()


def canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    page = Image.new("L", (280, 280), 255)
    return page, ImageDraw.Draw(page)


def letters() -> list[bytes]:
    pictures = []
    for font_file in sorted(FONTS.glob("DejaVu*.ttf"))[:6]:
        font = ImageFont.truetype(str(font_file), 190)
        for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
            if letter in LOOKALIKES:
                continue
            page, pen = canvas()
            pen.text((140, 140), letter, fill=0, font=font, anchor="mm")
            pictures.append(page_bytes(page))
    return pictures


def page_bytes(page: Image.Image) -> bytes:
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


def made_sets(rng: np.random.Generator) -> dict[str, list[bytes]]:
    """Each kind of non-digit picture, 40 of a kind (the letters: every font's)."""
    n = 40
    sets = {"letters": letters(),
            "uniform noise": [png(rng.integers(0, 256, (28, 28))) for _ in range(n)],
            "Gaussian noise": [png(np.clip(rng.normal(128, 64, (28, 28)), 0, 255)) for _ in range(n)],
            "binary noise": [png(255 * (rng.random((28, 28)) < 0.5)) for _ in range(n)]}
    patterns = []
    for i in range(n):
        y, x = np.mgrid[0:112, 0:112]
        kind, size = i % 4, int(rng.integers(4, 29))
        if kind == 0:  # a checkerboard
            patterns.append(png(255 * (((y // size) + (x // size)) % 2)))
        elif kind == 1:  # a ramp, across or down
            patterns.append(png((x if i % 8 == 1 else y) * 255 / 111))
        elif kind == 2:  # half dark, half light
            patterns.append(png(255 * ((x if i % 8 == 2 else y) < 56)))
        else:  # speckle: sparse dark dots
            patterns.append(png(255 * (rng.random((112, 112)) > 0.03)))
    sets["plain patterns"] = patterns
    near_blank = []
    for _ in range(n):
        page, pen = canvas()
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, r = *rng.integers(20, 260, 2), int(rng.integers(2, 8))
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=0)
        near_blank.append(page_bytes(page))
    sets["near-blank"] = near_blank
    scribbles = []
    for _ in range(n):
        page, pen = canvas()
        points = [tuple(p) for p in rng.integers(30, 250, (int(rng.integers(4, 10)), 2)).tolist()]
        pen.line(points, fill=0, width=int(rng.integers(12, 28)), joint="curve")
        scribbles.append(page_bytes(page))
    sets["scribbles"] = scribbles
    return sets


def read(pictures: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The digits `predict` reads from `pictures`, and which pictures it refused."""
    from mnist_jax.apps import images
    from mnist_jax.errors import UserError

    digits, refused = [], []
    for i, content in enumerate(pictures):
        try:
            digits.append(images.digit_of(images.read_picture(content, f"picture {i}"), f"picture {i}"))
            refused.append(False)
        except UserError:
            refused.append(True)
    return (np.stack(digits) if digits else np.zeros((0, 28, 28, 1), np.uint8)), np.asarray(refused)


def auroc(digits: np.ndarray, others: np.ndarray) -> float:
    """P(score of a non-digit > score of a digit), ties counted half (Mann-Whitney)."""
    ranks = np.argsort(np.argsort(np.concatenate([digits, others]), kind="stable"), kind="stable") + 1.0
    both = np.concatenate([digits, others])
    for value in np.unique(both):  # average ranks of ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[len(digits):].sum() - len(others) * (len(others) + 1) / 2) / (len(digits) * len(others)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="the run to score (default: the bundled weights)")
    p.add_argument("--data-dir", default=None, help="the TFDS data dir (default: TFDS's)")
    args = p.parse_args()
    from mnist_jax import data
    from mnist_jax.apps import images, novelty
    from mnist_jax.fast import model_for
    from mnist_jax.run import rundir

    record, params = rundir.load_record_and_params(args.run or rundir.BUNDLED_RUN)
    model = model_for(record.config)
    doubts = rundir.load_doubts(args.run, record)
    rule = doubts.rule
    has_doubts = doubts.unsure_below is not None or rule is not None
    train_images, train_labels = data.load("train", args.data_dir)
    test_images, _ = data.load("test", args.data_dir)
    fashion, _ = data.load("test", args.data_dir, dataset="fashion_mnist")
    fixtures = ROOT / "tests" / "fixtures"
    photos = np.stack([images.load_image(f) for f in sorted((fixtures / "digits").glob("[0-9]-*"))])
    drawn = [f.read_bytes() for f in sorted((fixtures / "not-digits").glob("*.png"))]

    logits_of, features_of = network_outputs(params, model)
    train_features = features_of(train_images)
    means = np.stack([train_features[train_labels == c].mean(0) for c in range(10)])
    centred = train_features - means[train_labels]
    precision = np.linalg.inv(centred.T @ centred / len(centred) + 1e-3 * np.eye(centred.shape[1]))
    reference = train_features[::2] / np.linalg.norm(train_features[::2], axis=1, keepdims=True).clip(1e-12)
    names = ["top probability", "energy", "Mahalanobis", "10th neighbour"]
    names += ["rule's head", "rule's nearest"] if rule is not None else []

    def scores(x: np.ndarray) -> dict[str, np.ndarray]:
        if not len(x):
            return {name: np.zeros(0) for name in names}
        logits = logits_of(x)
        f = features_of(x)
        unit = f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-12)
        tenth = np.concatenate([-np.partition(-(unit[i:i + 500] @ reference.T), 9, axis=1)[:, 9]
                                for i in range(0, len(unit), 500)])  # the 10th largest cosine similarity
        got = {"top probability": -np.exp(logits - logsumexp(logits, 1, keepdims=True)).max(1),
               "energy": -logsumexp(logits, 1),
               "Mahalanobis": np.min([(((f - m) @ precision) * (f - m)).sum(1) for m in means], axis=0),
               "10th neighbour": 1 - tenth}
        if rule is not None:  # the rule's own features and scores, as predict computes them
            probabilities = np.exp(logits - logsumexp(logits, 1, keepdims=True))
            head, nearest, _ = np.asarray(rule.scores(novelty.batched(rule.features, params, x), probabilities))
            got.update({"rule's head": head, "rule's nearest": nearest})
        return got

    def doubted(x: np.ndarray) -> np.ndarray:
        """Whether the run's stored doubts call each picture unsure or not a digit."""
        return doubts.flags(params, x, model) if len(x) else np.zeros(0, bool)

    digit_sets = {"MNIST digits, held out (doubted)": test_images[1::2],
                  "photographed and drawn digits (doubted)": photos}
    chosen = scores(test_images[0::2])
    thresholds = {name: np.quantile(values, 1 - SHARE) for name, values in chosen.items()}
    sets = {name: read(pictures) for name, pictures in made_sets(np.random.default_rng(20261207)).items()}
    sets["drawn non-digits"] = read(drawn)
    sets["Fashion-MNIST"] = (fashion[:1000], np.zeros(1000, bool))

    held_out = None
    print(f"| pictures | n | refused | {' | '.join(f'{n}: AUROC / caught' for n in names)} | the run's doubts |")
    print("|" + " --- |" * (len(names) + 4))
    for name, digits in digit_sets.items():
        values = scores(digits)
        held_out = values if held_out is None else held_out
        unsure = [f"{np.mean(values[n] > thresholds[n]):.1%}" for n in names]
        ruled = f"{np.mean(doubted(digits)):.1%}" if has_doubts else "n/a"
        print(f"| {name} | {len(digits)} | 0 | {' | '.join(unsure)} | {ruled} |")
    for name, (digits, refused) in sets.items():
        got, count = scores(digits), len(refused)
        cells = []
        for n in names:
            all_scores = np.concatenate([got[n], np.full(refused.sum(), np.inf)])
            caught = (refused.sum() + np.sum(got[n] > thresholds[n])) / count
            cells.append(f"{auroc(held_out[n], all_scores):.3f} / {caught:.0%}")
        ruled = f"{(refused.sum() + np.sum(doubted(digits))) / count:.0%}" if has_doubts else "n/a"
        print(f"| {name} | {count} | {refused.sum()} | {' | '.join(cells)} | {ruled} |")
    stored = (f"unsure below a top probability of {doubts.unsure_below:.4f}" if doubts.unsure_below is not None
              else "no unsure threshold")
    if rule is not None:
        stored = (f"its rule's three scores combined (Fisher's method) above {rule.doubt_above:.4f}: \"unsure\" "
                  f"where the top probability is the rarest, else \"not a digit\"")
    print(f"\nThresholds at {SHARE:.0%} of the even-numbered test digits; the run's doubts: {stored}. "
          f"Letters left out: {' '.join(sorted(LOOKALIKES))}.")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())

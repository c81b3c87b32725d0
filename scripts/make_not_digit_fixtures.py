"""Write tests/fixtures/not-digits/: pictures that hold no digit, for the "unsure" rule to catch.

    python scripts/make_not_digit_fixtures.py      # deterministic: the same files on every run

Four kinds, 30 pictures each, black ink on white, 112 x 112 pixels, each drawn with its own
seeded size, place, slant and stroke width:
- `letter`: capital and small letters that no digit resembles (A, E, F, H, K, M, N, R, W, X, a, e,
  h, k, m, n, r, w, x), from DejaVu Sans (the font matplotlib ships);
- `shape`: squares, triangles, stars, crosses, arrows and hearts' outlines;
- `scribble`: a random stroke of 4 to 9 points;
- `face`: smileys and houses, as a new user drew to try the model.

File names are `{kind}-{n}.png`. docs/measurements.md reports how many of them the unsure rule
(mnist_jax.apps.inference) catches, against how many MNIST test digits it calls unsure.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
SIZE = 112
LETTERS = "AEFHKMNRWXaehkmnrwx"
PER_KIND = 30


def letter(rng: np.random.Generator, draw: ImageDraw.ImageDraw) -> None:
    import matplotlib

    font_path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    font = ImageFont.truetype(str(font_path), int(rng.integers(50, 90)))
    text = LETTERS[int(rng.integers(len(LETTERS)))]
    draw.text((SIZE / 2 + rng.normal(0, 6), SIZE / 2 + rng.normal(0, 6)), text, fill=0, font=font, anchor="mm")


def _polygon(cx: float, cy: float, radius: float, corners: int, turn: float, inner: float | None = None) -> list:
    points = []
    for i in range(corners * (2 if inner else 1)):
        r = radius if inner is None or i % 2 == 0 else radius * inner
        a = turn + 2 * math.pi * i / (corners * (2 if inner else 1))
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def shape(rng: np.random.Generator, draw: ImageDraw.ImageDraw) -> None:
    cx, cy, r = SIZE / 2 + rng.normal(0, 5), SIZE / 2 + rng.normal(0, 5), rng.uniform(25, 45)
    width, turn = int(rng.integers(4, 10)), rng.uniform(-0.3, 0.3)
    kind = int(rng.integers(6))
    if kind == 0:
        points = _polygon(cx, cy, r, 4, math.pi / 4 + turn)
    elif kind == 1:
        points = _polygon(cx, cy, r, 3, -math.pi / 2 + turn)
    elif kind == 2:
        points = _polygon(cx, cy, r, 5, -math.pi / 2 + turn, inner=0.45)
    elif kind == 3:  # a cross
        draw.line([(cx - r, cy), (cx + r, cy)], fill=0, width=width)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=0, width=width)
        return
    elif kind == 4:  # an arrow
        draw.line([(cx - r, cy), (cx + r, cy)], fill=0, width=width)
        draw.line([(cx + r * 0.5, cy - r * 0.4), (cx + r, cy), (cx + r * 0.5, cy + r * 0.4)], fill=0, width=width)
        return
    else:  # a heart's outline
        t = np.linspace(0, 2 * np.pi, 60)
        x, y = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        points = list(zip(cx + x * r / 17, cy + y * r / 17))
    draw.line([*points, points[0]], fill=0, width=width, joint="curve")


def scribble(rng: np.random.Generator, draw: ImageDraw.ImageDraw) -> None:
    points = [tuple(rng.uniform(15, SIZE - 15, 2)) for _ in range(int(rng.integers(4, 10)))]
    draw.line(points, fill=0, width=int(rng.integers(4, 10)), joint="curve")


def face(rng: np.random.Generator, draw: ImageDraw.ImageDraw) -> None:
    cx, cy, r = SIZE / 2 + rng.normal(0, 4), SIZE / 2 + rng.normal(0, 4), rng.uniform(30, 45)
    width = int(rng.integers(4, 8))
    if rng.random() < 0.5:  # a smiley: the head, two eyes, a smile
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=0, width=width)
        for side in (-1, 1):
            ex, ey, er = cx + side * r * 0.38, cy - r * 0.3, r * 0.1
            draw.ellipse([ex - er, ey - er, ex + er, ey + er], fill=0)
        draw.arc([cx - r * 0.55, cy - r * 0.35, cx + r * 0.55, cy + r * 0.6], 20, 160, fill=0, width=width)
    else:  # a house: a square and its roof
        draw.rectangle([cx - r * 0.7, cy - r * 0.1, cx + r * 0.7, cy + r], outline=0, width=width)
        draw.line([(cx - r * 0.85, cy - r * 0.05), (cx, cy - r), (cx + r * 0.85, cy - r * 0.05)], fill=0, width=width)


KINDS = {"letter": letter, "shape": shape, "scribble": scribble, "face": face}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "not-digits")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    for k, (name, draw_one) in enumerate(KINDS.items()):
        rng = np.random.default_rng(1000 + k)
        for n in range(PER_KIND):
            image = Image.new("L", (SIZE, SIZE), 255)
            draw_one(rng, ImageDraw.Draw(image))
            image.save(args.out / f"{name}-{n:02d}.png", optimize=True)
    print(f"Wrote {len(KINDS) * PER_KIND} pictures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

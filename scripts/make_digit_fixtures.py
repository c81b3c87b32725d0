"""Write tests/fixtures/digits/: digit pictures that are not MNIST, as users photograph or draw them.

    python scripts/make_digit_fixtures.py          # deterministic: the same files on every run

Three sources of each digit 0-9, each seen in six conditions, 180 pictures of 160 x 120 pixels:
- sources: `pen`, strokes drawn with PIL along hand-written shapes (slant, size, place and width
  drawn from a seeded generator); `sans` and `serif`, the digit rendered from DejaVu Sans and
  DejaVu Serif, the fonts matplotlib ships.
- conditions: `clean` (black ink on white, PNG); `pencil` (grey ink on grey paper, sensor noise,
  JPEG at quality 70); `gradient` (light falling off across the page to a third); `shadow` (a soft
  dark band over one edge, as a phone casts); `blur` (out of focus, noise, JPEG); `marker` (white
  chalk on a dark board, uneven light).
Plus `none-*.png|jpg`: pictures with no digit (sensor noise, noisy paper with a gradient, paper
texture with a shadow), which must be reported as such.

File names are `{digit}-{source}-{condition}.{png|jpg}`; tests/test_images.py reads the label from
the name, and docs/photos.md reports the bundled model's accuracy on them (`mnist-jax predict` on all).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
SIZE = (160, 120)  # width, height: a photo's aspect, not MNIST's square
CONDITIONS = ("clean", "pencil", "gradient", "shadow", "blur", "marker")
SOURCES = ("pen", "sans", "serif")


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> list:
    t = np.radians(np.linspace(start, end, n))  # degrees, clockwise from 3 o'clock (y grows downwards)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


# Hand-written shapes in a unit box (x right, y down): each digit is a few polylines.
STROKES = {
    0: [_arc(0.5, 0.5, 0.32, 0.46, 0, 360, 40)],
    1: [[(0.42, 0.18), (0.58, 0.03), (0.52, 0.97)]],
    2: [_arc(0.5, 0.3, 0.3, 0.25, 190, 380) + [(0.18, 0.95), (0.85, 0.93)]],
    3: [_arc(0.48, 0.27, 0.28, 0.22, 215, 450), _arc(0.48, 0.72, 0.32, 0.24, 270, 505)],
    4: [[(0.45, 0.03), (0.15, 0.62), (0.85, 0.62)], [(0.66, 0.3), (0.64, 0.97)]],
    5: [[(0.82, 0.04), (0.3, 0.05), (0.25, 0.45)] + _arc(0.48, 0.67, 0.32, 0.28, 235, 495)],
    6: [[(0.72, 0.04)] + _arc(0.5, 0.68, 0.3, 0.28, 200, 560)],
    7: [[(0.12, 0.06), (0.86, 0.06), (0.42, 0.97)]],
    8: [_arc(0.5, 0.26, 0.24, 0.22, 90, 450), _arc(0.5, 0.71, 0.3, 0.26, -90, 270)],
    9: [_arc(0.48, 0.3, 0.27, 0.26, 0, 360), [(0.75, 0.3), (0.66, 0.97)]],
}


def pen_digit(digit: int, rng: np.random.Generator) -> Image.Image:
    """Black strokes on white, in a random box of the picture, slanted and of random width."""
    image = Image.new("L", SIZE, 255)
    draw = ImageDraw.Draw(image)
    height = rng.uniform(0.55, 0.8) * SIZE[1]
    width = height * rng.uniform(0.55, 0.75)
    left = rng.uniform(0.2, 0.8) * (SIZE[0] - width)
    top = rng.uniform(0.2, 0.8) * (SIZE[1] - height)
    slant = rng.uniform(-0.25, 0.15)
    for stroke in STROKES[digit]:
        points = [(left + (x + slant * (0.5 - y)) * width, top + y * height) for x, y in stroke]
        draw.line(points, fill=0, width=int(rng.integers(4, 9)), joint="curve")
    return image


def font_digit(digit: int, font_file: Path, rng: np.random.Generator) -> Image.Image:
    """The font's digit, black on white, in a random place of the picture."""
    font = ImageFont.truetype(str(font_file), int(rng.integers(60, 85)))
    image = Image.new("L", SIZE, 255)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((0, 0), str(digit), font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    x = rng.uniform(0.25, 0.75) * (SIZE[0] - w) - box[0]
    y = rng.uniform(0.25, 0.75) * (SIZE[1] - h) - box[1]
    draw.text((x, y), str(digit), fill=0, font=font)
    return image


def _noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    return rng.normal(0, sigma, (SIZE[1], SIZE[0]))


def _ramp(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Light from `high` to `low` along a random direction across the picture."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    t = (x - SIZE[0] / 2) * np.cos(angle) + (y - SIZE[1] / 2) * np.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    return high + (low - high) * t


def _shadow(rng: np.random.Generator, depth: float) -> np.ndarray:
    """1 where lit, 1 - depth under a soft band over one edge (a fifth of the picture)."""
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(float)
    edge = int(rng.integers(4))
    distance = [x / SIZE[0], 1 - x / SIZE[0], y / SIZE[1], 1 - y / SIZE[1]][edge]
    band = 1 / (1 + np.exp((distance - 0.2) / 0.03))
    return 1 - depth * band


def photograph(ink: Image.Image, condition: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """`ink` (black on white) as seen in `condition`: the picture and its file suffix."""
    amount = 1 - np.asarray(ink, float) / 255  # 1 where the ink is
    if condition == "clean":
        return ink, "png"
    if condition == "pencil":
        page = 175 + _noise(rng, 10)
        pixels = page - amount * 75
    elif condition == "gradient":
        page = _ramp(rng, 85, 235)
        pixels = page * (1 - 0.75 * amount) + _noise(rng, 4)
    elif condition == "shadow":
        pixels = (225 - amount * 170) * _shadow(rng, 0.7) + _noise(rng, 5)
    elif condition == "blur":
        soft = ink.filter(ImageFilter.GaussianBlur(2.5))
        pixels = 215 - (1 - np.asarray(soft, float) / 255) * 160 + _noise(rng, 8)
    elif condition == "marker":
        board = _ramp(rng, 20, 85)
        pixels = board + amount * 150 + _noise(rng, 6)
    else:
        raise ValueError(condition)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "jpg"


def no_digit_pictures(rng: np.random.Generator) -> dict[str, Image.Image]:
    sensor = np.clip(128 + _noise(rng, 40), 0, 255)
    paper = np.clip(_ramp(rng, 120, 220) + _noise(rng, 10), 0, 255)
    fibres = np.asarray(Image.fromarray(np.clip(180 + _noise(rng, 30), 0, 255).astype(np.uint8))
                        .filter(ImageFilter.GaussianBlur(1.5)), float)
    texture = np.clip(fibres * _shadow(rng, 0.6), 0, 255)
    return {name: Image.fromarray(pixels.astype(np.uint8))
            for name, pixels in (("none-sensor-noise.png", sensor), ("none-paper-gradient.jpg", paper),
                                 ("none-paper-shadow.jpg", texture))}


def write(out: Path) -> int:
    import matplotlib

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    font_files = {"sans": fonts / "DejaVuSans.ttf", "serif": fonts / "DejaVuSerif.ttf"}
    rng = np.random.default_rng(20261130)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    for digit in range(10):
        for source in SOURCES:
            for condition in CONDITIONS:
                ink = pen_digit(digit, rng) if source == "pen" else font_digit(digit, font_files[source], rng)
                picture, suffix = photograph(ink, condition, rng)
                picture.save(tmp / f"{digit}-{source}-{condition}.{suffix}", quality=70, optimize=True)
                count += 1
    for name, picture in no_digit_pictures(rng).items():
        picture.save(tmp / name, quality=70, optimize=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return count


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "digits")
    args = p.parse_args()
    count = write(args.out)
    print(f"Wrote {count} digit pictures and 3 without a digit to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Classify your own digit images with a trained run: the top 3 classes and their probabilities.

    python scripts/predict.py runs/20261129-223500 my_seven.png scan.jpg
    # my_seven.png: 7 (0.9967)  2 (0.0021)  3 (0.0006)

Any size and colour: each image is made MNIST-like (grayscale, light digit on dark, inverted when
the background is light, scaled into 20x20 and centred in 28x28) before it is classified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax.cli import fail, positive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory written by scripts/train.py")
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=positive(int), default=3, help="classes shown per image (default: %(default)s)")
    args = p.parse_args(argv)

    import numpy as np

    from mnist_jax import inference, runs
    from mnist_jax.model import Classifier

    try:
        images = np.stack([inference.load_image(path) for path in args.images])
        config, _, params = runs.load_run(args.run_dir)
    except (inference.ImageError, runs.RunError) as e:
        fail(str(e))
    probabilities = inference.classify(params, images, Classifier(conv=config.conv))
    for path, probs in zip(args.images, probabilities):
        ranked = "  ".join(f"{label} ({p:.4f})" for label, p in inference.top_k(probs, min(args.top, 10)))
        print(f"{path}: {ranked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

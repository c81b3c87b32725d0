"""Classify your own digit images: the top 3 classes (`mnist-jax predict`).

    python scripts/predict.py my_seven.png scan.jpg                     # the bundled weights
    # my_seven.png: 7 (0.9967)  2 (0.0021)  3 (0.0006)
    python scripts/predict.py my_seven.png --run runs/20261129-223500   # a run of your own

Any size and colour: each image is made MNIST-like (grayscale, light digit on dark, inverted when
the background is light, scaled into 20x20 and centred in 28x28) before it is classified.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("predict"))

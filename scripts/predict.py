"""Classify your own digit images: the top 3 classes (`mnist-jax predict`).

    python scripts/predict.py my_seven.png scan.jpg                     # the bundled weights
    # my_seven.png: 7 (0.9967)  2 (0.0021)  3 (0.0006)
    python scripts/predict.py my_seven.png --run runs/20261129-223500   # a run of your own

Drawn or photographed, any size and colour: each image is made MNIST-like first (ink told from
paper by Otsu's threshold, uneven light and shadows removed, the largest stroke region scaled into
20x20 and centred in 28x28; see mnist_jax/apps/images.py). A blank or noise-only picture is "no digit
found". `--save-inputs DIR` writes the 28x28 image the model saw for each input. On the 180
pictures of tests/fixtures/digits, the bundled weights read 97.8% right.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("predict"))

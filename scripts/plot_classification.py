"""Redraw the classification figure of a saved run (`mnist-jax plot-classification`).

    python scripts/plot_classification.py runs/20261129-223500           # -> RUN_DIR/classification.svg
    python scripts/plot_classification.py runs/20261129-223500 --seed 3 --rows 3 --cols 4

Random test digits titled `label: L / prediction: P`, from the run's final params.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("plot-classification"))

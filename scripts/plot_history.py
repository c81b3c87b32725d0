"""Redraw the training-history figure of a saved run (`mnist-jax plot-history`).

    python scripts/plot_history.py runs/20261129-223500                  # -> RUN_DIR/training.svg
    python scripts/plot_history.py runs/20261129-223500 --out figures/training.svg

Two panels as in the notebook: train/test loss, and train/test accuracy with a dotted 0.98 line.
For a run of several seeds: each curve's mean over the seeds, in its min-max band.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("plot-history"))

"""Where a trained run fails: confusion matrix and most confident mistakes (`mnist-jax plot-errors`).

    python scripts/plot_errors.py runs/20261129-223500                     # -> RUN_DIR/{confusion,mistakes}.svg
    python scripts/plot_errors.py runs/20261129-223500 --out-dir figures

Also prints the per-class test accuracy. With the notebook's settings expect about 170 errors
(accuracy ~0.983); the commonest are a 7 read as 2 and a 9 read as 4.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("plot-errors"))

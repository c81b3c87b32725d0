"""Report the test loss and accuracy of a saved run (`mnist-jax evaluate`).

    python scripts/evaluate.py                          # the weights bundled in the package
    # Test loss: 0.0534 / accuracy: 0.9830 (10000 test examples, params after epoch 29)
    python scripts/evaluate.py runs/20261129-223500     # a run of your own

Uses the run's final params, or for an unfinished (interrupted) run its latest checkpoint.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("evaluate"))
